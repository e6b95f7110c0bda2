//! `etl-core`: what the daemon knows without a database, a broker or an HTTP peer. The event,
//! the record it came from and its acknowledgement ([`event`]); every reason a record is
//! refused ([`rejection`]); the declared event types ([`catalog`]); bytes to a typed event or a
//! rejection, the same for every source ([`decode`]); the configuration, read and checked in
//! one place ([`config`]); the one text form of a file name ([`names`]); and what may be shown
//! of a secret ([`secrets`]); the folders on disk and the names in them ([`layout`]); a type
//! inferred from sample files and its drafts ([`infer`]); the migration a changed declaration
//! needs of its table ([`plan`]).
//!
//! The adapters (sources, warehouse, broker, lake, read API) live in the `etl` crate, which
//! depends on this one: nothing here can reach up to them, the compiler sees to it.

pub mod catalog;
pub mod config;
pub mod decode;
pub mod event;
pub mod infer;
pub mod layout;
pub mod names;
pub mod plan;
pub mod rejection;
pub mod secrets;
