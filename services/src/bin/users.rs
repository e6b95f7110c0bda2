//! `users`: writes the user events into `<events-dir>/users/`, then idles until SIGINT/SIGTERM.

use clap::Parser;
use services::service::{self, users::UsersConfig, Shutdown};

fn main() -> anyhow::Result<()> {
    let config = UsersConfig::parse();
    service::init_logging();
    service::users::run(&config, &Shutdown::install()?)
}
