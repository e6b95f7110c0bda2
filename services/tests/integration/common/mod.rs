//! Helpers shared by the integration tests: reading event files back and describing their layout.

use services::{CardEvent, TransactionEvent, UserEvent};
use std::fs;
use std::path::{Path, PathBuf};

/// The reference producers' files, copied byte for byte into the etl crate's test fixtures.
pub fn reference_events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../etl/tests/fixtures/reference-events")
}

/// Every file name in `dir` (hidden ones included), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The `*.json` event files in `dir`, sorted by name.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    file_names(dir)
        .into_iter()
        .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
        .map(|name| dir.join(name))
        .collect()
}

pub fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

pub fn parse_user(path: &Path) -> UserEvent {
    serde_json::from_str(&read_text(path))
        .unwrap_or_else(|err| panic!("{} is no user event: {err}", path.display()))
}

pub fn parse_card(path: &Path) -> CardEvent {
    serde_json::from_str(&read_text(path))
        .unwrap_or_else(|err| panic!("{} is no card event: {err}", path.display()))
}

pub fn parse_transaction(path: &Path) -> TransactionEvent {
    serde_json::from_str(&read_text(path))
        .unwrap_or_else(|err| panic!("{} is no transaction event: {err}", path.display()))
}

/// Every file under `root/<kind>/` for each of `kinds` as (relative path, bytes), sorted; a
/// missing directory contributes nothing (the snapshots then differ from ones where it exists).
pub fn snapshot(root: &Path, kinds: &[&str]) -> Vec<(String, Vec<u8>)> {
    kinds
        .iter()
        .filter(|kind| root.join(kind).exists())
        .flat_map(|kind| {
            file_names(&root.join(kind)).into_iter().map(move |name| {
                (
                    format!("{kind}/{name}"),
                    fs::read(root.join(kind).join(&name)).expect("read"),
                )
            })
        })
        .collect()
}

/// The file's layout without its values: one entry per line, the indentation plus the key (or the
/// bare bracket). Two pretty-printed files with the same keys in the same order and nesting have
/// equal skeletons, whatever their values (string values are single-line: JSON escapes newlines).
pub fn skeleton(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            match body
                .strip_prefix('"')
                .and_then(|rest| rest.split_once("\":"))
            {
                Some((key, _value)) => format!("{indent}\"{key}\""),
                None => format!("{indent}{body}"),
            }
        })
        .collect()
}

/// Every path under `dir` whose file name starts with a dot.
pub fn dotfiles_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).expect("list directory") {
            let entry = entry.expect("directory entry");
            if entry.file_name().to_string_lossy().starts_with('.') {
                found.push(entry.path());
            }
            if entry.file_type().expect("file type").is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}
