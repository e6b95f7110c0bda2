//! `loadgen`: writes a reproducible backlog of user, card and (optionally) transaction events and
//! prints a one-line summary.

use clap::Parser;
use services::BacklogSpec;
use std::path::PathBuf;

/// Writes `<out>/users/*.json` and `<out>/cards/*.json` (and `<out>/transactions/*.json` with
/// `--transaction-events`) with the producers' mix and a simulated clock.
#[derive(Debug, Parser)]
struct Cli {
    /// Number of user events (user ids 0..N).
    #[arg(long)]
    users: usize,
    /// Number of card events.
    #[arg(long)]
    card_events: usize,
    /// Number of transaction events (the transactions example); 0 leaves the output as it was.
    #[arg(long, default_value_t = 0)]
    transaction_events: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = services::generate_backlog_with(
        &cli.out,
        &BacklogSpec {
            users: cli.users,
            card_events: cli.card_events,
            transaction_events: cli.transaction_events,
            seed: cli.seed,
        },
    )?;
    println!("{}: {summary}", cli.out.display());
    Ok(())
}
