//! The users service: announces users `0..count` once each, then idles like the reference producer
//! (which stays up until it is stopped).

use super::{resolve_seed, wall_clock_now, Shutdown};
use crate::event::UserEvent;
use crate::generate::UserGenerator;
use crate::writer::{EventWriter, WriteMode};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

/// Writes one event per user into `<events-dir>/users/`, then idles until SIGINT/SIGTERM.
#[derive(Debug, Clone, Parser)]
#[command(name = "users")]
pub struct UsersConfig {
    /// The inbox directory (`data/events/inbox`); files go to its `users/` sub-directory.
    #[arg(long)]
    pub events_dir: PathBuf,
    /// Seed of the fake data and event ids (random, and logged, if omitted).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of users: ids `0..count`.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Write files in place, like the reference producer, instead of atomically.
    #[arg(long)]
    pub in_place: bool,
    /// Exit after writing instead of idling.
    #[arg(long)]
    pub once: bool,
    /// Events per second (as fast as possible if omitted).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of events per second"
        )),
    }
}

/// Runs the service until done (`--once`) or until `shutdown`.
pub fn run(config: &UsersConfig, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mode = if config.in_place {
        WriteMode::InPlace
    } else {
        WriteMode::Atomic
    };
    let writer = EventWriter::new(&config.events_dir, mode);
    let mut generator = UserGenerator::new(resolve_seed(config.seed));
    let pause = config.rate.map(|rate| Duration::from_secs_f64(1.0 / rate));

    for id in 0..config.count {
        if shutdown.is_requested() {
            info!(written = id, "stopped before all users were written");
            return Ok(());
        }
        writer.write(&generator.event(id, wall_clock_now()))?;
        if let Some(pause) = pause {
            shutdown.sleep(pause);
        }
    }
    info!(
        count = config.count,
        dir = %writer.dir_for::<UserEvent>().display(),
        "all user events written"
    );

    if !config.once {
        info!("idling until SIGINT/SIGTERM");
        shutdown.wait();
        info!("stopping");
    }
    Ok(())
}
