//! The configuration reference (docs/src/reference/configuration.md) is the doc comments of the
//! configuration's structs: this test regenerates its tables and fails when the page differs,
//! and loads every documented key, under each of its names, from a file and from the
//! environment, so the page never lists a key that does not work.

// figment's Jail (which serialises the tests that set variables) fixes its closures' error type.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use etl_core::config::reference::{self, BEGIN, END};
use etl_core::config::sections::{env_var, flat_alias};
use etl_core::config::{Config, ConfigError};
use figment::Jail;
use serde_json::Value;

fn page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(PathBuf::new, Path::to_path_buf)
        .join("docs/src/reference/configuration.md")
}

#[test]
fn config_reference_is_the_doc_comments() {
    // Inside the jail's lock: the other tests clear the environment (UPDATE_DOCS included)
    // while they hold it.
    let mut update = false;
    Jail::expect_with(|_| {
        update = std::env::var_os("UPDATE_DOCS").is_some();
        Ok(())
    });
    let path = page();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let Some(fresh) = reference::refreshed(&text) else {
        panic!(
            "{} has lost its markers: the generated tables sit between the lines\n{BEGIN}\n{END}",
            path.display()
        );
    };
    if update {
        std::fs::write(&path, &fresh)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    if fresh != text {
        let first = fresh
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(fresh.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the configuration's doc comments (first at line {}):\n  page: {}\n  code: {}\n\
             Refresh it with: UPDATE_DOCS=1 cargo test -p etl-core --test config_reference",
            path.display(),
            first + 1,
            text.lines().nth(first).unwrap_or("(end of page)"),
            fresh.lines().nth(first).unwrap_or("(end of page)"),
        );
    }
}

#[test]
fn every_setting_has_a_doc_comment() {
    for (section, key, doc) in reference::settings() {
        assert!(
            !doc.is_empty(),
            "{} has no doc comment: the reference would say nothing about it",
            section.map_or(key.clone(), |s| format!("[{s}] {key}"))
        );
    }
}

/// A value for `key` that differs from its default and passes the checks.
fn other_value(default: &Value) -> Value {
    match default {
        Value::Number(n) => Value::from(n.as_i64().unwrap_or(1) + 1),
        Value::String(s) => Value::from(format!("{s}x")),
        _ => Value::from("/tmp/etl-config-reference"),
    }
}

fn toml_value(value: &Value) -> toml::Value {
    match value {
        Value::Number(n) => toml::Value::Integer(n.as_i64().unwrap_or(1)),
        Value::String(s) => toml::Value::String(s.clone()),
        other => panic!("no TOML value for {other}"),
    }
}

/// Every documented setting: (section, key, the value to give, the JSON path of its field).
fn documented() -> Vec<(Option<&'static str>, String, Value)> {
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialize");
    reference::settings()
        .into_iter()
        .map(|(section, key, _)| {
            let default = match section {
                Some(s) => &defaults[s][&key],
                None => &defaults[&key],
            };
            (section, key.clone(), other_value(default))
        })
        .collect()
}

fn loaded_value(config: &Config, section: Option<&str>, key: &str) -> Value {
    let shown = serde_json::to_value(config).expect("serializes");
    match section {
        Some(s) => shown[s][key].clone(),
        None => shown[key].clone(),
    }
}

/// Raw retention needs the lake export: the one setting that cannot be given alone.
fn companion(section: Option<&str>, key: &str) -> Option<(&'static str, &'static str)> {
    (section == Some("lake") && key == "raw_retention_days")
        .then_some(("lake_export_interval_secs", "ETL_LAKE_EXPORT_INTERVAL_SECS"))
}

#[test]
fn every_documented_key_loads_under_each_of_its_names() {
    let settings = documented();
    assert!(
        settings.len() > 40,
        "only {} settings documented",
        settings.len()
    );
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (section, key, value) in &settings {
            let mut names: Vec<(String, String)> = Vec::new();
            let line = |name: &str| format!("{name} = {}\n", toml_value(value));
            let companion = companion(*section, key);
            let extra = companion.map_or(String::new(), |(flat, _)| format!("{flat} = 60\n"));
            match section {
                Some(s) => {
                    names.push((
                        format!("[{s}] {key}"),
                        format!("{extra}[{s}]\n{}", line(key)),
                    ));
                    if let Some(flat) = flat_alias(s, key) {
                        names.push((flat.to_owned(), format!("{extra}{}", line(flat))));
                    }
                }
                None => names.push((key.clone(), format!("{extra}{}", line(key)))),
            }
            for (name, text) in names {
                jail.create_file("etl.toml", &text)?;
                let config = Config::load(Path::new("etl.toml"))
                    .map_err(|e| format!("{name} does not load: {}", e.lines().join("; ")))?;
                assert_eq!(
                    &loaded_value(&config, *section, key),
                    value,
                    "{name} in etl.toml"
                );
            }
            jail.create_file("etl.toml", "")?;
            let mut vars = vec![env_var(*section, key)];
            if let Some(flat) = section.and_then(|s| flat_alias(s, key)) {
                vars.push(env_var(None, flat));
            }
            for var in vars {
                jail.clear_env();
                if let Some((_, companion_var)) = companion {
                    jail.set_env(companion_var, 60);
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                jail.set_env(&var, &text);
                let config = Config::load(Path::new("etl.toml"))
                    .map_err(|e| format!("{var} does not load: {}", e.lines().join("; ")))?;
                assert_eq!(&loaded_value(&config, *section, key), value, "{var}");
            }
        }
        Ok(())
    });
}

#[test]
fn both_names_of_one_variable_are_refused() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("ETL_NATS_URL", "nats://a:1");
        jail.set_env("ETL_BROKER__URL", "nats://b:1");
        let error = Config::load(Path::new("etl.toml")).expect_err("two names of one setting");
        assert!(matches!(error, ConfigError::BothNames { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "ETL_BROKER__URL and ETL_NATS_URL are the same setting: keep one (ETL_BROKER__URL is \
             its name, ETL_NATS_URL an alias kept for older files)"
        );
        // The file and the environment may each name it: the environment wins, as always.
        jail.clear_env();
        jail.create_file("etl.toml", "[broker]\nurl = \"nats://file:1\"\n")?;
        jail.set_env("ETL_NATS_URL", "nats://env:1");
        let config = Config::load(Path::new("etl.toml")).expect("valid");
        assert_eq!(config.broker.url, "nats://env:1");
        Ok(())
    });
}

#[test]
fn a_misspelt_variable_in_a_section_is_named_with_the_nearest_one() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("ETL_BROKER__ACK_WAIT_SEC", "60");
        let error = Config::load(Path::new("etl.toml")).expect_err("unknown variable");
        assert_eq!(
            error.lines(),
            [
                "unknown environment variable ETL_BROKER__ACK_WAIT_SEC: did you mean \
              ETL_BROKER__ACK_WAIT_SECS? (every ETL_* variable must be a setting, so that a \
              misspelt one is not silently ignored)"
            ]
        );
        jail.clear_env();
        jail.set_env("ETL_BROKER__FETCH_BATCH", "0");
        let error = Config::load(Path::new("etl.toml")).expect_err("a zero");
        assert!(
            error
                .to_string()
                .starts_with("ETL_BROKER__FETCH_BATCH is 0"),
            "{error}"
        );
        Ok(())
    });
}
