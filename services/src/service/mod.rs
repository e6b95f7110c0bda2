//! The long-running producer services behind the `users` and `cards` binaries: the generators
//! driven by the wall clock, writing into the live inbox, stopping on SIGINT/SIGTERM.

pub mod cards;
mod shutdown;
pub mod users;

pub use shutdown::Shutdown;

use chrono::{Local, NaiveDateTime, SubsecRound};
use tracing::info;

/// Local naive time truncated to the second: the reference producers' timestamp resolution.
pub fn wall_clock_now() -> NaiveDateTime {
    Local::now().naive_local().trunc_subsecs(0)
}

/// `--seed` if given, else a fresh one — logged either way so any run can be replayed.
fn resolve_seed(seed: Option<u64>) -> u64 {
    let seed = seed.unwrap_or_else(rand::random);
    info!(seed, "seeded");
    seed
}

/// Sets up logging to stderr (`RUST_LOG` overrides the default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: rerun.sh sends these logs to files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
