//! The etl crate's integration tests, one binary: one module per feature, run against the real
//! `etl` binary, a real PostgreSQL and a real nats-server (see `testkit`). One binary links the
//! crate and its dependencies once instead of once per feature, and the tests of every feature
//! run side by side on cargo's parallel test threads: none may set a process-wide environment
//! variable or count on being alone in its process.
//!
//! `common` holds the helpers they share (a project folder with its own database, the daemon
//! as a child process, the oracle); `lake/read_lake.py` is the lake test's independent reader.

mod common;

mod alerts;
mod broker;
mod cli;
mod core;
mod docs;
mod hostile;
mod http_source;
mod infer;
mod lake;
mod layers;
mod names;
mod ops;
mod poison;
mod producers;
mod properties;
mod reliability;
mod retention;
mod security;
mod serve;
mod startup;
mod types;
