//! `cards`: writes cycles of card events into `<events-dir>/cards/` until SIGINT/SIGTERM.

use clap::Parser;
use services::service::{self, cards::CardsConfig, Shutdown};

fn main() -> anyhow::Result<()> {
    let config = CardsConfig::parse();
    service::init_logging();
    service::cards::run(&config, &Shutdown::install()?)
}
