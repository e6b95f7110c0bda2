//! A type's table as the server describes it, for `etl types plan`: its columns (types spelled
//! by `format_type`, as the start-up check spells them), which have a unique index of their
//! own, and the server's spelling of each declared type. The comparison itself is pure
//! (`etl_core::plan`).

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::catalog::EventType;
use crate::plan::{quoted_table, Table, TableColumn};

/// The table of `kind`, or `None` if it does not exist.
pub async fn describe(
    client: &impl GenericClient,
    kind: &EventType,
) -> Result<Option<Table>, tokio_postgres::Error> {
    let table = quoted_table(&kind.table);
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), a.attnotnull
               FROM pg_attribute a
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let columns = rows
        .iter()
        .map(|r| TableColumn {
            name: r.get(0),
            sql_type: r.get(1),
            not_null: r.get(2),
        })
        .collect();
    let unique = client
        .query(
            "SELECT a.attname::text
               FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                AND i.indnkeyatts = 1",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(Table { columns, unique }))
}

/// The server's spelling of each type `kind` declares (`None`: a type it does not know).
pub async fn spellings(
    client: &impl GenericClient,
    kind: &EventType,
) -> Result<HashMap<String, Option<String>>, tokio_postgres::Error> {
    let mut spelled = HashMap::new();
    for column in &kind.columns {
        let declared = column.sql_type.sql().to_owned();
        if spelled.contains_key(&declared) {
            continue;
        }
        let row = client
            .query_opt("SELECT format_type(to_regtype($1), NULL)", &[&declared])
            .await?;
        spelled.insert(declared, row.and_then(|r| r.get(0)));
    }
    Ok(spelled)
}
