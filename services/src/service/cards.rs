//! The cards service: every 1–3 s (by default) a cycle of 5–10 card events stamped with the wall
//! clock, until SIGINT/SIGTERM or `--max-events`.
//!
//! Card ids continue across restarts through the counter in `--state-dir` (see
//! [`crate::id_counter`]). The card cache does not survive a restart: modifications then only target
//! cards created by the new run, so a restarted service starts with new cards only. That is
//! acceptable because the reader must cope with any order and mix of events anyway.
//!
//! With `--transactions-per-cycle N` each cycle also writes N transaction events (the transactions
//! example) into `<events-dir>/transactions/`, using the card ids handed out so far. Their ids come
//! from an in-memory counter that starts at 0 in every run, so unlike card ids they are reused
//! after a restart: fine for a demonstration, not for a loader that must keep transactions apart
//! across producer restarts.

use super::{resolve_seed, wall_clock_now, Shutdown};
use crate::event::{CardEvent, TransactionEvent};
use crate::generate::{CardGenerator, TransactionGenerator};
use crate::id_counter::IdCounter;
use crate::writer::{EventWriter, WriteMode};
use clap::Parser;
use rand::RngExt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tracing::{debug, info};

/// Writes cycles of card events into `<events-dir>/cards/` (and, optionally, transaction events
/// into `<events-dir>/transactions/`) until SIGINT/SIGTERM.
#[derive(Debug, Clone, Parser)]
#[command(name = "cards")]
pub struct CardsConfig {
    /// The inbox directory (`data/events/inbox`); files go to its `cards/` sub-directory.
    #[arg(long)]
    pub events_dir: PathBuf,
    /// Seed of the fake data, the mix and the event ids (random, and logged, if omitted).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write files in place, like the reference producer, instead of atomically.
    #[arg(long)]
    pub in_place: bool,
    /// Where the card id counter is kept (outside the inbox).
    #[arg(long, default_value = "data/state")]
    pub state_dir: PathBuf,
    /// Pause between cycles, drawn uniformly from MIN-MAX milliseconds.
    #[arg(long, default_value = "1000-3000")]
    pub cycle_ms: CycleMs,
    /// Stop after this many card events (runs until SIGINT/SIGTERM if omitted); transaction
    /// events come on top.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Also write this many transaction events per cycle into `<events-dir>/transactions/`.
    #[arg(long, default_value_t = 0)]
    pub transactions_per_cycle: u64,
}

/// `MIN-MAX` milliseconds, `MIN <= MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleMs(pub RangeInclusive<u64>);

#[derive(Debug, thiserror::Error)]
#[error("expected MIN-MAX milliseconds with MIN <= MAX, got {0:?}")]
pub struct CycleMsError(String);

impl FromStr for CycleMs {
    type Err = CycleMsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CycleMsError(text.to_owned());
        let (min, max) = text.split_once('-').ok_or_else(error)?;
        let min: u64 = min.trim().parse().map_err(|_| error())?;
        let max: u64 = max.trim().parse().map_err(|_| error())?;
        if min > max {
            return Err(error());
        }
        Ok(Self(min..=max))
    }
}

/// Runs the service until `--max-events` or `shutdown`.
pub fn run(config: &CardsConfig, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mode = if config.in_place {
        WriteMode::InPlace
    } else {
        WriteMode::Atomic
    };
    let writer = EventWriter::new(&config.events_dir, mode);
    let mut counter = IdCounter::open(&config.state_dir)?;
    let seed = resolve_seed(config.seed);
    let mut generator = CardGenerator::new(seed, counter.next());
    info!(
        first_card_id = counter.next(),
        dir = %writer.dir_for::<CardEvent>().display(),
        "writing card events"
    );
    // Only built when asked for, so the default run is exactly what it was. Its rng is a stream of
    // its own (salted with the first card id, like the cards'), so the card events are unchanged.
    let mut transactions = (config.transactions_per_cycle > 0).then(|| {
        info!(
            per_cycle = config.transactions_per_cycle,
            dir = %writer.dir_for::<TransactionEvent>().display(),
            "writing transaction events"
        );
        TransactionGenerator::new(seed, counter.next())
    });
    let max_events = config.max_events.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut transactions_written = 0u64;

    loop {
        let cycle = generator.cycle_len() as u64;
        for _ in 0..cycle.min(max_events - written) {
            let (change, event) = generator.next_event(wall_clock_now());
            // Persist the counter before the file appears: an id a reader has seen must never be
            // handed out again, even if the process dies right after this write.
            counter.store(generator.next_id())?;
            writer.write(&event)?;
            written += 1;
            debug!(card = event.payload.id, ?change, "card event");
        }
        if let Some(transactions) = transactions.as_mut() {
            for _ in 0..config.transactions_per_cycle {
                // Every id below the counter was handed out (by this run or an earlier one), and
                // the counter was stored before any of those cards' files appeared.
                let (change, event) =
                    transactions.next_event(wall_clock_now(), 0..generator.next_id());
                writer.write(&event)?;
                transactions_written += 1;
                debug!(transaction = event.payload.id, ?change, "transaction event");
            }
        }
        if written >= max_events {
            break;
        }
        // Timing is not part of the reproducible output (the clock is real), so the pause comes
        // from the thread rng and leaves the seeded stream alone.
        let pause = rand::rng().random_range(config.cycle_ms.0.clone());
        if shutdown.sleep(Duration::from_millis(pause)) {
            break;
        }
    }

    info!(
        written,
        transactions_written,
        next_card_id = generator.next_id(),
        "stopping"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_ms_parses_ranges_and_rejects_nonsense() {
        assert_eq!(
            "1000-3000".parse::<CycleMs>().ok(),
            Some(CycleMs(1000..=3000))
        );
        assert_eq!("0-0".parse::<CycleMs>().ok(), Some(CycleMs(0..=0)));
        for bad in ["3000-1000", "1000", "a-b", "-5", ""] {
            assert!(bad.parse::<CycleMs>().is_err(), "{bad:?}");
        }
    }
}
