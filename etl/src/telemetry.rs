//! Logging setup, done once at start-up: readable lines or JSON, filtered by `RUST_LOG`, on
//! stdout and, for the daemon, in `<data_dir>/logs/etl.log` (rotated daily).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
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
    let (file_layer, guard) = match log_dir.map(open_log_file) {
        Some(Ok(appender)) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(fmt_layer(json, writer, false)), Some(guard))
        }
        Some(Err(error)) => {
            eprintln!("cannot open the log file: {error}; logging to stdout only");
            (None, None)
        }
        None => (None, None),
    };
    // Colour codes only where a person reads stdout directly, not in redirected logs.
    let stdout_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    // `try_init`: tests may start several pipelines in one process.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer(json, std::io::stdout, stdout_is_terminal))
        .with(file_layer)
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
        base.boxed()
    }
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
