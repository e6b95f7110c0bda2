//! Sources: where records come from, and how each learns its record's fate.
//!
//! A source yields [`Record`]s: raw bytes, the event type they claim to be, and an [`Ack`].
//! The [`Intake`] decodes each record the same way whatever its source, hands a valid event to
//! the worker pool and resolves the ack of an invalid one at once. The pool resolves the acks
//! of valid events only after the transaction holding them has committed (end-to-end
//! acknowledgement, as Vector's finalizers): a source never forgets a record before that.
//!
//! The sources: the inbox folders ([`inbox`]), the broker's stream ([`jetstream`]) and HTTP
//! APIs ([`http`]).

pub mod deadletter;
pub mod http;
pub mod inbox;
pub mod jetstream;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::decode::Decoder;
use crate::event::Event;

// How long a source runs: a setting of the run, so the configuration holds it.
pub use etl_core::config::{Mode, SourceConfig};

/// A place records come from. The pipeline starts each configured source and knows nothing
/// else about it than this.
pub trait Source: Send + Sync + 'static {
    /// Starts reading: records go to `intake` until `stop` fires or, in drain mode, until the
    /// source has nothing left.
    fn start(
        self: std::sync::Arc<Self>,
        mode: Mode,
        intake: Intake,
        stop: CancellationToken,
    ) -> Started;
    /// Records not finished yet, estimated (the `etl_inbox_backlog` gauge, progress lines).
    fn backlog(&self) -> u64;
    /// Records read and not yet finished.
    fn in_flight(&self) -> u64;
    /// Whether the source is taking new records (`/readyz`).
    fn ready(&self) -> bool;
    /// Why the source cannot finish records right now, if it cannot (`/readyz`'s body).
    fn trouble(&self) -> Option<String> {
        None
    }
    /// Records this run gave up on (each logged as an ERROR): a drain then exits with 1.
    fn stuck(&self) -> usize;
}

/// Why a source cannot run at all (it stops the daemon; a bad record never does).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot watch the inbox folders: {0}")]
    Watch(#[from] notify::Error),
    #[error("{0}")]
    Broker(#[from] crate::broker::BrokerError),
}

impl From<crate::startup::StartupError> for SourceError {
    fn from(error: crate::startup::StartupError) -> SourceError {
        SourceError::Broker(error.into())
    }
}

/// A started source.
pub struct Started {
    /// Ends when the source stops looking for records (on `stop`, or drained); an error if it
    /// cannot run at all (the inbox cannot be watched).
    pub discovery: tokio::task::JoinHandle<Result<(), SourceError>>,
    /// Each fires when one of the source's threads has ended, after the last ack it waits for.
    pub finished: Vec<oneshot::Receiver<()>>,
}

// The record and its acknowledgement travel through every layer, so they live with the event.
pub use crate::event::{Ack, Acknowledge, Fate, Record};

/// The pipeline is shutting down: the record was not taken (its ack said [`Fate::Retry`]).
#[derive(Debug)]
pub struct Closed;

/// What every source hands its records to: the decoder, then the worker pool.
#[derive(Clone)]
pub struct Intake {
    decoder: std::sync::Arc<Decoder>,
    events: mpsc::Sender<Event>,
}

impl Intake {
    pub fn new(decoder: std::sync::Arc<Decoder>, events: mpsc::Sender<Event>) -> Intake {
        Intake { decoder, events }
    }

    /// Decodes `record` and hands its event to the pool (waiting for room: backpressure), or
    /// resolves its ack with the rejection. Source threads outside the async runtime use
    /// [`Intake::decode_into`] and [`Intake::blocking_hand_over`] instead.
    pub async fn submit(&self, record: Record) -> Result<(), Closed> {
        match self.decoder.decode(record) {
            Ok(event) => self.events.send(event).await.map_err(|_| Closed),
            Err((rejection, ack)) => {
                ack.resolve(Fate::Rejected(rejection));
                Ok(())
            }
        }
    }

    /// Decodes `record` into `run` (an event for the pool, handed over later with
    /// [`Intake::blocking_hand_over`]), or resolves its ack with the rejection now. For source
    /// threads outside the async runtime.
    pub fn decode_into(&self, record: Record, run: &mut Vec<Event>) {
        match self.decoder.decode(record) {
            Ok(event) => run.push(event),
            Err((rejection, ack)) => ack.resolve(Fate::Rejected(rejection)),
        }
    }

    /// Hands `run`'s events to the pool, in order, waiting for room (backpressure). One run is
    /// one wake-up of the pool rather than one per event: the first send wakes it, and the
    /// rest are in the channel before it runs.
    pub fn blocking_hand_over(&self, run: &mut Vec<Event>) -> Result<(), Closed> {
        for event in run.drain(..) {
            self.events.blocking_send(event).map_err(|_| Closed)?;
        }
        Ok(())
    }
}
