//! The raw landing zone: every page an API source pulls, as received, one item per line, in
//! `<lake>/raw/<source>/<yyyy>/<mm>/<dd>/<HHMMSS.mmm>-<page>.ndjson`, written before any of
//! its events is applied (the raw bucket teams otherwise fill with a cron script).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// Writes the page's `items` and returns the file's path. The file appears whole or not at all
/// (written aside, synced, then renamed), so a reader never sees half a page.
pub fn land(
    root: &Path,
    source: &str,
    page: u64,
    items: &[String],
    now: DateTime<Utc>,
) -> std::io::Result<PathBuf> {
    let dir = root.join(source).join(now.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&dir)?;
    let stem = format!("{}-{page:05}", now.format("%H%M%S%.3f"));
    let mut path = dir.join(format!("{stem}.ndjson"));
    let mut n = 1;
    // Unique to this process and page, so that two writers never share a temporary file.
    let temporary = dir.join(format!(".{stem}.{}.ndjson.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    let mut text = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum());
    for item in items {
        // An item's text is JSON as the API wrote it, which may span lines (pretty-printed): a
        // line break there is whitespace between tokens (JSON strings cannot hold one), so a
        // space keeps the same document on one line.
        if item.contains('\n') {
            text.extend_from_slice(item.replace(['\n', '\r'], " ").as_bytes());
        } else {
            text.extend_from_slice(item.as_bytes());
        }
        text.push(b'\n');
    }
    file.write_all(&text)?;
    file.sync_all()?;
    // Two pulls of one source in the same millisecond (a backfill beside the schedule) must not
    // overwrite each other's page: a hard link fails if the name exists, where a rename would
    // replace it.
    loop {
        match std::fs::hard_link(&temporary, &path) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                path = dir.join(format!("{stem}-{n}.ndjson"));
                n += 1;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(e);
            }
        }
    }
    std::fs::remove_file(&temporary)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_lands_whole_under_its_date() {
        let root = tempfile::tempdir().expect("dir");
        let now = DateTime::parse_from_rfc3339("2026-11-23T09:05:01.250Z")
            .expect("time")
            .with_timezone(&Utc);
        let items = vec![r#"{"id":1}"#.to_owned(), "{\"id\":\n2}".to_owned()];
        let path = land(root.path(), "crm", 3, &items, now).expect("landed");
        assert_eq!(
            path,
            root.path().join("crm/2026/11/23/090501.250-00003.ndjson")
        );
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON item per line"))
            .collect();
        assert_eq!(lines.len(), 2);
        let again = land(root.path(), "crm", 3, &items, now).expect("landed");
        assert_ne!(path, again, "never overwritten");
    }
}
