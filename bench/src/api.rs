//! `--http`: the backlog's card events as an HTTP API would serve them (their payloads, in
//! cursor pages, from testkit's fake card API on loopback), pulled once by `etl pull` into a
//! fresh database: the API source's rate beside the inbox drain's in the same run.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use testkit::fake_api::{Api, Item};

use crate::etl::Etl;

/// Items per page.
pub const PAGE: usize = 500;

/// What one pull measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HttpRun {
    pub items: usize,
    pub pages: usize,
    pub wall_s: f64,
    pub items_per_s: f64,
    /// Items loaded (a row in `events`) + items dead-lettered: must be every item.
    pub loaded: u64,
    pub dead_lettered: u64,
    pub peak_rss_mib: f64,
}

/// The `payload` of every card event file in `cards_dir`, as its text.
pub fn card_items(cards_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(cards_dir)
        .with_context(|| format!("cannot list {}", cards_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut items = Vec::with_capacity(files.len());
    for file in files {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        items.push(doc["payload"].to_string());
    }
    Ok(items)
}

/// Serves `items` (card payloads) with testkit's fake card API, which wants no key here; the API
/// serves until the returned value is dropped.
pub fn serve(items: &[String]) -> anyhow::Result<Api> {
    let items = items
        .iter()
        .map(|raw| {
            Item::from_raw(raw.clone())
                .with_context(|| format!("a card item without an id or updated_at: {raw}"))
        })
        .collect::<anyhow::Result<Vec<Item>>>()?;
    Ok(Api::without_key(items))
}

/// `etl pull bench` over all of `items` (served at `url`) into the database of `etl`, whose
/// `etl.toml` is written beside its data folder.
pub fn pull(etl: &Etl, url: &str, items: usize) -> anyhow::Result<HttpRun> {
    let root = etl
        .data_dir
        .parent()
        .context("the data folder has a parent")?;
    std::fs::write(
        root.join("etl.toml"),
        format!(
            "[[sources]]\nkind = \"http\"\nname = \"bench\"\ntype = \"cards\"\nurl = \"{url}\"\n\
             query = {{ updated_since = \"{{from}}\", updated_until = \"{{to}}\" }}\n\
             time_format = \"%Y-%m-%dT%H:%M:%SZ\"\n\
             items = \"/data\"\npage_size = {PAGE}\npage_size_param = \"limit\"\n\
             pagination = {{ style = \"cursor\", field = \"/next_cursor\", param = \"cursor\" }}\n\
             item = {{ key = \"/id\", version = \"/updated_at\" }}\n"
        ),
    )?;
    etl.migrate()?;
    let limit = Duration::from_secs(300 + items as u64 / 200);
    let exited = etl
        .spawn_with(&[
            "pull",
            "bench",
            "--from",
            "2000-01-01",
            "--to",
            "2100-01-01",
        ])?
        .wait(limit)?;
    if !exited.success {
        bail!("etl pull failed:\n{}", etl.log_tail());
    }
    let count = |sql: &str| -> anyhow::Result<u64> {
        Ok(testkit::pg::psql(&etl.database_url, sql)?.trim().parse()?)
    };
    let loaded = count("SELECT count(*) FROM events")?;
    let dead_lettered = count("SELECT count(*) FROM rejected_events")?;
    // Two versions of a card stamped in the same second make one derived event id: at most
    // as many events as items, and none missing beyond such pairs.
    if loaded == 0 || loaded + dead_lettered > items as u64 {
        bail!(
            "the pull loaded {loaded} events and dead-lettered {dead_lettered}, for {items} items"
        );
    }
    let wall_s = exited.elapsed.as_secs_f64();
    Ok(HttpRun {
        items,
        pages: items.div_ceil(PAGE),
        wall_s,
        items_per_s: items as f64 / wall_s,
        loaded,
        dead_lettered,
        peak_rss_mib: exited.peak_rss_kib as f64 / 1024.0,
    })
}

impl HttpRun {
    /// Lines for the report, beside the inbox drain's rate of the same run.
    pub fn table(&self, drain_events_per_s: f64) -> String {
        format!(
            "\nHTTP API source (etl pull, {} card items in {} cursor pages of {PAGE} from a loopback API, one page in flight):\n\
             \x20 wall {:.2} s, {:.0} items/s ({:.2}x the inbox drain's {:.0} events/s in this run), peak RSS {:.1} MiB\n\
             \x20 loaded {} events, dead-lettered {} (the producers' ownerless cards)\n",
            self.items,
            self.pages,
            self.wall_s,
            self.items_per_s,
            self.items_per_s / drain_events_per_s.max(1e-9),
            drain_events_per_s,
            self.peak_rss_mib,
            self.loaded,
            self.dead_lettered
        )
    }
}
