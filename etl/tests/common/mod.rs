//! Shared test fixtures: a data folder, a fresh database, the pipeline under test, and an oracle
//! that computes the expected warehouse from the event files themselves.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use etl::config::Config;
use etl::event::Kind;
use etl::pipeline::{self, Mode, Summary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/samples/reference-events"
);

pub struct Env {
    pub db: pgtest::TestDb,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Env {
    pub fn new() -> Env {
        let db = pgtest::fresh_db();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            database_url: db.url.clone(),
            data_dir: dir.path().join("data"),
            schemas_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas")),
            settle_ms: 300,
            rescan_interval_secs: 1,
            http_addr: String::new(),
            ..Config::default()
        };
        etl::files::ensure_layout(&config).expect("layout");
        Env { db, dir, config }
    }

    pub fn inbox(&self, kind: Kind) -> PathBuf {
        self.config.inbox(kind)
    }

    /// Runs the real pipeline in drain mode, in this process.
    pub async fn drain(&self) -> Summary {
        self.drain_with(self.config.clone()).await
    }

    pub async fn drain_with(&self, config: Config) -> Summary {
        pipeline::run(config, Mode::Drain, CancellationToken::new())
            .await
            .expect("drain runs")
    }

    /// The `etl` binary with this environment's settings, as an operator would run it.
    pub fn etl(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl"));
        cmd.env("ETL_DATABASE_URL", &self.config.database_url)
            .env("ETL_DATA_DIR", &self.config.data_dir)
            .env("ETL_SCHEMAS_DIR", &self.config.schemas_dir)
            .env("ETL_SETTLE_MS", self.config.settle_ms.to_string())
            .env("ETL_HTTP_ADDR", "")
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run_etl(&self, args: &[&str]) -> Output {
        self.etl().args(args).output().expect("etl binary runs")
    }

    /// Every user and card row, as JSON, ordered by id (timestamps as the producers write them).
    pub fn dump(&self) -> (Value, Value) {
        let users = self.query_json(
            "SELECT id, name, address, job, score, to_char(event_at, 'YYYY-MM-DD HH24:MI:SS') AS event_at,
                    event_id::text AS event_id FROM users",
        );
        let cards = self.query_json(
            "SELECT id, user_id, created_by_name, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') AS created_at,
                    to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') AS updated_at, active,
                    event_id::text AS event_id FROM cards",
        );
        (users, cards)
    }

    pub fn query_json(&self, select: &str) -> Value {
        let sql = format!("SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM ({select}) t");
        let out = pgtest::psql(&self.db.url, &sql).expect("query runs");
        serde_json::from_str(&out).expect("json_agg output")
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        let out = pgtest::psql(&self.db.url, sql).expect("query runs");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {out:?}"))
    }
}

/// `*.json` event files (not reason files) directly in `dir`.
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".json") && !name.ends_with(".error.json") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}

pub fn count(dir: &Path) -> usize {
    event_files(dir).len()
}

/// The expected tables, computed independently of the daemon from the event files: for each
/// entity, the version with the greatest (updated_at, event_at, event_id) for cards and
/// (event_at, event_id) for users, comparing the producers' text forms (which sort in time order).
pub fn oracle(files: &[PathBuf]) -> (Value, Value) {
    let mut users: BTreeMap<i64, (Vec<String>, Value)> = BTreeMap::new();
    let mut cards: BTreeMap<i64, (Vec<String>, Value)> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("readable");
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let meta = &doc["metadata"];
        let p = &doc["payload"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_lowercase();
        match meta["type"].as_str() {
            Some("user") => {
                let key = vec![s(&meta["event_at"]), s(&meta["event_id"])];
                let row = serde_json::json!({
                    "id": p["id"], "name": p["name"], "address": p["address"], "job": p["job"],
                    "score": p["score"], "event_at": meta["event_at"], "event_id": s(&meta["event_id"]),
                });
                keep_max(&mut users, p["id"].as_i64().expect("id"), key, row);
            }
            Some("card") => {
                let key = vec![
                    s(&p["updated_at"]),
                    s(&meta["event_at"]),
                    s(&meta["event_id"]),
                ];
                let row = serde_json::json!({
                    "id": p["id"], "user_id": p.get("user_id").cloned().unwrap_or(Value::Null),
                    "created_by_name": p["created_by_name"], "created_at": p["created_at"],
                    "updated_at": p["updated_at"], "active": p["active"], "event_id": s(&meta["event_id"]),
                });
                keep_max(&mut cards, p["id"].as_i64().expect("id"), key, row);
            }
            _ => {}
        }
    }
    let rows = |m: BTreeMap<i64, (Vec<String>, Value)>| {
        Value::Array(m.into_values().map(|(_, v)| v).collect())
    };
    (rows(users), rows(cards))
}

fn keep_max(map: &mut BTreeMap<i64, (Vec<String>, Value)>, id: i64, key: Vec<String>, row: Value) {
    match map.get(&id) {
        Some((best, _)) if *best >= key => {}
        _ => {
            map.insert(id, (key, row));
        }
    }
}

/// Copies the reference producers' sample files (including the cards inbox's `__id_counter`).
pub fn copy_samples(env: &Env) {
    for kind in Kind::ALL {
        let from = Path::new(SAMPLES).join(kind.folder());
        for entry in std::fs::read_dir(&from).expect("samples exist") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name");
            std::fs::copy(&path, env.inbox(kind).join(name)).expect("copy sample");
        }
    }
}
