//! The services crate's integration tests, one binary with a module per subject: the backlog
//! generator, the producer binaries as processes, the reference file format and the
//! transactions example.

mod common;

mod backlog;
mod binaries;
mod reference_format;
mod transactions;
