//! The machine's floor for the work a drain does: list and read every file, put every event into
//! the warehouse with the fastest bulk path PostgreSQL has (binary COPY into temp tables, then one
//! set-based merge into the real tables), and rename every file to `done/`.
//!
//! Each step is done once, in the most direct way, with nothing else running: no validation, no
//! batching, no pipeline. What the etl spends beyond this sum is its own overhead. Parsing the
//! files into rows is not timed: the floor is I/O and database work, the etl's JSON and schema
//! work is part of what the ratio measures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDateTime;
use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::cpu;

/// The type folders, which are also the names the raw zone records. `transactions` (the example
/// type) is there only when the backlog has transactions.
const KINDS: [&str; 3] = ["users", "cards", "transactions"];
const TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S";

/// Time spent in each step of the floor.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Floor {
    /// Listing the inbox and reading every file (with `threads` threads, like the etl's readers).
    pub read_s: f64,
    /// Reducing to one winner per entity, binary COPY of every row, merge, commit.
    pub copy_merge_s: f64,
    /// Renaming every file into `done/`.
    pub rename_s: f64,
    pub total_s: f64,
    /// CPU time of the bench itself in those three steps (the server's is counted by the caller).
    pub own_cpu_s: f64,
    pub files: usize,
}

/// Runs the floor on the backlog in `events_dir/inbox/` and the (migrated, empty) database at
/// `url`. Leaves the files in `done/`; [`restore`] puts them back.
pub fn measure(events_dir: &Path, url: &str, threads: usize) -> anyhow::Result<Floor> {
    let (started, cpu) = (Instant::now(), cpu::own());
    let files = read_all(events_dir, threads)?;
    let (read, mut own_cpu) = (started.elapsed(), cpu::own() - cpu);

    let rows = Rows::parse(&files)?;
    let (copy_merge, copy_cpu) = runtime()?.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        let (started, cpu) = (Instant::now(), cpu::own());
        copy_and_merge(client, &rows).await?;
        anyhow::Ok((started.elapsed(), cpu::own() - cpu))
    })?;
    own_cpu += copy_cpu;

    let (started, cpu) = (Instant::now(), cpu::own());
    // Into today's day folder, as the daemon files them (each made once, not per file).
    let today = chrono::Utc::now().date_naive().to_string();
    for folder in KINDS {
        std::fs::create_dir_all(events_dir.join("done").join(folder).join(&today))?;
    }
    for (folder, name, _) in &files {
        let from = events_dir.join("inbox").join(folder).join(name);
        std::fs::rename(
            &from,
            events_dir.join("done").join(folder).join(&today).join(name),
        )
        .with_context(|| format!("cannot rename {}", from.display()))?;
    }
    let rename = started.elapsed();
    own_cpu += cpu::own() - cpu;

    let total = read + copy_merge + rename;
    Ok(Floor {
        read_s: read.as_secs_f64(),
        copy_merge_s: copy_merge.as_secs_f64(),
        rename_s: rename.as_secs_f64(),
        total_s: total.as_secs_f64(),
        own_cpu_s: own_cpu.as_secs_f64(),
        files: files.len(),
    })
}

/// Moves every file from `done/` and `failed/` back into the inbox, for the next measurement (not
/// timed).
pub fn restore(events_dir: &Path) -> anyhow::Result<Restored> {
    let mut restored = Restored::default();
    for folder in KINDS {
        let inbox = events_dir.join("inbox").join(folder);
        for (stage, count) in [
            ("done", &mut restored.done),
            ("failed", &mut restored.failed),
        ] {
            let type_folder = events_dir.join(stage).join(folder);
            if !type_folder.exists() {
                continue;
            }
            for (from, name) in finished_files(&type_folder)? {
                // The daemon's reason files stay behind: they are not events.
                if name.to_string_lossy().ends_with(".error.json") {
                    std::fs::remove_file(&from)?;
                    continue;
                }
                std::fs::rename(&from, inbox.join(&name))?;
                *count += 1;
            }
            // The emptied day folders go, so each measurement starts from the same layout.
            for day in subfolders(&type_folder)? {
                std::fs::remove_dir(day)?;
            }
        }
    }
    Ok(restored)
}

/// (path, name) of every file (dotfiles aside) of a `done/` or `failed/` type folder: in its day
/// folders (`<YYYY-MM-DD>/`) and directly in it. None if the folder does not exist.
pub fn finished_files(
    type_folder: &Path,
) -> anyhow::Result<Vec<(std::path::PathBuf, std::ffi::OsString)>> {
    let mut files = Vec::new();
    if !type_folder.exists() {
        return Ok(files);
    }
    let days = subfolders(type_folder)?;
    for folder in std::iter::once(type_folder.to_path_buf()).chain(days) {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_file() && !name.to_string_lossy().starts_with('.') {
                files.push((entry.path(), name));
            }
        }
    }
    Ok(files)
}

/// The folders directly in `dir` (a type folder's day folders).
fn subfolders(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            folders.push(entry.path());
        }
    }
    Ok(folders)
}

/// Files moved back into the inbox by [`restore`], by where they were.
#[derive(Clone, Copy, Debug, Default)]
pub struct Restored {
    /// From `done/`: committed events (or, after the floor, every file).
    pub done: usize,
    /// From `failed/`: files the etl rejected (the producer's ownerless cards).
    pub failed: usize,
}

/// (folder, file name, contents) of every `*.json` file in the inbox.
type Files = Vec<(&'static str, String, Vec<u8>)>;

fn read_all(events_dir: &Path, threads: usize) -> anyhow::Result<Files> {
    let mut listed: Vec<(&'static str, PathBuf)> = Vec::new();
    for folder in KINDS {
        let inbox = events_dir.join("inbox").join(folder);
        if folder == "transactions" && !inbox.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&inbox)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                listed.push((folder, path));
            }
        }
    }
    let chunk = listed.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let readers: Vec<_> = listed
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> anyhow::Result<Files> {
                    part.iter()
                        .map(|(folder, path)| {
                            let bytes = std::fs::read(path)
                                .with_context(|| format!("cannot read {}", path.display()))?;
                            let name = path.file_name().unwrap_or_default();
                            Ok((*folder, name.to_string_lossy().into_owned(), bytes))
                        })
                        .collect()
                })
            })
            .collect();
        let mut files = Vec::with_capacity(listed.len());
        for reader in readers {
            files.extend(reader.join().expect("reader thread panicked")?);
        }
        Ok(files)
    })
}

/// Every event as a row of the raw zone and of its entity table.
#[derive(Default)]
struct Rows {
    raw: Vec<Raw>,
    users: Vec<User>,
    cards: Vec<Card>,
    transactions: Vec<Transaction>,
}

struct Raw {
    event_id: Uuid,
    kind: &'static str,
    entity_id: i64,
    event_at: NaiveDateTime,
    payload: Value,
    source_file: String,
}

struct User {
    id: i64,
    name: String,
    address: String,
    job: String,
    score: f64,
    event_at: NaiveDateTime,
    event_id: Uuid,
}

struct Card {
    id: i64,
    user_id: Option<i64>,
    created_by_name: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    active: bool,
    event_at: NaiveDateTime,
    event_id: Uuid,
}

struct Transaction {
    id: i64,
    card_id: i64,
    /// The JSON number's text as the etl sends it (serde_json's shortest round trip of the
    /// parsed double), cast to `numeric` by the server: no binary numeric on the floor's side.
    amount: String,
    currency: String,
    merchant: String,
    status: String,
    updated_at: NaiveDateTime,
    event_at: NaiveDateTime,
    event_id: Uuid,
}

impl Rows {
    fn parse(files: &Files) -> anyhow::Result<Rows> {
        let mut rows = Rows::default();
        for (folder, name, bytes) in files {
            let mut doc: Value = serde_json::from_slice(bytes)
                .with_context(|| format!("{folder}/{name} is not JSON"))?;
            let meta = &doc["metadata"];
            let event_id: Uuid = field(meta, "event_id")?.parse()?;
            let event_at = time(meta, "event_at")?;
            let p = &doc["payload"];
            let id = p["id"].as_i64().context("payload.id")?;
            // The daemon's default schema rejects cards without an owner (the reference
            // producer's 'bad' events): the floor loads the same valid set.
            if *folder == "cards" && p.get("user_id").is_none() {
                continue;
            }
            let kind = match *folder {
                "users" => {
                    rows.users.push(User {
                        id,
                        name: field(p, "name")?.to_owned(),
                        address: field(p, "address")?.to_owned(),
                        job: field(p, "job")?.to_owned(),
                        score: p["score"].as_f64().context("payload.score")?,
                        event_at,
                        event_id,
                    });
                    "users"
                }
                "transactions" => {
                    let amount = &p["amount"];
                    if !amount.is_number() {
                        anyhow::bail!("{folder}/{name}: payload.amount is not a number");
                    }
                    rows.transactions.push(Transaction {
                        id,
                        card_id: p["card_id"].as_i64().context("payload.card_id")?,
                        amount: amount.to_string(),
                        currency: field(p, "currency")?.to_owned(),
                        merchant: field(p, "merchant")?.to_owned(),
                        status: field(p, "status")?.to_owned(),
                        updated_at: time(p, "updated_at")?,
                        event_at,
                        event_id,
                    });
                    "transactions"
                }
                _ => {
                    rows.cards.push(Card {
                        id,
                        user_id: p["user_id"].as_i64(),
                        created_by_name: field(p, "created_by_name")?.to_owned(),
                        created_at: time(p, "created_at")?,
                        updated_at: time(p, "updated_at")?,
                        active: p["active"].as_bool().context("payload.active")?,
                        event_at,
                        event_id,
                    });
                    "cards"
                }
            };
            rows.raw.push(Raw {
                event_id,
                kind,
                entity_id: id,
                event_at,
                payload: doc["payload"].take(),
                source_file: format!("{folder}/{name}"),
            });
        }
        Ok(rows)
    }
}

fn field<'a>(object: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    object[key]
        .as_str()
        .with_context(|| format!("missing {key}"))
}

fn time(object: &Value, key: &str) -> anyhow::Result<NaiveDateTime> {
    Ok(NaiveDateTime::parse_from_str(
        field(object, key)?,
        TIMESTAMP,
    )?)
}

/// One winner per entity (the same version order as the etl and its SQL guards), sorted by id.
fn winners<T>(rows: &[T], id: impl Fn(&T) -> i64, newer: impl Fn(&T, &T) -> bool) -> Vec<&T> {
    let mut best: HashMap<i64, &T> = HashMap::with_capacity(rows.len());
    for row in rows {
        best.entry(id(row))
            .and_modify(|current| {
                if newer(row, current) {
                    *current = row;
                }
            })
            .or_insert(row);
    }
    let mut winners: Vec<&T> = best.into_values().collect();
    winners.sort_unstable_by_key(|r| id(r));
    winners
}

async fn copy_and_merge(mut client: tokio_postgres::Client, rows: &Rows) -> anyhow::Result<()> {
    let users = winners(
        &rows.users,
        |u| u.id,
        |a, b| (a.event_at, a.event_id) > (b.event_at, b.event_id),
    );
    let cards = winners(
        &rows.cards,
        |c| c.id,
        |a, b| (a.updated_at, a.event_at, a.event_id) > (b.updated_at, b.event_at, b.event_id),
    );
    let transactions = winners(
        &rows.transactions,
        |t| t.id,
        |a, b| (a.updated_at, a.event_at, a.event_id) > (b.updated_at, b.event_at, b.event_id),
    );
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE raw_in (LIKE events INCLUDING DEFAULTS) ON COMMIT DROP;
         CREATE TEMP TABLE users_in (LIKE users) ON COMMIT DROP;
         CREATE TEMP TABLE cards_in (LIKE cards) ON COMMIT DROP;",
    )
    .await?;
    copy_in(
        &tx,
        "raw_in (event_id, type, entity_id, event_at, payload, source_file)",
        &[
            Type::UUID,
            Type::TEXT,
            Type::INT8,
            Type::TIMESTAMP,
            Type::JSONB,
            Type::TEXT,
        ],
        rows.raw.iter().map(|r| {
            [
                &r.event_id as &(dyn ToSql + Sync),
                &r.kind,
                &r.entity_id,
                &r.event_at,
                &r.payload,
                &r.source_file,
            ]
        }),
    )
    .await?;
    copy_in(
        &tx,
        "users_in (id, name, address, job, score, event_at, event_id)",
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::TIMESTAMP,
            Type::UUID,
        ],
        users.iter().map(|u| {
            [
                &u.id as &(dyn ToSql + Sync),
                &u.name,
                &u.address,
                &u.job,
                &u.score,
                &u.event_at,
                &u.event_id,
            ]
        }),
    )
    .await?;
    copy_in(
        &tx,
        "cards_in (id, user_id, created_by_name, created_at, updated_at, active, event_at, event_id)",
        &[
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TIMESTAMP,
            Type::TIMESTAMP,
            Type::BOOL,
            Type::TIMESTAMP,
            Type::UUID,
        ],
        cards.iter().map(|c| {
            [
                &c.id as &(dyn ToSql + Sync),
                &c.user_id,
                &c.created_by_name,
                &c.created_at,
                &c.updated_at,
                &c.active,
                &c.event_at,
                &c.event_id,
            ]
        }),
    )
    .await?;
    tx.batch_execute(MERGE).await?;
    // The example type's table exists only when it is installed, i.e. when the backlog has
    // transactions.
    if !transactions.is_empty() {
        // amount as text, cast in the merge: the etl's own path for a `numeric` column.
        tx.batch_execute(
            "CREATE TEMP TABLE transactions_in (
                 id bigint, card_id bigint, amount text, currency text, merchant text,
                 status text, updated_at timestamp, event_at timestamp, event_id uuid
             ) ON COMMIT DROP;",
        )
        .await?;
        copy_in(
            &tx,
            "transactions_in (id, card_id, amount, currency, merchant, status, updated_at, event_at, event_id)",
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMP,
                Type::TIMESTAMP,
                Type::UUID,
            ],
            transactions.iter().map(|t| {
                [
                    &t.id as &(dyn ToSql + Sync),
                    &t.card_id,
                    &t.amount,
                    &t.currency,
                    &t.merchant,
                    &t.status,
                    &t.updated_at,
                    &t.event_at,
                    &t.event_id,
                ]
            }),
        )
        .await?;
        tx.batch_execute(MERGE_TRANSACTIONS).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Binary COPY of `rows` into `target` ("table (columns)").
async fn copy_in<'a, const N: usize>(
    tx: &tokio_postgres::Transaction<'_>,
    target: &str,
    types: &[Type; N],
    rows: impl Iterator<Item = [&'a (dyn ToSql + Sync); N]>,
) -> anyhow::Result<()> {
    let sink = tx
        .copy_in(&format!("COPY {target} FROM STDIN BINARY"))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, types);
    let mut writer = std::pin::pin!(writer);
    for row in rows {
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// The same guarded upserts as the etl's, from the temp tables.
const MERGE: &str = "
INSERT INTO events (event_id, type, entity_id, event_at, payload, source_file)
SELECT event_id, type, entity_id, event_at, payload, source_file FROM raw_in
ON CONFLICT (event_id) DO NOTHING;

INSERT INTO users AS t (id, name, address, job, score, event_at, event_id)
SELECT id, name, address, job, score, event_at, event_id FROM users_in
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, address = EXCLUDED.address, job = EXCLUDED.job,
    score = EXCLUDED.score, event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.event_at, t.event_id) < (EXCLUDED.event_at, EXCLUDED.event_id);

INSERT INTO cards AS t (id, user_id, created_by_name, created_at, updated_at, active, event_at, event_id)
SELECT id, user_id, created_by_name, created_at, updated_at, active, event_at, event_id FROM cards_in
ON CONFLICT (id) DO UPDATE SET
    user_id = EXCLUDED.user_id, created_by_name = EXCLUDED.created_by_name,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    active = EXCLUDED.active, event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.updated_at, t.event_at, t.event_id) < (EXCLUDED.updated_at, EXCLUDED.event_at, EXCLUDED.event_id);
";

/// The example type's guarded upsert, as the etl generates it from its declaration.
const MERGE_TRANSACTIONS: &str = "
INSERT INTO transactions AS t (id, card_id, amount, currency, merchant, status, updated_at, event_at, event_id)
SELECT id, card_id, amount::numeric, currency, merchant, status, updated_at, event_at, event_id
FROM transactions_in
ON CONFLICT (id) DO UPDATE SET
    card_id = EXCLUDED.card_id, amount = EXCLUDED.amount, currency = EXCLUDED.currency,
    merchant = EXCLUDED.merchant, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
    event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.updated_at, t.event_at, t.event_id) < (EXCLUDED.updated_at, EXCLUDED.event_at, EXCLUDED.event_id);
";

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
