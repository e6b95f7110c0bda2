//! `etl status`: files per folder, rows per table, and what a running daemon holds in flight.
//!
//! `done/` is never listed: it holds up to a retention's worth of files (millions). Its day
//! folders are counted instead (the type folder alone is read). The inbox (the queue) and
//! `failed/` (what waits for an operator) are counted file by file, and so is each inbox folder
//! that names no declared type (files the daemon leaves there unread).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::layout::is_event_file;
use crate::load::connect::{self, Target};
use crate::load::upsert::quoted_table;
use crate::load::DbError;
use crate::names;
use crate::source::inbox::discover::undeclared;
use crate::source::inbox::files::day_folders;

/// Renders the status report, and whether the warehouse could be read (the caller exits
/// non-zero when it could not).
pub async fn report(config: &Config, catalog: &Catalog) -> (String, Result<(), DbError>) {
    let width = catalog
        .iter()
        .map(|k| k.name().len())
        .max()
        .unwrap_or(0)
        .max(8);
    let mut out = format!(
        "{:<width$} {:>9} {:>9} {:>9}  {}\n",
        "files", "inbox", "failed", "done days", "done from..to"
    );
    for kind in catalog.iter() {
        let done = day_folders(&config.done(kind.name())).unwrap_or_default();
        let span = match (done.first(), done.last()) {
            (Some((oldest, _)), Some((newest, _))) => format!("{oldest}..{newest}"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<width$} {:>9} {:>9} {:>9}  {span}\n",
            kind.name(),
            count(&config.inbox(kind.name())),
            count_failed(&config.failed(kind.name())),
            done.len(),
        ));
    }
    // Folders of the inbox that no type claims: the daemon never reads them, so without this
    // their files would wait there unseen.
    match undeclared(config, catalog) {
        Ok(folders) if folders.is_empty() => {}
        Ok(folders) => {
            const HEADER: &str = "undeclared inbox folder";
            let width = folders
                .iter()
                .map(|f| names::encode(&f.folder).chars().count())
                .max()
                .unwrap_or(0)
                .max(HEADER.len());
            out.push_str(&format!(
                "\n{:<width$} {:>9}  (no such type is declared: left there unread; declare it \
                 and restart to load them)\n",
                HEADER, "files"
            ));
            for folder in folders {
                out.push_str(&format!(
                    "{:<width$} {:>9}\n",
                    names::encode(&folder.folder),
                    folder.files
                ));
            }
        }
        Err(error) => out.push_str(&format!(
            "\ncannot list {} for folders that name no declared type: {error}\n",
            names::encode_path(&config.inbox_root())
        )),
    }
    match in_flight(&config.http_addr).await {
        Some(n) => out.push_str(&format!("in flight in the running daemon: {n}\n")),
        None => out.push_str("in flight: no daemon answering on the HTTP address\n"),
    }
    out.push_str(&format!("\nwarehouse {}\n", connect::describe(config)));
    let warehouse = match rows(config, catalog).await {
        Ok(rows) => {
            let width = rows.iter().map(|(t, _)| t.len()).max().unwrap_or(0).max(8);
            out.push_str(&format!("{:<width$} {:>9}\n", "table", "rows"));
            for (table, n) in rows {
                out.push_str(&format!("{table:<width$} {n:>9}\n"));
            }
            Ok(())
        }
        Err(error) => {
            out.push_str("warehouse unreachable\n");
            Err(error)
        }
    };
    (out, warehouse)
}

/// Event files in a folder (reason files excluded).
fn count(dir: &Path) -> String {
    files_in(dir).map_or_else(|| "-".into(), |n| n.to_string())
}

fn files_in(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|e| is_event_file(&e.file_name()) && e.file_type().is_ok_and(|t| t.is_file()))
            .count(),
    )
}

/// Failed files of a type: in its day folders, and flat ones an older version left.
fn count_failed(type_folder: &Path) -> String {
    let Some(flat) = files_in(type_folder) else {
        return "-".into();
    };
    let dated: usize = day_folders(type_folder)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, folder)| files_in(folder))
        .sum();
    (flat + dated).to_string()
}

/// Rows of each type's table, then of the raw zone.
async fn rows(config: &Config, catalog: &Catalog) -> Result<Vec<(String, i64)>, DbError> {
    let client = Target::from_config(config)?.connect().await?;
    let mut rows = Vec::new();
    let tables = catalog
        .iter()
        .map(|k| k.table.clone())
        .chain(["events".to_owned()]);
    for table in tables {
        let sql = format!("SELECT count(*) FROM {}", quoted_table(&table));
        let row = client.query_one(&sql, &[]).await?;
        rows.push((table, row.get::<_, i64>(0)));
    }
    Ok(rows)
}

/// Asks a running daemon's `/status` for its in-flight count, with the HTTP client the `http`
/// source uses; `None` if nothing answers there in time, or not with a count.
async fn in_flight(addr: &str) -> Option<u64> {
    let addr: SocketAddr = addr.parse().ok()?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_secs(2))
        // The daemon is local: an HTTP_PROXY of the operator's shell must not be asked.
        .no_proxy()
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .ok()?;
    let body = response.text().await.ok()?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    status["in_flight"].as_u64()
}
