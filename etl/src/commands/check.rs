//! `etl check [--types-dir DIR] [--schemas-dir DIR] FILE…`: files validated offline, one `ok`
//! or `invalid` line each on stdout; the folders let samples be checked against a draft of
//! `etl infer` before it is installed.

use std::path::PathBuf;

use super::{CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::Config;

/// `Failed` if any file is invalid.
pub fn check(
    mut config: Config,
    files: &[PathBuf],
    types_dir: Option<PathBuf>,
    schemas_dir: Option<PathBuf>,
) -> Result<Outcome, CommandError> {
    if let Some(dir) = types_dir {
        config.types_dir = dir;
    }
    if let Some(dir) = schemas_dir {
        config.schemas_dir = dir;
    }
    let config = &config;
    let catalog = Catalog::load(config)?;
    let mut all_valid = true;
    for file in files {
        match crate::check::check_file(file, &catalog, config) {
            Ok(()) => println!("ok       {}", crate::names::encode_path(file)),
            Err(reason) => {
                all_valid = false;
                println!("invalid  {}: {reason}", crate::names::encode_path(file));
            }
        }
    }
    Ok(if all_valid {
        Outcome::Done
    } else {
        Outcome::Failed
    })
}
