//! Schema migrations: the `.sql` files of the migrations folder (`db/migrations/` by default,
//! operators' own included), applied once each in file-name order and tracked in the database.

use std::path::Path;

use tokio_postgres::Client;

use super::DbError;

/// The project's migrations, compiled in: used when the migrations folder does not exist, so
/// the binary carries its schema wherever it runs. The files in `db/migrations/` are the source.
const BUILTIN: &[(&str, &str)] = &[
    (
        "0001_warehouse",
        include_str!("../../../db/migrations/0001_warehouse.sql"),
    ),
    (
        "0002_types_as_data",
        include_str!("../../../db/migrations/0002_types_as_data.sql"),
    ),
    (
        "0003_rejected_events",
        include_str!("../../../db/migrations/0003_rejected_events.sql"),
    ),
    (
        "0004_http_source",
        include_str!("../../../db/migrations/0004_http_source.sql"),
    ),
    (
        "0005_lake_and_retention",
        include_str!("../../../db/migrations/0005_lake_and_retention.sql"),
    ),
];

/// An arbitrary constant naming our advisory lock, so two daemons starting together migrate
/// one after the other instead of racing.
const MIGRATION_LOCK: i64 = 0x0065_746c_5f6d_6967;

/// One migration: its version (the file name without `.sql`) and its SQL.
#[derive(Clone, Debug)]
pub struct Migration {
    pub version: String,
    pub sql: String,
}

/// The migrations of `dir` (every `*.sql`, sorted by name), or the built-in ones when `dir`
/// does not exist.
pub fn read(dir: &Path) -> std::io::Result<Vec<Migration>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BUILTIN
                .iter()
                .map(|(version, sql)| Migration {
                    version: (*version).to_owned(),
                    sql: (*sql).to_owned(),
                })
                .collect())
        }
        Err(e) => return Err(e),
    };
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let Some(version) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        migrations.push(Migration {
            version: version.to_owned(),
            sql: std::fs::read_to_string(&path)?,
        });
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(migrations)
}

/// Applies the migrations not yet recorded in `schema_migrations`, in one transaction; returns
/// their versions.
pub async fn migrate(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<String>, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // Created only when missing (looked up under the lock, so no other daemon creates it in
    // between): `CREATE TABLE IF NOT EXISTS` on every start would have the server send the NOTICE
    // `relation "schema_migrations" already exists`, which the client logs as an INFO line.
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                 version    text        PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    }
    let mut applied = Vec::new();
    for migration in migrations {
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(&migration.sql)
                .await
                .map_err(|source| DbError::Migration {
                    version: migration.version.clone(),
                    source,
                })?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&migration.version],
            )
            .await?;
            applied.push(migration.version.clone());
        }
    }
    crash_point!(Migrated);
    tx.commit().await?;
    Ok(applied)
}
