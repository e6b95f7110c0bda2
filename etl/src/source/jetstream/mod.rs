//! The JetStream source: the stream's durable pull consumer, shared by any number of `etl run`
//! replicas on any hosts (the broker delivers each message to one replica at a time).
//!
//! ```text
//! fetch (batches) ──Record──▶ Intake (decode) ──▶ pool ──commit──▶ JsAck
//!                                   │ rejected                        │
//!                                   ▼                                 ▼
//!                           acker task: committed → ack (double: the server confirms)
//!                                       rejected  → rejected_events row, then terminate
//!                                       retry     → nak with a delay
//! ```
//!
//! A message leaves the stream only by a commit or by the dead-letter table
//! ([`super::deadletter`]).
//! While the pool holds a message (a database outage, retried for as long as it lasts) the
//! source keeps it alive with progress acknowledgements, so the broker does not hand it to
//! another replica; a replica that dies or is cut off stops sending them, and its messages go
//! to the others after the ack wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::deadletter::{self, DeadLetter};
use super::{Ack, Acknowledge, Fate, Intake, Mode, Record, Source, SourceError, Started};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::load::Warehouse;
use crate::ops::metrics::BROKER_PENDING;
use crate::outcome;
use crate::rejection::{RejectCode, Rejection};
use crate::stats::Stats;

/// The pull's idle heartbeat: a pull that misses two is renewed.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// How often, at most, the consumer's state is read (the pending gauge, the end of a drain).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// Acknowledgements in flight at once (each waits for the server's confirmation).
const ACKS_IN_FLIGHT: usize = 512;

/// Messages a replica asks for at once: no more than there is room for in the pipeline, so what
/// it holds stays bounded.
fn room(config: &Config) -> usize {
    config.broker.fetch_batch.min(config.channel_capacity)
}

/// The JetStream source and what it knows while it runs.
pub struct JetStream {
    config: Config,
    catalog: Catalog,
    stats: Arc<Stats>,
    /// Where rejected messages go before they are terminated.
    warehouse: Warehouse,
    /// Messages received and not yet settled.
    in_flight: AtomicU64,
    /// The consumer's pending count at the last look (for the backlog and the gauge).
    pending: AtomicU64,
    /// The connection, once the stream and consumer are there: readiness is its state.
    client: OnceLock<async_nats::Client>,
    /// The ack subject and arrival of every held message, for the progress heartbeats.
    held: Mutex<HashMap<u64, (async_nats::Subject, Instant)>>,
}

impl JetStream {
    pub fn new(
        config: &Config,
        catalog: &Catalog,
        stats: Arc<Stats>,
        warehouse: Warehouse,
    ) -> Self {
        JetStream {
            config: config.clone(),
            catalog: catalog.clone(),
            stats,
            warehouse,
            in_flight: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            client: OnceLock::new(),
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl Source for JetStream {
    fn start(self: Arc<Self>, mode: Mode, intake: Intake, stop: CancellationToken) -> Started {
        let (done_tx, done_rx) = oneshot::channel();
        let discovery = tokio::spawn(async move {
            let result = self.run(mode, intake, stop).await;
            let _ = done_tx.send(());
            result
        });
        Started {
            discovery,
            finished: vec![done_rx],
        }
    }

    fn backlog(&self) -> u64 {
        self.pending.load(Ordering::Relaxed) + self.in_flight()
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn ready(&self) -> bool {
        self.client.get().is_some_and(crate::broker::is_connected)
    }

    fn stuck(&self) -> usize {
        0
    }
}

/// A settled message, on its way to the acker task.
struct Settled {
    message: jetstream::Message,
    fate: Fate,
    origin: String,
}

/// The ack handle of one message.
struct JsAck {
    settled: mpsc::UnboundedSender<Settled>,
    message: Option<jetstream::Message>,
    origin: String,
}

impl Acknowledge for JsAck {
    fn settle(mut self: Box<Self>, fate: Fate) {
        if let Some(message) = self.message.take() {
            let origin = std::mem::take(&mut self.origin);
            // The acker outlives every ack (it ends when the last sender is gone); if the run
            // is over, the unanswered message is delivered again after the ack wait.
            let _ = self.settled.send(Settled {
                message,
                fate,
                origin,
            });
        }
    }
}

impl JetStream {
    async fn run(
        self: Arc<Self>,
        mode: Mode,
        intake: Intake,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let wait = self.config.startup_wait_for(mode);
        let Some(client) = crate::broker::connect(&self.config, wait, &stop).await? else {
            return Ok(());
        };
        let js = jetstream::new(client.clone());
        let mut consumer = crate::broker::ensure_consumer(&js, &self.config).await?;
        let _ = self.client.set(client.clone());
        tracing::info!(stream = %self.config.broker.stream, consumer = %self.config.broker.consumer, url = %crate::broker::shown_url(&self.config), "consuming from the broker");

        let (settled_tx, settled_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(self.clone().acker(settled_rx));
        let heartbeat = tokio::spawn(self.clone().heartbeat(client.clone(), stop.clone()));

        // One continuous pull (the client keeps up to a batch requested, with heartbeats, and
        // re-requests after a reconnect) rather than a fetch per round: an idle fetch loop
        // costs the server a request per round for nothing.
        let mut messages = None;
        let mut last_look = Instant::now();
        let mut idle = false;
        while !stop.is_cancelled() {
            if messages.is_none() {
                match consumer
                    .stream()
                    .max_messages_per_batch(room(&self.config))
                    .heartbeat(PULL_HEARTBEAT)
                    .messages()
                    .await
                {
                    Ok(stream) => messages = Some(stream),
                    Err(error) => {
                        tracing::warn!(%error, "cannot pull from the broker; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.cancelled() => {}
                        }
                        continue;
                    }
                }
            }
            let Some(stream) = messages.as_mut() else {
                continue;
            };
            let next = tokio::select! {
                next = tokio::time::timeout(IDLE_LOOK, stream.next()) => next,
                _ = stop.cancelled() => break,
            };
            match next {
                Ok(Some(Ok(message))) => {
                    idle = false;
                    if self.submit(message, &intake, &settled_tx).await.is_err() {
                        break; // the pipeline is closing
                    }
                }
                Ok(Some(Err(error))) => {
                    // A missed heartbeat or a failed pull (the broker restarting): pull anew.
                    tracing::debug!(%error, "the pull ended; pulling again");
                    messages = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(None) => messages = None,
                Err(_) => idle = true,
            }
            // The consumer's numbers, at most once per IDLE_LOOK: the pending gauge, and the
            // end of a drain (nothing for us in the stream, nothing held here).
            if last_look.elapsed() >= IDLE_LOOK {
                last_look = Instant::now();
                if let Ok(info) = consumer.info().await {
                    self.pending.store(info.num_pending, Ordering::Relaxed);
                    metrics::gauge!(BROKER_PENDING).set(info.num_pending as f64);
                    if mode == Mode::Drain
                        && idle
                        && info.num_pending == 0
                        && info.num_ack_pending == 0
                        && self.in_flight() == 0
                    {
                        break;
                    }
                }
            }
        }
        drop(settled_tx);
        // The pool resolves what it holds as it finishes; the acker ends with the last ack.
        let finished = async {
            let _ = acker.await;
        };
        tokio::select! {
            _ = finished => {}
            _ = tokio::time::sleep(self.config.shutdown_timeout() + Duration::from_secs(1)) => {}
        }
        heartbeat.abort();
        Ok(())
    }

    /// Hands one message to the intake as a record of the type its subject names; a subject
    /// naming no declared type is rejected at once (dead-lettered with its reason).
    async fn submit(
        &self,
        message: jetstream::Message,
        intake: &Intake,
        settled: &mpsc::UnboundedSender<Settled>,
    ) -> Result<(), super::Closed> {
        outcome::broker_message("received");
        let (sequence, delivered) = message
            .info()
            .map(|i| (i.stream_sequence, i.delivered))
            .unwrap_or((0, 1));
        if delivered > 1 {
            outcome::broker_message("redelivered");
        }
        let origin = format!("{}#{sequence}", self.config.broker.stream);
        if let Some(reply) = message.reply.clone() {
            if let Ok(mut held) = self.held.lock() {
                held.insert(sequence, (reply, Instant::now()));
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let subject = message.subject.to_string();
        let kind = crate::broker::type_of_subject(&self.config, &subject)
            .and_then(|name| self.catalog.get(name))
            .cloned();
        let bytes = message.payload.to_vec();
        let ack = Ack::new(JsAck {
            settled: settled.clone(),
            message: Some(message),
            origin: origin.clone(),
        });
        match kind {
            Some(kind) => {
                intake
                    .submit(Record {
                        kind,
                        bytes,
                        origin,
                        ack,
                    })
                    .await
            }
            None => {
                ack.resolve(Fate::Rejected(Rejection::new(
                    RejectCode::WrongFolder,
                    format!(
                        "subject {subject} names no declared event type ({})",
                        self.catalog.names()
                    ),
                )));
                Ok(())
            }
        }
    }

    /// Answers the broker for every settled message, many at once.
    async fn acker(self: Arc<Self>, mut settled: mpsc::UnboundedReceiver<Settled>) {
        let mut answering = futures::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                next = settled.recv(), if answering.len() < ACKS_IN_FLIGHT => match next {
                    Some(s) => answering.push(self.clone().answer(s)),
                    None => break,
                },
                Some(()) = answering.next(), if !answering.is_empty() => {}
            }
        }
        while answering.next().await.is_some() {}
    }

    async fn answer(self: Arc<Self>, settled: Settled) {
        let Settled {
            message,
            fate,
            origin,
        } = settled;
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        match fate {
            Fate::Committed => match message.double_ack().await {
                Ok(()) => outcome::acknowledged(&self.stats, 1),
                // Committed but not acknowledged: the broker delivers it again (to any replica)
                // and that commit changes nothing.
                Err(error) => {
                    tracing::warn!(%origin, %error, "cannot acknowledge a committed message; it will be delivered again and change nothing")
                }
            },
            Fate::Rejected(rejection) => {
                let subject = message.subject.to_string();
                let type_name = crate::broker::type_of_subject(&self.config, &subject);
                let letter = DeadLetter {
                    source: "jetstream",
                    origin: &origin,
                    subject: &subject,
                    type_name,
                    bytes: &message.payload,
                    rejection: &rejection,
                };
                let stored = match self.warehouse.client().await {
                    Ok(client) => deadletter::store(&client, &letter).await,
                    Err(error) => Err(error),
                };
                match stored {
                    Ok(inserted) => {
                        if let Err(error) = message.double_ack_with(AckKind::Term).await {
                            tracing::warn!(%origin, %error, "cannot terminate a dead-lettered message; it will be delivered and dead-lettered again");
                        }
                        // A message dead-lettered before (delivered again after a failed
                        // terminate) is not reported twice.
                        if inserted {
                            outcome::dead_lettered(
                                &self.stats,
                                type_name.unwrap_or("unknown"),
                                &origin,
                                &rejection,
                            );
                        }
                    }
                    // Never terminated before it is stored: delivered again later instead.
                    Err(error) => {
                        tracing::warn!(%origin, %error, "cannot store a rejected message in rejected_events; it stays in the stream");
                        let _ = message
                            .ack_with(AckKind::Nak(Some(self.config.max_retry_backoff())))
                            .await;
                        outcome::broker_message("nacked");
                    }
                }
            }
            Fate::Retry => {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                outcome::broker_message("nacked");
            }
        }
        if let Ok(mut held) = self.held.lock() {
            held.remove(&sequence);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every third of the ack wait, a progress acknowledgement for each message held longer
    /// than that: the broker keeps it with this replica while the pool retries a database
    /// outage, for as long as it lasts.
    async fn heartbeat(self: Arc<Self>, client: async_nats::Client, stop: CancellationToken) {
        let every = (self.config.nats_ack_wait() / 3).max(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                // Held messages are answered as the pool finishes; heartbeats past the stop
                // would only delay their redelivery elsewhere.
                _ = stop.cancelled() => return,
            }
            let due: Vec<async_nats::Subject> = match self.held.lock() {
                Ok(held) => held
                    .values()
                    .filter(|(_, since)| since.elapsed() >= every)
                    .map(|(reply, _)| reply.clone())
                    .collect(),
                Err(_) => Vec::new(),
            };
            for reply in due {
                let _ = client.publish(reply, "+WPI".into()).await;
            }
        }
    }
}
