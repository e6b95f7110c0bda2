//! Start-up patience: how long a command waits for the warehouse or the broker it needs before
//! it gives up (`--wait SECONDS`, default 60; `--wait forever`).
//!
//! A one-shot command (`etl run --drain`, `etl migrate`, `etl export`, `etl dead-letters`, `etl
//! pull`, `etl forward --drain`) is run by a person, a cron job or a CI step that waits for its
//! exit: retrying for ever against a server that is not there (or a peer that accepts the
//! connection and never answers) looks like a hang. So such a command retries at start-up
//! within a bound, then ends with exit 1 and one ERROR line naming what it could not reach,
//! before it has touched any file. The daemon (`etl run` following) keeps waiting for ever, as a
//! service that starts before its database must. The bound is about start-up only: an outage
//! after start is retried as the book's Guarantees say (docs/src/concepts/guarantees.md).
//!
//! Every attempt is itself bounded by the connect timeout ([`CONNECT_TIMEOUT`], or the URL's
//! `connect_timeout`): tokio-postgres bounds the TCP connection only, not the start-up
//! handshake that follows it, and a peer that never answers would hold an attempt for ever.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backoff::{self, Backoff};
use crate::catalog::Catalog;
use crate::config::{Config, DEFAULT_DATABASE_URL};
use crate::load::connect::{self, Target};
use crate::load::migrate::Migration;
use crate::load::{DbError, Warehouse};

pub use crate::load::connect::CONNECT_TIMEOUT;

// `--wait`'s value is configuration (it flows down from the command line).
pub use crate::config::{Wait, DEFAULT_WAIT_SECS};

/// What a command waits for, as it is named in its log lines (never with a password).
#[derive(Clone, Debug)]
pub struct Needed {
    /// `the warehouse`, `the broker`.
    pub what: &'static str,
    /// The redacted URL, followed by "(the built-in default …)" when nothing configured it.
    pub target: String,
    /// What the operator can do about it (start it, or fix which setting).
    pub fix: String,
    /// What the failing step is called in a retry line: `migrate`, `connect to`.
    pub verb: &'static str,
}

/// One attempt that did not succeed.
pub enum Failed {
    /// No retry can fix it (a wrong password, an unknown database…): returned at once.
    Fatal(DbError),
    /// It may pass (refused, no answer, the server still starting): retried within the bound.
    Retry(String),
}

/// Why a start-up wait ended without what it waited for. (Each variant shows its cause and
/// keeps it as its source, so the exit status can tell a fatal database error by its type.)
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    // Boxed: the give-up holds the whole story, and errors travel by value.
    #[error("{0}")]
    GaveUp(#[source] Box<GaveUp>),
    /// An error no retry fixes, or a setting that cannot work.
    #[error("{0}")]
    Fatal(#[from] DbError),
}

impl From<GaveUp> for StartupError {
    fn from(gave_up: GaveUp) -> StartupError {
        StartupError::GaveUp(Box::new(gave_up))
    }
}

/// The command waited as long as `--wait` allows, and what it needs never answered.
#[derive(Debug, thiserror::Error)]
#[error(
    "gave up after {waited_secs} s (--wait {wait}): cannot {verb} {what} {target}: {last}; {fix}, \
     or give it longer with --wait SECONDS (--wait forever waits for ever); nothing was read or \
     moved"
)]
pub struct GaveUp {
    pub what: &'static str,
    pub verb: &'static str,
    pub target: String,
    pub fix: String,
    pub wait: Wait,
    pub waited_secs: u64,
    /// The last attempt's error.
    pub last: String,
}

/// Runs `attempt` until it succeeds, a retry cannot help, `wait` has passed (then
/// [`GaveUp`]), or `stop` fires (then `None`). Each attempt gets the time it may spend
/// connecting: the connect timeout, never more than what is left of the wait (but at least a
/// moment, so the last attempt is a real one). Retries are WARN lines (it may still come), and
/// each names the target in full: the first is the line a person reads when a command seems
/// stuck, and a daemon's log may have rotated the first away.
pub async fn retry<T, F, Fut>(
    needed: &Needed,
    wait: Wait,
    connect_timeout: Duration,
    max_backoff: Duration,
    stop: &CancellationToken,
    mut attempt: F,
) -> Result<Option<T>, StartupError>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, Failed>>,
{
    let started = Instant::now();
    let remaining = || match wait {
        Wait::Forever => None,
        Wait::Bounded(bound) => Some(bound.saturating_sub(started.elapsed())),
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), max_backoff);
    let mut attempts = 0u64;
    loop {
        let bound = match remaining() {
            None => connect_timeout,
            Some(left) => connect_timeout.min(left.max(Duration::from_millis(500))),
        };
        let last = match attempt(bound).await {
            Ok(value) => {
                if attempts > 0 {
                    tracing::info!(target = %needed.target, attempts, "{} answers now", needed.what);
                }
                return Ok(Some(value));
            }
            Err(Failed::Fatal(error)) => return Err(error.into()),
            Err(Failed::Retry(last)) => last,
        };
        attempts += 1;
        let left = remaining();
        if left.is_some_and(|left| left.is_zero()) {
            return Err(GaveUp {
                what: needed.what,
                verb: needed.verb,
                target: needed.target.clone(),
                fix: needed.fix.clone(),
                wait,
                waited_secs: started.elapsed().as_secs(),
                last,
            }
            .into());
        }
        // The last sleep ends at the deadline, so the last attempt comes at the bound.
        let delay = backoff.next_delay();
        let delay = left.map_or(delay, |left| delay.min(left));
        let patience = match wait {
            // The daemon, or `--wait forever`: no bound to announce.
            Wait::Forever => "until it answers".to_owned(),
            Wait::Bounded(bound) => format!("for up to {} s (--wait)", bound.as_secs()),
        };
        tracing::warn!(
            retry_in_ms = delay.as_millis() as u64,
            "cannot {} {} {} yet: {last}; retrying {patience}",
            needed.verb,
            needed.what,
            needed.target,
        );
        if !backoff::sleep(delay, stop).await {
            return Ok(None);
        }
    }
}

/// `future` within `bound`, or [`Failed::Retry`] saying that nothing answered in time.
pub async fn within<T>(
    bound: Duration,
    future: impl Future<Output = Result<T, Failed>>,
) -> Result<T, Failed> {
    match tokio::time::timeout(bound, future).await {
        Ok(result) => result,
        Err(_) => Err(Failed::Retry(format!(
            "no answer within {:.1} s",
            bound.as_secs_f64()
        ))),
    }
}

/// The warehouse as the retry and give-up lines name it: the redacted URL, and whether it is
/// the built-in default (a forgotten setting is then the likely cause).
pub fn warehouse(config: &Config) -> Needed {
    let mut target = connect::describe(config);
    if config.database.url_file.is_none() && config.database.url == DEFAULT_DATABASE_URL {
        target
            .push_str(" (the built-in default: neither database_url nor ETL_DATABASE_URL is set)");
    }
    Needed {
        what: "the warehouse",
        target,
        fix: "start it, or point database_url (ETL_DATABASE_URL) at it".into(),
        verb: "connect to",
    }
}

/// A failed database step: retried, unless no retry can fix it ([`connect::fatal_at_startup`]).
fn classify(error: DbError) -> Failed {
    if connect::fatal_at_startup(&error).is_some() {
        Failed::Fatal(error)
    } else {
        Failed::Retry(error.to_string())
    }
}

/// Applies the migrations and checks the tables at start-up, retrying within `wait` while the
/// warehouse cannot be reached or migrated; the versions applied, or `None` if `stop` fired.
pub async fn prepare_warehouse(
    warehouse: &Warehouse,
    migrations: &[Migration],
    catalog: &Catalog,
    config: &Config,
    wait: Wait,
    stop: &CancellationToken,
) -> Result<Option<Vec<String>>, StartupError> {
    let needed = Needed {
        verb: "migrate",
        ..self::warehouse(config)
    };
    retry(
        &needed,
        wait,
        warehouse.connect_timeout(),
        config.max_retry_backoff(),
        stop,
        |bound| async move {
            // Only getting the connection is bounded: a long migration is not a silent server.
            let mut client =
                within(bound, async { warehouse.client().await.map_err(classify) }).await?;
            Warehouse::prepare_on(&mut client, migrations, catalog)
                .await
                .map_err(classify)
        },
    )
    .await
}

/// Waits within `wait` until the warehouse accepts a connection: what a one-shot command that
/// reads or writes it (`etl export`, `etl dead-letters`) does first, so that it gives up with
/// one line instead of failing (or hanging) half-way. False if `stop` fired.
pub async fn warehouse_answers(
    config: &Config,
    wait: Wait,
    stop: &CancellationToken,
) -> Result<bool, StartupError> {
    let target = Target::from_config(config).map_err(DbError::from)?;
    let needed = self::warehouse(config);
    let answered = retry(
        &needed,
        wait,
        target.connect_timeout(),
        config.max_retry_backoff(),
        stop,
        |bound| {
            let target = &target;
            within(bound, async move {
                target.connect().await.map(drop).map_err(classify)
            })
        },
    )
    .await?;
    Ok(answered.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_seconds_or_forever() {
        assert_eq!("forever".parse(), Ok(Wait::Forever));
        assert_eq!("2".parse(), Ok(Wait::Bounded(Duration::from_secs(2))));
        assert!("2s".parse::<Wait>().is_err_and(|e| e.contains("--wait 60")));
    }

    fn needed() -> Needed {
        Needed {
            what: "the warehouse",
            target: "postgres://u@h/db".into(),
            fix: "start it".into(),
            verb: "connect to",
        }
    }

    #[test]
    fn the_built_in_default_warehouse_is_named_as_such() {
        let default = warehouse(&Config::default()).target;
        assert_eq!(
            default,
            "postgres://postgres@localhost:5432/postgres (the built-in default: neither \
             database_url nor ETL_DATABASE_URL is set)"
        );
        let mut configured = Config::default();
        configured.database.url = "postgres://etl:pw@db:5432/dwh".into();
        assert_eq!(
            warehouse(&configured).target,
            "postgres://etl:***@db:5432/dwh"
        );
    }

    #[tokio::test]
    async fn a_bounded_wait_gives_up_with_the_last_error() {
        let stop = CancellationToken::new();
        let gave_up = retry::<(), _, _>(
            &needed(),
            Wait::Bounded(Duration::from_millis(300)),
            CONNECT_TIMEOUT,
            Duration::from_millis(50),
            &stop,
            |_| async { Err(Failed::Retry("refused".into())) },
        )
        .await;
        let text = gave_up.expect_err("gives up").to_string();
        assert!(text.contains("postgres://u@h/db: refused"), "{text}");
        assert!(text.contains("--wait 0"), "{text}");
    }

    #[tokio::test]
    async fn a_fatal_error_is_returned_at_once_and_a_success_ends_the_wait() {
        let stop = CancellationToken::new();
        let fatal = retry::<(), _, _>(
            &needed(),
            Wait::Forever,
            CONNECT_TIMEOUT,
            Duration::from_millis(50),
            &stop,
            |_| async { Err(Failed::Fatal(DbError::Internal("wrong password".into()))) },
        )
        .await;
        assert!(fatal.is_err_and(|e| e.to_string() == "internal error: wrong password"));
        let mut tries = 0;
        let ok = retry(
            &needed(),
            Wait::Forever,
            CONNECT_TIMEOUT,
            Duration::from_millis(5),
            &stop,
            |_| {
                tries += 1;
                let n = tries;
                async move {
                    if n < 3 {
                        Err(Failed::Retry("not yet".into()))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await
        .expect("no error");
        assert_eq!(ok, Some(3));
    }
}
