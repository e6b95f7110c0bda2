//! `etl`: watches the event inbox, validates every file against a JSON Schema, applies it to the
//! PostgreSQL warehouse with a timestamp-guarded upsert, and files it under `done/` or `failed/`.
//!
//! The modules follow the data: [`extract`] (files → typed events), [`transform`] (the worker
//! pool and its batches), [`load`] (the warehouse), [`files`] (where each file ends up), wired
//! together by [`pipeline`].

pub mod check;
pub mod cli;
pub mod config;
pub mod event;
pub mod extract;
pub mod files;
pub mod load;
pub mod ops;
pub mod pipeline;
pub mod stats;
pub mod telemetry;
pub mod transform;
