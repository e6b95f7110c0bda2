//! A connection setting that cannot work, as a type: kept apart from the configuration so that
//! the secrets' parser, the configuration and the warehouse's connection can all name it.

/// A connection setting that cannot work (bad URL, unreadable secret or CA file): a
/// configuration mistake, never retried. The message never holds a password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Why the configuration cannot be used. Every message names the setting the way the user
/// wrote it and where (`url` in [database] of etl.toml, `ETL_NATS_URL`), what is wrong and what
/// to do; the command line prints one `ERROR` line per problem and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable cannot be read or does not fit (bad TOML, an unknown key, a
    /// value of the wrong type): one explained line per problem.
    #[error("{}", .0.join("\n"))]
    Unreadable(Vec<String>),
    /// A section's name holds a value where a table belongs (`database = "…"`).
    #[error("{place} names the section [{section}], which holds settings rather than a value: set its keys instead (`key = value` lines under [{section}] in the file, or ETL_{}__<KEY> variables)", .section.to_ascii_uppercase())]
    NotATable { section: String, place: String },
    /// One setting given twice in one input, under its sectioned name and its flat alias: which
    /// one was meant cannot be guessed.
    #[error("{sectioned} and {flat} are the same setting: keep one ({sectioned} is its name, {flat} an alias kept for older files)")]
    BothNames { sectioned: String, flat: String },
    /// A count or period set to zero where zero cannot work.
    #[error("{setting} is 0, which cannot work ({why}): set it to at least 1")]
    Zero { setting: String, why: &'static str },
    /// Raw retention without the lake export would delete rows the lake never received.
    #[error("{raw} needs the lake export: raw rows leave the warehouse only once the lake holds them, so set {export} too (or set {raw} to 0)")]
    RawRetentionWithoutExport { raw: String, export: String },
    /// Two `kind = "inbox"` sources would race each other for the same files.
    #[error("the inbox source is configured twice ([[sources]] #{first} and #{second}): keep one")]
    InboxTwice { first: usize, second: usize },
    /// Two HTTP sources of one name would share their position and landing folder.
    #[error("two http sources are named {name:?} ([[sources]] #{first} and #{second}): give each its own name (it names its stored position and its landing folder)")]
    DuplicateSourceName {
        name: String,
        first: usize,
        second: usize,
    },
    /// An HTTP source's table that cannot work (its message names the source).
    #[error(transparent)]
    Source(#[from] SetupError),
}

impl ConfigError {
    /// One line per problem, as the command line prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Unreadable(lines) => lines.clone(),
            other => vec![other.to_string()],
        }
    }
}
