//! Logging setup, done once at start-up: readable lines or JSON, filtered by `RUST_LOG`, on
//! stdout and, for the daemon, in `<data_dir>/logs/etl.log` (rotated daily).
//!
//! A readable line is `<time> LEVEL message key=value …`, and everything after the message is
//! logfmt ([`Logfmt`]): operators grep the prefix (`WARN rejected`) and log shippers split the
//! fields, so a reason that holds spaces, quotes, `=` or a newline must not break either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;

/// Keeps the log file writer alive; dropping it flushes the last lines.
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Daily files `etl.log.YYYY-MM-DD`, a week of them kept, and `etl.log` a symlink to the
/// current one so that `tail -F data/logs/etl.log` keeps working across rotations.
const FILE_PREFIX: &str = "etl.log";
const KEEP_FILES: usize = 7;

pub fn init(format: LogFormat, log_dir: Option<&Path>) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = format == LogFormat::Json;
    let file = match log_dir.map(open_log_file) {
        Some(Ok(appender)) => Some(tracing_appender::non_blocking(appender)),
        Some(Err(error)) => {
            eprintln!("cannot open the log file: {error}; logging to stdout only");
            None
        }
        None => None,
    };
    // Colour codes only where a person reads stdout directly, not in redirected logs.
    let stdout_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (layers, guard) = match file {
        // The same line for both: formatted once and written twice (formatting a line costs
        // more than anything else the daemon does for a rejected file).
        Some((writer, guard)) if !stdout_is_terminal => (
            vec![fmt_layer(json, std::io::stdout.and(writer), false)],
            Some(guard),
        ),
        Some((writer, guard)) => (
            vec![
                fmt_layer(json, std::io::stdout, true),
                fmt_layer(json, writer, false),
            ],
            Some(guard),
        ),
        None => (
            vec![fmt_layer(json, std::io::stdout, stdout_is_terminal)],
            None,
        ),
    };
    // `try_init`: tests may start several pipelines in one process.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
    LogGuard(guard)
}

/// One output, readable or JSON; colours only where a person reads it directly.
fn fmt_layer<S, W>(json: bool, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        base.json().flatten_event(true).boxed()
    } else {
        base.fmt_fields(Logfmt).boxed()
    }
}

/// Writes an event's fields as logfmt after its message: a value is bare when it is a plain
/// token, and otherwise quoted with `\`, `"` and control characters escaped, so one event is
/// always one line whose fields split unambiguously. tracing-subscriber's default writes
/// `%`-formatted values raw (`reason="user_id" is a required property (at /payload)` could not
/// be split); no maintained crate offers a logfmt field formatter for it, hence these few lines.
pub struct Logfmt;

impl<'writer> FormatFields<'writer> for Logfmt {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = LogfmtVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogfmtVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl LogfmtVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            // The message is the line's readable head: kept bare, but never split over lines.
            write!(self.writer, "{separator}{}", escaped_lines(value))
        } else {
            let name = field.name().strip_prefix("r#").unwrap_or(field.name());
            write!(self.writer, "{separator}{name}={}", logfmt_value(value))
        };
    }
}

impl Visit for LogfmtVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%` fields arrive here too, as Debug wrappers that print their Display form.
        self.write(field, &format!("{value:?}"));
    }
}

/// `value` as a logfmt value: bare if it is a non-empty run of characters that need no quoting,
/// else in double quotes with `\`, `"` and control characters escaped.
pub fn logfmt_value(value: &str) -> std::borrow::Cow<'_, str> {
    // Bytes first: plain ASCII is decided without decoding characters; only text with other
    // characters (whose whitespace and controls need Unicode's tables) takes the slow test.
    let plain = !value.is_empty()
        && value.bytes().all(|b| {
            (b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\') || !b.is_ascii()
        })
        && (value.is_ascii() || value.chars().all(|c| !c.is_control() && !c.is_whitespace()));
    if plain {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    // Runs that need no escape are copied whole.
    let mut start = 0;
    for (at, c) in value.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        quoted.push_str(&value[start..at]);
        if escape.is_empty() {
            quoted.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            quoted.push_str(escape);
        }
        start = at + c.len_utf8();
    }
    quoted.push_str(&value[start..]);
    quoted.push('"');
    quoted.into()
}

/// `text` with line breaks and other control characters escaped, so it stays on one line.
fn escaped_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => format!("\\u{{{:04x}}}", u32::from(c)),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

fn open_log_file(dir: &Path) -> Result<RollingFileAppender, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .max_log_files(KEEP_FILES)
        .build(dir)
        .map_err(|e| e.to_string())?;
    spawn_link_keeper(dir.to_path_buf());
    Ok(appender)
}

/// Points `etl.log` at the newest dated file now and every minute (tracing-appender rotates
/// by creating a new dated file; it does not maintain a stable name).
fn spawn_link_keeper(dir: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("etl-log-link".into())
        .spawn(move || loop {
            relink(&dir);
            std::thread::sleep(Duration::from_secs(60));
        });
}

fn relink(dir: &Path) {
    let newest = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{FILE_PREFIX}.")))
            .max()
    });
    let Some(newest) = newest else { return };
    let link = dir.join(FILE_PREFIX);
    if std::fs::read_link(&link).is_ok_and(|target| target == Path::new(&newest)) {
        return;
    }
    // A fresh symlink renamed over the old one: the name never disappears.
    let tmp = dir.join(format!(".{FILE_PREFIX}.{}.link", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(&newest, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, &link);
    }
}

#[cfg(test)]
mod tests {
    use super::logfmt_value;

    #[test]
    fn plain_values_stay_bare_and_others_are_quoted_and_escaped() {
        assert_eq!(logfmt_value("schema"), "schema");
        assert_eq!(logfmt_value("/payload/id"), "/payload/id");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(
            logfmt_value("\"user_id\" is a required property (at /payload)"),
            "\"\\\"user_id\\\" is a required property (at /payload)\""
        );
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("x\ny\\z"), "\"x\\ny\\\\z\"");
        assert_eq!(logfmt_value("bell\u{7}"), "\"bell\\u{0007}\"");
    }
}
