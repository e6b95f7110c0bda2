//! The JetStream side that `etl forward` and the `jetstream` source share: the connection, the
//! one stream every type's events go to (a subject per type), and the replicas' shared durable
//! consumer — all created idempotently at start-up, with limits that never lose data.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::catalog::Kind;
use crate::config::Config;

/// The subject a type's events are published on: `<prefix>.<type name>`.
pub fn subject(config: &Config, kind: &Kind) -> String {
    format!("{}.{}", config.nats_subject_prefix, kind.name())
}

/// The type name a subject carries (`events.cards` → `cards`), whether or not it is declared.
pub fn type_of_subject<'a>(config: &Config, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(config.nats_subject_prefix.as_str())?
        .strip_prefix('.')
}

/// Connects to the broker, retrying while it is unreachable (it may still be starting), until
/// `stop`. The client reconnects by itself after that, for ever.
pub async fn connect(
    config: &Config,
    stop: &CancellationToken,
) -> anyhow::Result<Option<async_nats::Client>> {
    let mut backoff = Backoff::new(Duration::from_millis(200), config.max_retry_backoff());
    loop {
        let options = async_nats::ConnectOptions::new()
            .name("etl")
            // Never give up reconnecting: a broker restart must not end the daemon.
            .max_reconnects(None);
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), options.connect(servers(config)));
        let retry_in_ms = backoff.delay().as_millis() as u64;
        match attempt.await {
            Ok(Ok(client)) => return Ok(Some(client)),
            Ok(Err(error)) => {
                tracing::error!(url = %config.nats_url, %error, retry_in_ms, "cannot reach the broker yet");
            }
            Err(_) => {
                tracing::error!(url = %config.nats_url, retry_in_ms, "cannot reach the broker yet (timed out)");
            }
        }
        if !backoff.wait(stop).await {
            return Ok(None);
        }
    }
}

/// Whether the client is connected now (it reconnects by itself): for `/readyz`.
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// `nats_url` as a list of servers (a cluster's URLs, comma-separated).
fn servers(config: &Config) -> Vec<&str> {
    config
        .nats_url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The stream's configuration: nothing in it can drop an unconsumed message.
///
/// - work-queue retention: a message leaves when a replica acknowledges it (after its commit)
///   or terminates it (after it is in the dead-letter table), not before;
/// - `discard: new` at `max_bytes`: a full stream refuses publishes, so forwarders keep their
///   files and retry — back-pressure, not loss;
/// - no age limit and no message-count limit;
/// - the duplicate window drops a re-publish of an event id (a forwarder restarted after a crash
///   between the broker's acknowledgement and its move to `done/`).
pub fn stream_config(config: &Config) -> stream::Config {
    stream::Config {
        name: config.nats_stream.clone(),
        subjects: vec![format!("{}.>", config.nats_subject_prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_bytes: config.nats_max_bytes,
        max_messages: -1,
        max_age: Duration::ZERO,
        storage: stream::StorageType::File,
        num_replicas: config.nats_replicas,
        duplicate_window: Duration::from_secs(config.nats_duplicate_window_secs.max(1)),
        ..Default::default()
    }
}

/// The replicas' shared durable pull consumer: each message to one replica at a time, acked
/// explicitly; no delivery limit (a message that failed because the database was down must not
/// be dropped: a poison message is recognised by its error and dead-lettered instead).
pub fn consumer_config(config: &Config) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(config.nats_consumer.clone()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.nats_ack_wait(),
        max_deliver: -1,
        max_ack_pending: config.nats_max_ack_pending,
        ..Default::default()
    }
}

/// The stream, created if missing (an existing one is used as it is).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream_config(config))
        .await
        .with_context(|| format!("cannot create or find the stream {}", config.nats_stream))
}

/// The stream and the shared consumer, created if missing.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    config: &Config,
) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
    let stream = ensure_stream(js, config).await?;
    stream
        .get_or_create_consumer(&config.nats_consumer, consumer_config(config))
        .await
        .with_context(|| {
            format!(
                "cannot create or find the consumer {}",
                config.nats_consumer
            )
        })
}
