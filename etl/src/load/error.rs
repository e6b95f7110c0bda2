//! What can go wrong with the warehouse, as types: a database failure ([`DbError`], never the
//! events' fault) and a connection setting that cannot work ([`SetupError`]). Kept apart from
//! the connection and the loader so that both can name them without importing each other.

/// A failure of the database, never of the events: the caller retries the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {}", causes(.0))]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection: {}", causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("migration {version} failed: {}", causes(.source))]
    Migration {
        version: String,
        source: tokio_postgres::Error,
    },
    #[error("the warehouse does not match the declared event types:\n  {}", .0.join("\n  "))]
    Tables(Vec<String>),
    /// Nothing answered within the connect timeout (a peer that accepts the connection and
    /// never speaks, a firewall that drops packets): transient, like a refused connection.
    #[error("no answer from the server within {:.1} s (connect timeout)", .0.as_secs_f64())]
    NoAnswer(std::time::Duration),
    /// A bug, not the database's nor the events' fault (kept out of the retry logic's way).
    #[error("internal error: {0}")]
    Internal(String),
}

/// An error and its sources on one line: tokio-postgres says only "error connecting to server"
/// and keeps the useful part ("Connection refused") in its source.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub use etl_core::config::SetupError;
