//! `etl`: watches the event inbox, validates every file against a JSON Schema, applies it to the
//! PostgreSQL warehouse with a timestamp-guarded upsert, and files it under `done/` or `failed/`.
//!
//! The event, its rejections, the catalog, decoding, the configuration and the folder layout
//! are the `etl-core` crate's (re-exported here: [`event`], [`rejection`], [`catalog`],
//! [`decode`], [`config`], [`layout`], [`names`], [`secrets`]); this crate holds what talks to
//! the world. A [`source`] yields records (the inbox folders, the broker's stream, HTTP APIs),
//! the core's decoder turns them into typed events, [`load`] is the worker pool and the
//! warehouse; each record's acknowledgement goes back to its source once its transaction
//! committed. `etl forward` replaces the pool with [`forward`]'s publisher to the [`broker`].
//! The [`lake`] exports the warehouse as Parquet and retires old raw rows; [`housekeeping`]
//! runs every scheduled pass (folder retention, the lake's export and raw retention, the
//! horizon), each under its lock. [`serve`] is the read API (`etl serve`). [`outcome`] records
//! what happened, [`daemon`] wires it all together and [`shutdown`] stops it; [`startup`]
//! bounds how long a one-shot command waits for what it needs; [`commands`] holds one file per
//! `etl` command and the exit status each result gives.

/// A named fault point where an I/O error can be injected (or the process killed): `?` returns
/// the injected error from the enclosing function, whose error type takes an `io::Error`.
/// Expands to nothing without the `failpoints` feature, so release builds carry no fault code.
macro_rules! fault_point {
    ($point:ident) => {{
        #[cfg(feature = "failpoints")]
        crate::faults::check(crate::faults::Point::$point)?;
    }};
}

/// A named point where a test can kill the process (nothing else): for steps whose callers have
/// no I/O error to return. Expands to nothing without the `failpoints` feature.
macro_rules! crash_point {
    ($point:ident) => {{
        #[cfg(feature = "failpoints")]
        crate::faults::crash(crate::faults::Point::$point);
    }};
}

// The core (no database, broker or HTTP): re-exported so that a path reads the same from either
// crate, while the compiler keeps the core from reaching up into what is here.
pub use etl_core::{
    catalog, config, decode, event, infer, layout, names, plan, rejection, secrets,
};

pub mod backoff;
pub mod broker;
pub mod check;
pub mod cli;
pub mod commands;
pub mod daemon;
#[cfg(feature = "failpoints")]
pub mod faults;
pub mod forward;
pub mod housekeeping;
pub mod lake;
pub mod load;
pub mod ops;
pub mod outcome;
pub mod serve;
pub mod shutdown;
pub mod source;
pub mod startup;
pub mod stats;
pub mod telemetry;
