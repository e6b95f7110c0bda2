//! The two inputs (`etl.toml` and the `ETL_*` variables) brought to one shape before they are
//! merged: every flat alias (`database_url`, `ETL_NATS_URL`) moved into its section, a
//! setting given under both its names refused, and the place each setting was given noted, so
//! that a later message names the setting as the user wrote it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::error::ConfigError;
use super::sections::{env_var, sectioned, FLAT_ALIASES, SECTIONS};

/// Which input a dictionary came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Input<'a> {
    File(&'a Path),
    Env,
}

/// Where a setting was given, in the user's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// In the file, at its top level (`section` is `None`) or in a `[section]` table.
    File {
        file: PathBuf,
        section: Option<String>,
        key: String,
    },
    /// An environment variable.
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                file,
                section: None,
                key,
            } => write!(f, "`{key}` at the top level of {}", file.display()),
            Origin::File {
                file,
                section: Some(section),
                key,
            } => write!(f, "`{key}` in [{section}] of {}", file.display()),
            Origin::Env { var } => f.write_str(var),
        }
    }
}

fn origin(input: Input<'_>, section: Option<&str>, key: &str) -> Origin {
    match input {
        Input::File(file) => Origin::File {
            file: file.to_path_buf(),
            section: section.map(str::to_owned),
            key: key.to_owned(),
        },
        Input::Env => Origin::Env {
            var: env_var(section, key),
        },
    }
}

/// Where each given setting came from, by its path (`workers`, `database.url`); a later input
/// (the environment) replaces an earlier one's entry, as its value does.
#[derive(Clone, Debug, Default)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    /// The place `path` was given, if it was.
    pub fn get(&self, path: &str) -> Option<&Origin> {
        self.0.get(path)
    }

    /// The setting at `path` as the user wrote it (`url` in [database] of etl.toml,
    /// `ETL_NATS_URL`), or by its documented name when it was not given (its default).
    pub fn describe(&self, path: &str) -> String {
        match self.get(path) {
            Some(origin) => origin.to_string(),
            None => match path.split_once('.') {
                Some((section, key)) => format!("`{key}` in [{section}] (its default)"),
                None => format!("`{path}` (its default)"),
            },
        }
    }
}

/// Moves the flat aliases of `dict` into their sections and notes where each setting came from.
pub(crate) fn to_sections(
    dict: &mut Dict,
    input: Input<'_>,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    for &section in SECTIONS {
        match dict.get(section) {
            None => {}
            Some(Value::Dict(_, table)) => {
                for key in table.keys() {
                    origins.0.insert(
                        format!("{section}.{key}"),
                        origin(input, Some(section), key),
                    );
                }
            }
            Some(_) => {
                return Err(ConfigError::NotATable {
                    section: section.to_owned(),
                    place: origin(input, None, section).to_string(),
                })
            }
        }
    }
    for &(flat, section, key) in FLAT_ALIASES {
        let Some(value) = dict.remove(flat) else {
            continue;
        };
        let alias = origin(input, None, flat);
        let table = dict
            .entry(section.to_owned())
            .or_insert_with(|| Value::from(Dict::new()));
        let Value::Dict(_, table) = table else {
            // Refused above; said again rather than assumed.
            return Err(ConfigError::NotATable {
                section: section.to_owned(),
                place: origin(input, None, section).to_string(),
            });
        };
        if table.contains_key(key) {
            return Err(ConfigError::BothNames {
                sectioned: origin(input, Some(section), key).to_string(),
                flat: alias.to_string(),
            });
        }
        table.insert(key.to_owned(), value);
        origins.0.insert(format!("{section}.{key}"), alias);
    }
    for key in dict.keys() {
        if !SECTIONS.contains(&key.as_str()) && sectioned(key).is_none() {
            origins.0.insert(key.clone(), origin(input, None, key));
        }
    }
    Ok(())
}

/// An input already read and brought to sections, given to figment under the original
/// provider's name and source, so that figment's errors still say which file or variable.
pub(crate) struct Sectioned {
    metadata: Metadata,
    data: Map<Profile, Dict>,
}

impl Sectioned {
    /// `data`, read by the provider that `metadata` describes, brought to sections.
    pub(crate) fn new(
        metadata: Metadata,
        mut data: Map<Profile, Dict>,
        input: Input<'_>,
        origins: &mut Origins,
    ) -> Result<Sectioned, ConfigError> {
        for dict in data.values_mut() {
            to_sections(dict, input, origins)?;
        }
        Ok(Sectioned { metadata, data })
    }
}

impl Provider for Sectioned {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Ok(self.data.clone())
    }
}
