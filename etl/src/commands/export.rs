//! `etl export --to DIR [--type T] [--since DATE]`: the warehouse exported to a Parquet lake,
//! one line per table written on stdout; exit 2 for a request that would break the lake's
//! guarantees (an unknown type, a bad date, `--since` behind the folder's watermark).

use std::path::Path;

use super::{no_such_type, wait_for_warehouse, CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::http::parse_instant;
use crate::config::Config;
use crate::lake::LakeError;

/// `Done` once the files are in place.
pub async fn export(
    config: &Config,
    to: &Path,
    kind: Option<&str>,
    since: Option<&str>,
) -> Result<Outcome, CommandError> {
    let catalog = Catalog::load(config)?;
    if let Some(name) = kind.filter(|name| catalog.get(name).is_none()) {
        return Err(no_such_type(name, &catalog));
    }
    let since = since
        .map(parse_instant)
        .transpose()
        .map_err(|error| CommandError::Refused(format!("--since: {error}")))?;
    // Within --wait, before anything is written: a server that is down ends the command with
    // one line rather than a failure half-way through the lake folder.
    if !wait_for_warehouse(config).await? {
        return Ok(Outcome::Failed);
    }
    let exported = match crate::lake::export_once(config, &catalog, to, kind, since).await {
        Ok(exported) => exported,
        Err(LakeError::Refused(reason)) => return Err(CommandError::Refused(reason)),
        // The database's own errors as such, so a wrong password gets its one-line advice.
        Err(LakeError::Db(error)) => return Err(CommandError::Db(error)),
        Err(LakeError::Postgres(error)) => return Err(CommandError::Postgres(error)),
        Err(error) => return Err(CommandError::Lake(error)),
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
    Ok(Outcome::Done)
}
