//! The `[[sources]]` tables of `etl.toml`: where records come from.

use serde::{Deserialize, Serialize};

use super::http::HttpConfig;

/// One `[[sources]]` table of `etl.toml`. With none configured the daemon reads the inbox, as
/// it always has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// The `events/inbox/<type>/` folders (the `etl::source::inbox` source); its settings are the
    /// `[inbox]` section.
    Inbox {},
    /// The JetStream stream's durable pull consumer (`etl::source::jetstream`); its settings are
    /// the `[broker]` section.
    Jetstream {},
    /// An HTTP API polled on a schedule (`etl::source::http`); any number of them, each named.
    Http(Box<HttpConfig>),
}
