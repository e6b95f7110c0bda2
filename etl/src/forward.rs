//! `etl forward`'s sink, in place of the worker pool: each valid event is published to the
//! broker (its type's subject, the `Nats-Msg-Id` header set to its event id) and its record is
//! acknowledged — for the inbox: the file moves to `done/` — only once the broker has stored it.
//!
//! Publishes are pipelined: up to `nats_publish_in_flight` wait for their acknowledgement at
//! once. A publish the broker refuses (the stream is full) or does not answer (it is down) is
//! retried with backoff for as long as that lasts, holding its event: the bounded channel in
//! front then fills, and readers wait — back-pressure, files stay in the inbox. A re-publish
//! after a crash is dropped by the broker's duplicate window and acknowledged as a duplicate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::event::Event;
use crate::outcome;
use crate::source::Fate;

/// A running publisher. Dropping every clone of its sender lets it finish: it waits for the
/// acknowledgements in flight, then its task ends.
pub struct Publisher {
    pub sender: mpsc::Sender<Event>,
    pub task: tokio::task::JoinHandle<()>,
    pub health: BrokerHealth,
}

/// Whether the broker takes publishes, for `/readyz`: connected, and the last publish was
/// acknowledged.
#[derive(Clone)]
pub struct BrokerHealth {
    client: async_nats::Client,
    publishing: Arc<AtomicBool>,
}

impl BrokerHealth {
    pub fn up(&self) -> bool {
        self.publishing.load(Ordering::Relaxed) && crate::broker::is_connected(&self.client)
    }
}

impl Publisher {
    pub fn start(
        client: async_nats::Client,
        config: &Config,
        hard_stop: CancellationToken,
    ) -> Publisher {
        let js = jetstream::new(client.clone());
        let (sender, events) = mpsc::channel(config.channel_capacity);
        let healthy = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(js, config.clone(), events, hard_stop, healthy.clone()));
        Publisher {
            sender,
            task,
            health: BrokerHealth {
                client,
                publishing: healthy,
            },
        }
    }
}

async fn run(
    js: jetstream::Context,
    config: Config,
    mut events: mpsc::Receiver<Event>,
    hard_stop: CancellationToken,
    healthy: Arc<AtomicBool>,
) {
    let config = Arc::new(config);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            next = events.recv(), if open && in_flight.len() < config.broker.publish_in_flight => match next {
                Some(event) => in_flight.push(publish(js.clone(), config.clone(), event, healthy.clone(), hard_stop.clone())),
                None => open = false,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            // Out of time: what is unacknowledged stays in the inbox (its acks drop as retry).
            _ = hard_stop.cancelled() => return,
        }
    }
}

/// Publishes one event until the broker stores it (or the hard stop), then resolves its ack.
async fn publish(
    js: jetstream::Context,
    config: Arc<Config>,
    mut event: Event,
    healthy: Arc<AtomicBool>,
    hard_stop: CancellationToken,
) {
    let subject = crate::broker::subject(&config, event.kind());
    let message = PublishMessage::build()
        .payload(std::mem::take(&mut event.document).into())
        .message_id(event.meta.event_id.to_string());
    let mut backoff = Backoff::new(Duration::from_millis(100), config.max_retry_backoff());
    loop {
        let attempt = async {
            let acked = js.send_publish(subject.clone(), message.clone()).await?;
            acked.await
        };
        match attempt.await {
            Ok(ack) => {
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(subject, "the broker takes publishes again");
                }
                outcome::forwarded(1, u64::from(ack.duplicate));
                crash_point!(ForwardPublished);
                event.ack.resolve(Fate::Committed);
                return;
            }
            Err(error) => {
                outcome::publish_error();
                // Logged once per episode, not per event: a full stream refuses thousands.
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(%error, subject, "the broker did not take a publish; retrying with backoff, files stay in the inbox");
                }
            }
        }
        if !backoff.wait(&hard_stop).await {
            return;
        }
    }
}
