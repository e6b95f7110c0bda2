//! The PostgreSQL server every phase runs on, and the fresh databases each phase gets.
//!
//! The floor and the etl run on the same server, one after the other, each in a database of its
//! own with the same freshly migrated, empty schema: whatever the server's settings, the ratio
//! between them compares like with like.

use std::time::Duration;

use anyhow::Context;

use crate::cpu::Postgres;

/// The server: a private throwaway cluster, or the one `DATABASE_URL` names.
pub struct Server {
    /// Keeps the private cluster running; `None` when `DATABASE_URL` is used.
    _cluster: Option<testkit::pg::Cluster>,
    admin_url: String,
    /// A sentence on what the server is and how it is tuned, for the report.
    pub description: String,
    /// Reads the server's CPU time, if it runs on this machine.
    cpu: Option<Postgres>,
}

/// A database created for one phase, dropped again when this value is dropped.
pub struct Database {
    pub url: String,
    name: String,
    admin_url: String,
}

impl Server {
    /// `DATABASE_URL` if set, else a private cluster (`testkit::pg::Cluster::start`).
    pub fn start() -> anyhow::Result<Server> {
        if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            let settings = testkit::pg::psql(
                &url,
                "SELECT current_setting('server_version') || ', fsync=' || current_setting('fsync')
                 || ', synchronous_commit=' || current_setting('synchronous_commit')",
            )
            .context("cannot query the server named by DATABASE_URL")?;
            return Ok(Server {
                _cluster: None,
                cpu: Postgres::locate(&url),
                admin_url: url,
                description: format!("DATABASE_URL server (PostgreSQL {settings})"),
            });
        }
        let cluster = testkit::pg::Cluster::start().context("cannot start a private PostgreSQL")?;
        let admin_url = cluster.url();
        let version = testkit::pg::psql(&admin_url, "SHOW server_version")?;
        Ok(Server {
            _cluster: Some(cluster),
            cpu: Postgres::locate(&admin_url),
            admin_url,
            description: format!(
                "private testkit::pg cluster, PostgreSQL {version}, same machine; \
                 fsync=off, synchronous_commit=off, full_page_writes=off (no durability cost)"
            ),
        })
    }

    /// A new empty database named `bench_<label>_<random>`.
    pub fn fresh_database(&self, label: &str) -> anyhow::Result<Database> {
        let name = format!(
            "bench_{label}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        testkit::pg::psql(&self.admin_url, &format!("CREATE DATABASE \"{name}\""))
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(Database {
            url: with_database(&self.admin_url, &name),
            name,
            admin_url: self.admin_url.clone(),
        })
    }
}

impl Server {
    /// CPU time the server has spent so far, if it can be read (see [`crate::cpu`]).
    pub fn cpu(&self) -> Option<Duration> {
        self.cpu.as_ref().map(Postgres::cpu)
    }

    /// CPU time the server spent on `db` since `before`, once every connection to it is closed.
    pub fn cpu_since(&self, before: Option<Duration>, db: &Database) -> Option<Duration> {
        let meter = self.cpu.as_ref()?;
        meter.settle(&self.admin_url, &db.name);
        Some(meter.cpu().saturating_sub(before?))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // A leftover database is harmless (and gone with a private cluster): ignore errors.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = testkit::pg::psql(&self.admin_url, &sql);
    }
}

/// `url` with its database replaced by `name` (URL form, keeping any `?params`).
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let path = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    format!("{}/{name}{query}", &head[..path])
}

/// What the warehouse holds, reduced to comparable fingerprints: the floor and the etl must
/// leave exactly the same tables (`ingested_at` aside, which is a wall-clock stamp).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint {
    pub events: Table,
    pub users: Table,
    pub cards: Table,
    /// Only when the backlog has transactions (the example type, `--transactions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Table>,
}

/// Row count and a digest of the rows in key order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Table {
    pub rows: u64,
    pub md5: String,
}

/// The fingerprint of the warehouse at `url`, with its `transactions` table if `transactions`.
pub fn fingerprint(url: &str, transactions: bool) -> anyhow::Result<Fingerprint> {
    fingerprint_of(
        url,
        transactions,
        "SELECT event_id, type, entity_id, event_at, payload, source_file FROM events",
    )
}

/// [`fingerprint`] without the raw zone's `source_file`, which names where an event came from:
/// a file (`cards/<name>.json`) when the daemon read the inbox, a stream sequence
/// (`EVENTS#<seq>`) when a replica read the broker. What the two topologies must agree on is
/// every other column: the same events, the same winners.
pub fn content_fingerprint(url: &str, transactions: bool) -> anyhow::Result<Fingerprint> {
    fingerprint_of(
        url,
        transactions,
        "SELECT event_id, type, entity_id, event_at, payload FROM events",
    )
}

fn fingerprint_of(url: &str, transactions: bool, events: &str) -> anyhow::Result<Fingerprint> {
    let table = |select: &str, key: &str| -> anyhow::Result<Table> {
        let out = testkit::pg::psql(
            url,
            &format!(
                "SELECT count(*), md5(coalesce(string_agg(md5(r::text), '' ORDER BY r.{key}), ''))
                 FROM ({select}) r"
            ),
        )?;
        let (rows, md5) = out
            .split_once('|')
            .with_context(|| format!("unexpected fingerprint output: {out:?}"))?;
        Ok(Table {
            rows: rows.parse()?,
            md5: md5.to_owned(),
        })
    };
    Ok(Fingerprint {
        events: table(events, "event_id")?,
        users: table("SELECT * FROM users", "id")?,
        cards: table("SELECT * FROM cards", "id")?,
        transactions: if transactions {
            Some(table("SELECT * FROM transactions", "id")?)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "x"),
            "postgresql://u@h/x?sslmode=disable"
        );
    }
}
