//! The `etl` binary: parse the command line, load the configuration, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use etl::catalog::Catalog;
use etl::cli::{Cli, Command, DeadLetterAction, SourceArg, DEFAULT_CONFIG};
use etl::config::Config;
use etl::load::connect::{self, Target};
use etl::load::Warehouse;
use etl::ops::replay::Filter as ReplayFilter;
use etl::pipeline::{self, Mode, Sink};
use etl::source::deadletter;
use etl::source::http::config::{now_in_seconds, parse_instant};
use etl::source::http::Window;
use etl::source::SourceConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The default file is optional; a file the user names must be there (a typo in the path
    // must not start the daemon on defaults).
    let config_file = match &cli.config {
        Some(path) => match std::fs::metadata(path) {
            Ok(_) => path.clone(),
            Err(error) => {
                eprintln!(
                    "ERROR cannot read the configuration file {} given with --config: {error}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
        None => PathBuf::from(DEFAULT_CONFIG),
    };
    let mut config = match Config::load(&config_file) {
        Ok(config) => config,
        Err(error) => {
            for line in etl::config::explain(&error) {
                eprintln!("ERROR {line}");
            }
            return ExitCode::from(2);
        }
    };
    config.startup_wait = cli.wait;
    // Only the daemon writes the log file operators tail; one-shot commands print to stdout.
    let log_dir = matches!(cli.command, Command::Run { .. } | Command::Forward { .. })
        .then(|| config.logs_dir());
    let _log_guard = etl::telemetry::init(cli.log_format, log_dir.as_deref());
    let warehouse = connect::describe(&config);
    match run(cli, config).await {
        Ok(code) => code,
        // Wrong password, unknown database, TLS refused…: said once, exit status 2.
        Err(error) => match connect::fatal_in(&error) {
            Some(advice) => {
                tracing::error!(%warehouse, "{advice}");
                ExitCode::from(2)
            }
            None => {
                tracing::error!("{error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { drain, source } => {
            let mut config = config;
            if let Some(source) = source {
                config.sources = vec![match source {
                    SourceArg::Inbox => SourceConfig::Inbox {},
                    SourceArg::Jetstream => SourceConfig::Jetstream {},
                }];
            }
            run_pipeline(config, drain, Sink::Warehouse).await
        }
        Command::Forward { drain } => {
            let mut config = config;
            config.sources = vec![SourceConfig::Inbox {}];
            run_pipeline(config, drain, Sink::Broker).await
        }
        Command::Pull { source, from, to } => {
            let mut config = config;
            let Some(mut api) = config.sources.iter().find_map(|s| match s {
                SourceConfig::Http(api) if api.name == source => Some(api.clone()),
                _ => None,
            }) else {
                let names: Vec<&str> = config
                    .sources
                    .iter()
                    .filter_map(|s| match s {
                        SourceConfig::Http(api) => Some(api.name.as_str()),
                        _ => None,
                    })
                    .collect();
                eprintln!(
                    "ERROR no http source is named {source:?} in [[sources]] (configured: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
                return Ok(ExitCode::from(2));
            };
            let window = match window(&from, to.as_deref()) {
                Ok(window) => window,
                Err(error) => {
                    eprintln!("ERROR {error}");
                    return Ok(ExitCode::from(2));
                }
            };
            api.window = Some(window);
            config.sources = vec![SourceConfig::Http(api)];
            run_pipeline(config, true, Sink::Warehouse).await
        }
        Command::DeadLetters { action } => dead_letters(config, action).await,
        Command::Migrate => {
            let catalog = Catalog::load(&config)?;
            let migrations = etl::load::migrate::read(&config.migrations_dir)
                .with_context(|| format!("cannot read {}", config.migrations_dir.display()))?;
            let warehouse = Warehouse::open(Target::from_config(&config)?, 1)?;
            let stop = CancellationToken::new();
            tokio::spawn(on_signal(stop.clone()));
            let prepared = etl::startup::prepare_warehouse(
                &warehouse,
                &migrations,
                &catalog,
                &config,
                config.startup_wait,
                &stop,
            )
            .await?;
            let Some(applied) = prepared else {
                tracing::warn!("interrupted while waiting for the warehouse: nothing was applied");
                return Ok(ExitCode::FAILURE);
            };
            tracing::info!(?applied, "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files } => {
            let catalog = Catalog::load(&config)?;
            let mut all_valid = true;
            for file in &files {
                match etl::check::check_file(file, &catalog, &config) {
                    Ok(()) => println!("ok       {}", etl::names::encode_path(file)),
                    Err(reason) => {
                        all_valid = false;
                        println!("invalid  {}: {reason}", etl::names::encode_path(file));
                    }
                }
            }
            Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay { kind, reason } => {
            let catalog = Catalog::load(&config)?;
            if let Some(name) = kind.as_deref().filter(|name| catalog.get(name).is_none()) {
                eprintln!(
                    "ERROR --type {name}: no such event type (declared: {})",
                    catalog.names()
                );
                return Ok(ExitCode::from(2));
            }
            let filter = ReplayFilter { kind, reason };
            let moved =
                etl::ops::replay::replay(&config, &catalog, &filter).context("replay failed")?;
            println!("moved {moved} failed file(s) back into the inbox");
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            format: _,
            to,
            kind,
            since,
        } => export(config, &to, kind.as_deref(), since.as_deref()).await,
        Command::Serve { listen } => {
            let stop = CancellationToken::new();
            tokio::spawn(on_signal(stop.clone()));
            match etl::serve::run(&config, listen, stop).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(etl::serve::ServeError::Refused(reason)) => {
                    eprintln!("ERROR {reason}");
                    Ok(ExitCode::from(2))
                }
                // The database's own errors as such, so a wrong password gets its advice.
                Err(etl::serve::ServeError::Db(error)) => Err(error.into()),
                Err(error) => Err(error.into()),
            }
        }
        Command::Status => {
            let catalog = Catalog::load(&config)?;
            let (report, warehouse) = etl::ops::status::report(&config, &catalog).await;
            print!("{report}");
            match warehouse {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(error) if connect::fatal_at_startup(&error).is_some() => Err(error.into()),
                Err(error) => {
                    tracing::error!("the warehouse cannot be read: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `etl run` and `etl forward`: the pipeline until a signal (or drained), then its summary.
async fn run_pipeline(config: Config, drain: bool, sink: Sink) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    let mode = if drain { Mode::Drain } else { Mode::Follow };
    let summary = pipeline::run_to(config, mode, shutdown, sink).await?;
    let s = summary.stats;
    let secs = summary.elapsed.as_secs_f64();
    tracing::info!(
        applied = s.applied,
        stale = s.stale,
        failed = s.rejected,
        done = s.done,
        db_errors = s.db_errors,
        elapsed_s = format!("{secs:.2}"),
        rate = format!("{:.0}/s", s.finished() as f64 / secs.max(1e-9)),
        graceful = summary.graceful,
        "finished"
    );
    if summary.stuck > 0 {
        tracing::error!(
            records = summary.stuck,
            "some records could not be finished (see the ERROR lines above); their sources still hold them (files stay in the inbox, an API pull resumes from its stored position)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The window `etl pull --from --to` names.
fn window(from: &str, to: Option<&str>) -> Result<Window, String> {
    let from = parse_instant(from).map_err(|e| format!("--from: {e}"))?;
    let to = match to {
        Some(to) => parse_instant(to).map_err(|e| format!("--to: {e}"))?,
        None => now_in_seconds(),
    };
    if from >= to {
        return Err(format!(
            "the window is empty: --from {} is not before --to {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        ));
    }
    Ok(Window { from, to })
}

/// `etl export`: exit 0 once the files are in place, 2 for a request that would break the
/// lake's guarantees (an unknown type, a bad date, `--since` behind the folder's watermark).
async fn export(
    config: Config,
    to: &std::path::Path,
    kind: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::load(&config)?;
    if let Some(name) = kind.filter(|name| catalog.get(name).is_none()) {
        eprintln!(
            "ERROR --type {name}: no such event type (declared: {})",
            catalog.names()
        );
        return Ok(ExitCode::from(2));
    }
    let since = match since.map(parse_instant).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("ERROR --since: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    // Within --wait, before anything is written: a server that is down ends the command with
    // one line rather than a failure half-way through the lake folder.
    if !wait_for_warehouse(&config).await? {
        return Ok(ExitCode::FAILURE);
    }
    let exported = match etl::lake::export_once(&config, &catalog, to, kind, since).await {
        Ok(exported) => exported,
        Err(etl::lake::LakeError::Refused(reason)) => {
            eprintln!("ERROR {reason}");
            return Ok(ExitCode::from(2));
        }
        // The database's own errors as such, so a wrong password gets its one-line advice.
        Err(etl::lake::LakeError::Db(error)) => return Err(error.into()),
        Err(etl::lake::LakeError::Postgres(error)) => return Err(error.into()),
        Err(error) => return Err(error.into()),
    };
    for s in &exported.snapshots {
        println!(
            "{:<12} {:>10} rows  {}",
            s.type_name,
            s.rows,
            s.path.display()
        );
    }
    if let Some(raw) = &exported.raw {
        println!(
            "{:<12} {:>10} rows  in {} new file(s) under {} (the lake holds every raw event ingested before {})",
            "events",
            raw.rows,
            raw.files.len(),
            to.join("events").display(),
            raw.through.to_rfc3339()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits (within `--wait`) for the warehouse to accept a connection; false if a signal came
/// first.
async fn wait_for_warehouse(config: &Config) -> anyhow::Result<bool> {
    let stop = CancellationToken::new();
    tokio::spawn(on_signal(stop.clone()));
    let answered = etl::startup::warehouse_answers(config, config.startup_wait, &stop).await?;
    if !answered {
        tracing::warn!("interrupted while waiting for the warehouse: nothing was done");
    }
    Ok(answered)
}

/// `etl dead-letters list|replay`.
async fn dead_letters(config: Config, action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    if !wait_for_warehouse(&config).await? {
        return Ok(ExitCode::FAILURE);
    }
    let warehouse = Warehouse::open(Target::from_config(&config)?, 1)?;
    let kind = match &action {
        DeadLetterAction::List { kind, .. } | DeadLetterAction::Replay { kind, .. } => kind,
    };
    if let Some(name) = kind {
        // A declared type, or one the rows hold: messages of an undeclared type are
        // dead-lettered under the type their subject names, and must be listable by it.
        let catalog = Catalog::load(&config)?;
        let held = deadletter::types_held(&warehouse).await?;
        if catalog.get(name).is_none() && !held.contains(name) {
            let held = if held.is_empty() {
                "none".to_owned()
            } else {
                held.join(", ")
            };
            eprintln!(
                "ERROR --type {name}: no such event type (declared: {}; held by dead letters: {held})",
                catalog.names()
            );
            return Ok(ExitCode::from(2));
        }
    }
    match action {
        DeadLetterAction::List { kind, reason } => {
            let filter = deadletter::Filter {
                type_name: kind,
                reason,
                source: None,
            };
            let letters = deadletter::list(&warehouse, &filter).await?;
            // A header row, so the tab-separated columns can be read (and cut) by name.
            println!("id\trejected_at\tsource\ttype\tevent_id\tcode\treason");
            for l in &letters {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    l.id,
                    l.rejected_at,
                    l.source,
                    l.type_name.as_deref().unwrap_or("-"),
                    l.event_id.as_deref().unwrap_or("-"),
                    l.code,
                    l.reason
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        DeadLetterAction::Replay { kind, reason } => {
            let filter = deadletter::Filter {
                type_name: kind,
                reason,
                source: None,
            };
            // The broker can only replay what it delivered: an HTTP source's dead letters are
            // replayed by asking the API again, so they are named here and left alone.
            let letters = deadletter::list(&warehouse, &filter).await?;
            let mut from_apis: std::collections::BTreeMap<&str, usize> = Default::default();
            for letter in letters.iter().filter(|l| l.source == "http") {
                *from_apis.entry(letter.subject.as_str()).or_default() += 1;
            }
            for (source, count) in &from_apis {
                println!(
                    "{count} dead letter(s) of the http source {source} are not replayed through the broker: \
                     fix the cause, then pull their window again (etl pull {source} --from DATE --to DATE), \
                     which asks the API for the same items"
                );
            }
            if !letters.iter().any(|l| l.source == "jetstream") {
                // Nothing for the broker: no reason to reach it (it may not even exist here).
                println!(
                    "replayed 0 dead letter(s) into the stream (none from the broker matches)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            let stop = CancellationToken::new();
            tokio::spawn(on_signal(stop.clone()));
            let Some(client) = etl::broker::connect(&config, config.startup_wait, &stop).await?
            else {
                tracing::warn!("interrupted while waiting for the broker: nothing was replayed");
                return Ok(ExitCode::FAILURE);
            };
            let js = async_nats::jetstream::new(client);
            let replayed = deadletter::replay(&warehouse, &js, &config, &filter).await?;
            println!("replayed {replayed} dead letter(s) into the stream");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fires `shutdown` on the first SIGINT or SIGTERM.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing what is in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing what is in flight"),
    }
    shutdown.cancel();
}
