//! `etl status`: file counts per folder, rows per table and the daemon's in-flight count on
//! stdout; exit 1 if the warehouse cannot be read.

use super::{CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::load::connect;

/// Prints the report, whatever of it could be gathered.
pub async fn status(config: &Config) -> Result<Outcome, CommandError> {
    let catalog = Catalog::load(config)?;
    let (report, warehouse) = crate::ops::status::report(config, &catalog).await;
    print!("{report}");
    match warehouse {
        Ok(()) => Ok(Outcome::Done),
        Err(error) if connect::fatal_at_startup(&error).is_some() => Err(error.into()),
        Err(error) => {
            tracing::error!("the warehouse cannot be read: {error}");
            Ok(Outcome::Failed)
        }
    }
}
