//! Why the daemon could not start or had to stop, as a type: the commands pick the exit status
//! from it.

/// Why the daemon could not start or had to stop (a bad record never stops it).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("{0}")]
    Retention(#[from] crate::housekeeping::folders::RetentionError),
    #[error("{0}")]
    Db(#[from] crate::load::DbError),
    #[error("{0}")]
    Setup(#[from] crate::config::SetupError),
    #[error("{0}")]
    Startup(#[from] crate::startup::StartupError),
    #[error("{0}")]
    Broker(#[from] crate::broker::BrokerError),
    #[error("a source failed: {0}")]
    Source(#[from] crate::source::SourceError),
    /// The `[[sources]]` cannot work together; the sentence says why.
    #[error("{0}")]
    Sources(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A task of the daemon panicked (a bug): the run ends, and its records stay with their
    /// sources.
    #[error("a task of the daemon failed: {0}")]
    Task(tokio::task::JoinError),
}
