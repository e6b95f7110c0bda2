//! `loadgen`: writes a reproducible backlog of user and card events and prints a one-line summary.

use clap::Parser;
use std::path::PathBuf;

/// Writes `<out>/users/*.json` and `<out>/cards/*.json` with the producers' mix and a simulated clock.
#[derive(Debug, Parser)]
struct Cli {
    /// Number of user events (user ids 0..N).
    #[arg(long)]
    users: usize,
    /// Number of card events.
    #[arg(long)]
    card_events: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long)]
    seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = services::generate_backlog(&cli.out, cli.users, cli.card_events, cli.seed)?;
    println!("{}: {summary}", cli.out.display());
    Ok(())
}
