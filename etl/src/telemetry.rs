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
        let first = std::mem::replace(&mut self.first, false);
        let writer = &mut self.writer;
        // Piece by piece into the line's buffer, never through an intermediate string: a
        // rejection's line is written for every refused file.
        self.result = (|| {
            if !first {
                writer.write_char(' ')?;
            }
            if field.name() == "message" {
                // The message is the line's readable head: kept bare, but never split over lines.
                write_escaped(writer, value, false)
            } else {
                let name = field.name().strip_prefix("r#").unwrap_or(field.name());
                writer.write_str(name)?;
                writer.write_char('=')?;
                write_logfmt_value(writer, value)
            }
        })();
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

/// Whether `value` can stand bare in logfmt: a non-empty run of characters that need no quoting.
fn is_plain(value: &str) -> bool {
    // Bytes first: plain ASCII is decided without decoding characters; only text with other
    // characters (whose whitespace and controls need Unicode's tables) takes the slow test.
    !value.is_empty()
        && value.bytes().all(|b| {
            (b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\') || !b.is_ascii()
        })
        && (value.is_ascii() || value.chars().all(|c| !c.is_control() && !c.is_whitespace()))
}

/// `value` as a logfmt value: bare if [`is_plain`], else in double quotes with `\`, `"` and
/// control characters escaped.
fn write_logfmt_value(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if is_plain(value) {
        return writer.write_str(value);
    }
    writer.write_char('"')?;
    write_escaped(writer, value, true)?;
    writer.write_char('"')
}

/// Writes `text` with its control characters escaped (and, when `quotes`, `"` and `\` too),
/// copying the runs between them whole. Control characters are U+0000–U+001F and U+007F–U+009F,
/// so bytes decide: the C1 ones are the two-byte sequences C2 80 to C2 9F.
fn write_escaped(writer: &mut impl fmt::Write, text: &str, quotes: bool) -> fmt::Result {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        let (escape, width): (&str, usize) = match b {
            b'"' if quotes => ("\\\"", 1),
            b'\\' if quotes => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            0x00..=0x1f | 0x7f => ("", 1),
            0xc2 if matches!(bytes.get(at + 1), Some(0x80..=0x9f)) => ("", 2),
            _ => {
                at += 1;
                continue;
            }
        };
        writer.write_str(&text[start..at])?;
        if escape.is_empty() {
            let c = text[at..].chars().next().map_or(0, u32::from);
            write!(writer, "\\u{{{c:04x}}}")?;
        } else {
            writer.write_str(escape)?;
        }
        at += width;
        start = at;
    }
    writer.write_str(&text[start..])
}

/// `value` as a logfmt value, as [`write_logfmt_value`] writes it.
pub fn logfmt_value(value: &str) -> std::borrow::Cow<'_, str> {
    if is_plain(value) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    // Writing to a String cannot fail.
    let _ = write_logfmt_value(&mut quoted, value);
    quoted.into()
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
        // C1 controls are escaped too; other characters, and runs of them, stay as written.
        assert_eq!(logfmt_value("a\u{85}b é"), "\"a\\u{0085}b é\"");
        assert_eq!(logfmt_value("naïve"), "naïve");
        assert_eq!(logfmt_value("a\u{2028}b"), "\"a\u{2028}b\"");
    }

    #[test]
    fn a_message_keeps_its_quotes_and_loses_its_line_breaks() {
        let mut line = String::new();
        super::write_escaped(&mut line, "say \"hi\"\nnow\t\u{7f}", false).expect("a String");
        assert_eq!(line, "say \"hi\"\\nnow\\t\\u{007f}");
    }
}
