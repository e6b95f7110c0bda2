//! `etl replay [--type T] [--reason R]`: failed files moved back into the inbox.

use super::{no_such_type, CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::ops::replay::Filter;

/// Moves the matching failed files back and says how many.
pub fn replay(
    config: &Config,
    kind: Option<String>,
    reason: Option<String>,
) -> Result<Outcome, CommandError> {
    let catalog = Catalog::load(config)?;
    if let Some(name) = kind.as_deref().filter(|name| catalog.get(name).is_none()) {
        return Err(no_such_type(name, &catalog));
    }
    let filter = Filter { kind, reason };
    let moved = crate::ops::replay::replay(config, &catalog, &filter).map_err(|source| {
        CommandError::Io {
            context: "replay failed".to_owned(),
            source,
        }
    })?;
    println!("moved {moved} failed file(s) back into the inbox");
    Ok(Outcome::Done)
}
