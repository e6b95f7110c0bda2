//! `etl check FILE…`: files validated offline, one `ok` or `invalid` line each on stdout.

use std::path::PathBuf;

use super::{CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::Config;

/// `Failed` if any file is invalid.
pub fn check(config: &Config, files: &[PathBuf]) -> Result<Outcome, CommandError> {
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
