//! `--instructions`: the instructions the daemon spends per event file on a drain, counted by
//! callgrind (valgrind), for a backlog where every file is valid and one where half are not.
//!
//! A count does not depend on the machine's load, unlike events/s, so two builds compare exactly
//! on a busy machine (within the ±3 % that batching and start-up timing move it). The backlog is
//! the one `bench/instructions.sh` drains: `loadgen --users 100 --card-events 9900 --seed 5`,
//! with its owner-less cards given an owner so that none is refused; the second backlog then
//! spoils every other file, in turn by a missing required field, broken JSON, a wrong type and
//! the wrong folder's `metadata.type`. One worker and one reader, as the script.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::etl::Etl;

/// One counted drain.
#[derive(Debug, Serialize)]
pub struct Count {
    /// Share of the backlog's files that are invalid.
    pub invalid_share: f64,
    pub files: usize,
    pub rejected: usize,
    /// The etl process's instructions, start-up included.
    pub instructions: u64,
}

impl Count {
    pub fn per_file(&self) -> u64 {
        self.instructions / self.files.max(1) as u64
    }
}

/// The backlog's event files, in name order.
fn files(inbox: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for folder in ["users", "cards"] {
        let dir = inbox.join(folder);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            out.push(entry?.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Makes every file of `inbox` valid (an owner for the producers' owner-less cards), then, when
/// `spoil`, every other one invalid. Returns how many were spoiled.
pub fn prepare(inbox: &Path, spoil: bool) -> anyhow::Result<usize> {
    let mut spoiled = 0;
    for (i, path) in files(inbox)?.iter().enumerate() {
        let text = std::fs::read(path)?;
        let mut event: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let is_card = event["metadata"]["type"] == "card";
        if is_card && event["payload"]["user_id"].is_null() {
            event["payload"]["user_id"] = Value::from(1);
        }
        let mut bytes = serde_json::to_vec_pretty(&event)?;
        if spoil && i % 2 == 1 {
            spoiled += 1;
            match (i / 2) % 4 {
                0 => {
                    let field = if is_card { "user_id" } else { "name" };
                    if let Some(payload) = event["payload"].as_object_mut() {
                        payload.remove(field);
                    }
                    bytes = serde_json::to_vec_pretty(&event)?;
                }
                1 => {
                    // Broken in the middle, not cut short (a short file may still be being written).
                    if let Some(colon) = bytes.iter().position(|b| *b == b':') {
                        bytes[colon] = b';';
                    }
                }
                2 => {
                    event["payload"]["id"] = Value::from("x");
                    bytes = serde_json::to_vec_pretty(&event)?;
                }
                _ => {
                    event["metadata"]["type"] = Value::from("other");
                    bytes = serde_json::to_vec_pretty(&event)?;
                }
            }
        }
        std::fs::write(path, bytes)?;
    }
    Ok(spoiled)
}

/// Files under `dir`, at any depth, that are events (not their `.error.json` reason files).
fn event_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                event_files(&path)
            } else {
                let name = e.file_name().to_string_lossy().into_owned();
                usize::from(name.ends_with(".json") && !name.ends_with(".error.json"))
            }
        })
        .sum()
}

/// Drains `events` (`inbox/` prepared, `spoiled` of them invalid) under callgrind and checks
/// where every file went.
pub fn count(etl: &Etl, events: &Path, spoiled: usize) -> anyhow::Result<Count> {
    let files = files(&events.join("inbox"))?.len();
    let out = events.with_file_name("callgrind.out");
    let status = etl
        .command_via(
            "valgrind",
            &[
                "--tool=callgrind",
                &format!("--callgrind-out-file={}", out.display()),
            ],
            &["run", "--drain"],
        )?
        .env("ETL_WORKERS", "1")
        .env("ETL_READERS", "1")
        .env("ETL_SETTLE_MS", "0")
        .status()
        .context("cannot run valgrind (apt-get install valgrind)")?;
    if !status.success() {
        bail!(
            "etl run --drain under callgrind failed:\n{}",
            etl.log_tail()
        );
    }
    let (done, failed) = (
        event_files(&events.join("done")),
        event_files(&events.join("failed")),
    );
    if done + failed != files || failed != spoiled {
        bail!("the counted drain moved {done} files to done/ and {failed} to failed/, for {files} files of which {spoiled} invalid:\n{}", etl.log_tail());
    }
    let profile = std::fs::read_to_string(&out)
        .with_context(|| format!("no callgrind output at {}", out.display()))?;
    // Kept for `callgrind_annotate` (the scratch folder goes at the end).
    let kept = std::env::temp_dir().join(format!(
        "etl-bench-callgrind-{}.out",
        if spoiled == 0 {
            "valid"
        } else {
            "half-invalid"
        }
    ));
    if std::fs::copy(&out, &kept).is_ok() {
        eprintln!("bench: callgrind's profile is in {}", kept.display());
    }
    let instructions = profile
        .lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .context("callgrind's output has no summary line")?;
    Ok(Count {
        invalid_share: spoiled as f64 / files as f64,
        files,
        rejected: failed,
        instructions,
    })
}

/// The two counts as the report prints them.
pub fn table(counts: &[Count]) -> String {
    let mut out = String::from("instructions per event file (callgrind, etl process, start-up included; 1 worker, 1 reader)\n");
    for c in counts {
        out.push_str(&format!(
            "  {:>3.0} % invalid: {:>7} per file ({} files, {} rejected, {} in all)\n",
            c.invalid_share * 100.0,
            c.per_file(),
            c.files,
            c.rejected,
            c.instructions
        ));
    }
    out
}
