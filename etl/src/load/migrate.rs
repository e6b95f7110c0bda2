//! Schema migrations from `db/migrations/`, applied once each and tracked in the database.

use tokio_postgres::Client;

/// Every migration, in order. Embedded so the binary carries its schema wherever it runs;
/// the files in `db/migrations/` are the source.
const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_warehouse",
    include_str!("../../../db/migrations/0001_warehouse.sql"),
)];

/// An arbitrary constant naming our advisory lock, so two daemons starting together migrate
/// one after the other instead of racing.
const MIGRATION_LOCK: i64 = 0x0065_746c_5f6d_6967;

/// Applies the migrations not yet recorded in `schema_migrations`; returns their names.
pub async fn migrate(client: &mut Client) -> Result<Vec<&'static str>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    text        PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
            applied.push(*version);
        }
    }
    tx.commit().await?;
    Ok(applied)
}
