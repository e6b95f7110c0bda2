//! Producer services that write one JSON file per event into the inbox, reproducing the reference
//! producers' files byte for byte.
//!
//! The data's path through the crate: [`generate`] makes seeded events of the [`event`] model,
//! [`writer`] puts them into the inbox. [`service`] drives that with the wall clock for the `users`
//! and `cards` binaries (with [`id_counter`] keeping card ids increasing across restarts; `cards`
//! can also write the transactions example's events), and
//! [`backlog`] drives it with a simulated clock to produce large reproducible backlogs for `loadgen`
//! and for other crates' tests and benchmarks.

pub mod backlog;
pub mod event;
pub mod generate;
pub mod id_counter;
pub mod service;
pub mod writer;

pub use backlog::{generate_backlog, generate_backlog_with, BacklogSpec, BacklogSummary};
pub use event::{
    Amount, CardEvent, CardPayload, Event, EventKind, Metadata, TransactionEvent,
    TransactionPayload, TransactionStatus, UserEvent, UserPayload,
};
pub use writer::{EventWriter, WriteMode};
