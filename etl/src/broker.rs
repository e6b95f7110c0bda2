//! The JetStream side that `etl forward` and the `jetstream` source share: the connection, the
//! one stream every type's events go to (a subject per type), and the replicas' shared durable
//! consumer — all created idempotently at start-up, with limits that never lose data.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio_util::sync::CancellationToken;

use crate::catalog::Kind;
use crate::config::{Config, DEFAULT_NATS_URL};
use crate::startup::{retry, within, Failed, Needed, StartupError, Wait, CONNECT_TIMEOUT};

/// The subject a type's events are published on: `<prefix>.<type name>`.
pub fn subject(config: &Config, kind: &Kind) -> String {
    format!("{}.{}", config.broker.subject_prefix, kind.name())
}

/// The type name a subject carries (`events.cards` → `cards`), whether or not it is declared.
pub fn type_of_subject<'a>(config: &Config, subject: &'a str) -> Option<&'a str> {
    subject
        .strip_prefix(config.broker.subject_prefix.as_str())?
        .strip_prefix('.')
}

/// Connects to the broker, retrying while it is unreachable (it may still be starting), until
/// `stop` (then `None`) or, for a one-shot command, until `wait` has passed (then
/// [`crate::startup::GaveUp`], naming the broker's URL without its credentials). The client
/// reconnects by itself after that, for ever.
pub async fn connect(
    config: &Config,
    wait: Wait,
    stop: &CancellationToken,
) -> Result<Option<async_nats::Client>, StartupError> {
    retry(
        &needed(config),
        wait,
        CONNECT_TIMEOUT,
        config.max_retry_backoff(),
        stop,
        |bound| async move {
            let options = async_nats::ConnectOptions::new()
                .name("etl")
                // Never give up reconnecting: a broker restart must not end the daemon.
                .max_reconnects(None);
            within(bound, async {
                options
                    .connect(servers(config))
                    .await
                    // The client's error names the server it tried: shown redacted anyway.
                    .map_err(|error| Failed::Retry(redact_urls(&error.to_string())))
            })
            .await
        },
    )
    .await
}

/// The broker as the retry and give-up lines name it.
fn needed(config: &Config) -> Needed {
    let mut target = shown_url(config);
    if config.broker.url == DEFAULT_NATS_URL {
        target.push_str(" (the built-in default: neither nats_url nor ETL_NATS_URL is set)");
    }
    Needed {
        what: "the broker",
        target,
        fix: "start it, or point nats_url (ETL_NATS_URL) at it".into(),
        verb: "connect to",
    }
}

/// `nats_url` as it may be shown: each server's credentials replaced by `***` (a user's
/// password, or a bare token: `nats://TOKEN@host`).
pub fn shown_url(config: &Config) -> String {
    servers(config)
        .into_iter()
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority = scheme_end + 3;
    let rest = &url[authority..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}{shown}{}", &url[..authority], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// Every `scheme://…` word of `text` redacted like [`shown_url`].
fn redact_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                redact_url(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the client is connected now (it reconnects by itself): for `/readyz`.
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// `nats_url` as a list of servers (a cluster's URLs, comma-separated).
fn servers(config: &Config) -> Vec<&str> {
    config
        .broker
        .url
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
        name: config.broker.stream.clone(),
        subjects: vec![format!("{}.>", config.broker.subject_prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_bytes: config.broker.max_bytes,
        max_messages: -1,
        max_age: Duration::ZERO,
        storage: stream::StorageType::File,
        num_replicas: config.broker.replicas,
        duplicate_window: Duration::from_secs(config.broker.duplicate_window_secs),
        ..Default::default()
    }
}

/// The replicas' shared durable pull consumer: each message to one replica at a time, acked
/// explicitly; no delivery limit (a message that failed because the database was down must not
/// be dropped: a poison message is recognised by its error and dead-lettered instead).
pub fn consumer_config(config: &Config) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(config.broker.consumer.clone()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.nats_ack_wait(),
        max_deliver: -1,
        max_ack_pending: config.broker.max_ack_pending,
        ..Default::default()
    }
}

/// The stream, created if missing (an existing one is used as it is).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
) -> Result<stream::Stream, BrokerError> {
    js.get_or_create_stream(stream_config(config))
        .await
        .map_err(|source| BrokerError::Stream {
            stream: config.broker.stream.clone(),
            source,
        })
}

/// What can go wrong with the broker once connected, as types.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("cannot create or find the stream {stream}: {source}")]
    Stream {
        stream: String,
        source: async_nats::jetstream::context::CreateStreamError,
    },
    #[error("cannot create or find the consumer {consumer}: {source}")]
    Consumer {
        consumer: String,
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("cannot publish to the broker: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
}

/// The stream and the shared consumer, created if missing.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    config: &Config,
) -> Result<consumer::Consumer<consumer::pull::Config>, BrokerError> {
    let stream = ensure_stream(js, config).await?;
    stream
        .get_or_create_consumer(&config.broker.consumer, consumer_config(config))
        .await
        .map_err(|source| BrokerError::Consumer {
            consumer: config.broker.consumer.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_broker_url_are_never_shown() {
        let mut config = Config::default();
        config.broker.url = "nats://etl:s3cret@a:4222, nats://tok3n@b:4222,nats://c:4222".into();
        assert_eq!(
            shown_url(&config),
            "nats://etl:***@a:4222,nats://***@b:4222,nats://c:4222"
        );
        assert_eq!(
            redact_urls("cannot connect to nats://u:pw@h:1: refused"),
            "cannot connect to nats://u:***@h:1: refused"
        );
    }
}
