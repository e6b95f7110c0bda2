//! `etl`: watches the event inbox, validates every file against a JSON Schema, applies it to the
//! PostgreSQL warehouse with a timestamp-guarded upsert, and files it under `done/` or `failed/`.
//!
//! The modules follow the data: the [`catalog`] of declared event types says what each type is
//! and where it goes; a [`source`] yields records (the inbox folders, or the broker's stream),
//! [`extract`] decodes them into typed events, [`transform`] is the worker pool and its
//! batches, [`load`] the warehouse; each record's acknowledgement goes back to its source once
//! its transaction committed. `etl forward` replaces the pool with [`forward`]'s publisher to
//! the [`broker`]. The [`lake`] exports the warehouse as Parquet and retires old raw rows;
//! [`housekeeping`] runs every scheduled pass (folder retention, the lake's export and raw
//! retention, the horizon), each under its lock.
//! [`serve`] is the read API (`etl serve`). [`outcome`] records what happened, [`daemon`]
//! wires it all together and [`shutdown`] stops it; [`startup`] bounds how long a one-shot
//! command waits for what it needs; [`commands`] holds one file per `etl` command and the exit
//! status each result gives. [`names`] is the one lossless text form of a file name
//! wherever one is stored or shown.

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
pub use etl_core::{catalog, config, decode, event, layout, names, rejection, secrets};

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
