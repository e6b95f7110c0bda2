//! What a declaration needs of its table, as SQL to review: the table created when it is
//! missing, new columns added, a type widened, a `NOT NULL` dropped for a column now optional;
//! and the changes no migration should make unasked (a column dropped or narrowed, a new key or
//! version clock), refused with the reason. Pure: the table as the server describes it comes in
//! ([`Table`], read by `etl/src/load/`), SQL text goes out. Also names a new migration so that it
//! sorts after every existing one.

use std::collections::HashMap;

use crate::catalog::{Clock, EventType, GUARD_COLUMNS};

/// A column of a table as the server describes it (`format_type` without its modifier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    pub sql_type: String,
    pub not_null: bool,
}

/// A type's table as it is.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<TableColumn>,
    /// Columns with a unique index of their own (a PRIMARY KEY or UNIQUE on it alone).
    pub unique: Vec<String>,
}

/// One type's plan: statements to review, warnings about them, and the changes refused.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub type_name: String,
    pub statements: Vec<String>,
    pub warnings: Vec<String>,
    pub refusals: Vec<String>,
}

/// A column as a `CREATE TABLE` writes it.
#[derive(Clone, Debug)]
pub struct NewColumn {
    pub name: String,
    pub sql_type: String,
    pub not_null: bool,
    /// Written after the column, as an SQL comment.
    pub comment: Option<String>,
}

/// The statements that make `table` agree with `kind`'s declaration. `spelled` maps each
/// declared type (as written) to the server's spelling of it, `None` for a type the server
/// does not know; `table` is `None` when it does not exist.
pub fn plan(
    kind: &EventType,
    spelled: &HashMap<String, Option<String>>,
    table: Option<&Table>,
) -> Plan {
    let mut plan = Plan {
        type_name: kind.name.clone(),
        ..Plan::default()
    };
    let quoted = quoted_table(&kind.table);
    for column in &kind.columns {
        let declared = column.sql_type.sql();
        if spelled.get(declared).is_none_or(Option::is_none) {
            plan.refusals.push(format!(
                "type {}: column {} is declared {declared}, a type the server does not know",
                kind.name, column.name
            ));
        }
    }
    let Some(table) = table else {
        let mut columns: Vec<NewColumn> = kind
            .columns
            .iter()
            .map(|c| NewColumn {
                name: c.name.clone(),
                sql_type: c.sql_type.sql().to_owned(),
                not_null: !c.optional,
                comment: None,
            })
            .collect();
        columns.extend(guard_columns());
        plan.statements.push(create_table(
            &kind.table,
            &columns,
            &kind.columns[kind.key].name,
        ));
        return plan;
    };
    let found = |name: &str| table.columns.iter().find(|c| c.name == name);
    let key = &kind.columns[kind.key].name;
    match found(key) {
        None => plan.refusals.push(format!(
            "type {}: the key {key} is a new column: a new key regroups every row already loaded; \
             load into a new table (a new type) instead",
            kind.name
        )),
        Some(_) if !table.unique.contains(key) => plan.refusals.push(format!(
            "type {}: the key is now {key}, and {}.{key} has no unique index of its own: a new key \
             regroups every row already loaded; load into a new table (a new type) instead",
            kind.name, kind.table
        )),
        Some(_) => {}
    }
    for clock in &kind.version {
        if let Clock::Column(i) = clock {
            let name = &kind.columns[*i].name;
            if found(name).is_none() {
                plan.refusals.push(format!(
                    "type {}: the version clock {name} is a new column: the rows already loaded \
                     have no value of it to compare, so the guard could not order them; keep the \
                     old clock, or load into a new table (a new type)",
                    kind.name
                ));
            }
        }
    }
    for guard in GUARD_COLUMNS {
        if found(guard).is_none() {
            plan.refusals.push(format!(
                "type {}: table {} has no column {guard}, which the guard needs: write that \
                 migration yourself (every row needs a value)",
                kind.name, kind.table
            ));
        }
    }
    for column in &kind.columns {
        let declared = column.sql_type.sql();
        let Some(Some(want)) = spelled.get(declared) else {
            continue;
        };
        match found(&column.name) {
            None => {
                plan.statements.push(format!(
                    "ALTER TABLE {quoted} ADD COLUMN \"{}\" {declared};",
                    column.name
                ));
                if !column.optional {
                    plan.warnings.push(format!(
                        "{}.{} is declared required: events without it are refused from now on, \
                         and the rows already loaded hold NULL (the column is nullable for them)",
                        kind.table, column.name
                    ));
                }
            }
            Some(existing) => {
                if existing.sql_type != *want {
                    match widening(&existing.sql_type, want) {
                        Some(rewrites) => {
                            plan.statements.push(format!(
                                "ALTER TABLE {quoted} ALTER COLUMN \"{}\" TYPE {declared};",
                                column.name
                            ));
                            if rewrites {
                                plan.warnings.push(format!(
                                    "{}.{} from {} to {want} rewrites the whole table, which is \
                                     locked meanwhile: apply it when a pause in loading is fine",
                                    kind.table, column.name, existing.sql_type
                                ));
                            }
                        }
                        None if widening(want, &existing.sql_type).is_some() => {
                            plan.refusals.push(format!(
                                "type {}: column {}.{} is {} and the declaration narrows it to \
                                 {want}: values already loaded may not fit; keep {}",
                                kind.name,
                                kind.table,
                                column.name,
                                existing.sql_type,
                                existing.sql_type
                            ))
                        }
                        None => plan.refusals.push(format!(
                            "type {}: column {}.{} is {} and the declaration says {want}, which \
                             is not a widening (values could be lost or changed): write that \
                             migration yourself, or keep {}",
                            kind.name,
                            kind.table,
                            column.name,
                            existing.sql_type,
                            existing.sql_type
                        )),
                    }
                }
                if column.optional && existing.not_null {
                    plan.statements.push(format!(
                        "ALTER TABLE {quoted} ALTER COLUMN \"{}\" DROP NOT NULL;",
                        column.name
                    ));
                }
            }
        }
    }
    for existing in &table.columns {
        let declared = kind.columns.iter().any(|c| c.name == existing.name);
        if !declared && !GUARD_COLUMNS.contains(&existing.name.as_str()) {
            plan.refusals.push(format!(
                "type {}: column {}.{} is no longer declared: dropping it loses its data; declare \
                 it again (optional = true if new events lack it)",
                kind.name, kind.table, existing.name
            ));
        }
    }
    plan
}

/// Whether `from` widens to `to` without losing a value, and if so whether it rewrites the
/// table (`Some(true)`); `None` when it is not a widening.
pub fn widening(from: &str, to: &str) -> Option<bool> {
    const INTEGERS: [&str; 3] = ["smallint", "integer", "bigint"];
    let rank = |t: &str| INTEGERS.iter().position(|i| *i == t);
    match (from, to) {
        _ if from == to => Some(false),
        (f, t) if rank(f).zip(rank(t)).is_some_and(|(a, b)| a < b) => Some(true),
        (f, "numeric") if rank(f).is_some() => Some(true),
        ("real", "double precision") => Some(true),
        ("character varying", "text") => Some(false),
        _ => None,
    }
}

/// `event_at` and `event_id`, as every type's table has them.
pub fn guard_columns() -> Vec<NewColumn> {
    vec![
        NewColumn {
            name: "event_at".into(),
            sql_type: "timestamp".into(),
            not_null: true,
            comment: Some("the envelope's event time (the guard's tie-breaker)".into()),
        },
        NewColumn {
            name: "event_id".into(),
            sql_type: "uuid".into(),
            not_null: true,
            comment: Some("the envelope's event id (the last tie-breaker)".into()),
        },
    ]
}

/// `CREATE TABLE` with `key` as its primary key, columns aligned, comments after them.
pub fn create_table(table: &str, columns: &[NewColumn], key: &str) -> String {
    let width = columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let type_width = columns.iter().map(|c| c.sql_type.len()).max().unwrap_or(0);
    let mut lines = Vec::new();
    for (i, column) in columns.iter().enumerate() {
        let constraint = if column.name == key {
            " PRIMARY KEY"
        } else if column.not_null {
            " NOT NULL"
        } else {
            ""
        };
        let comma = if i + 1 < columns.len() { "," } else { "" };
        let typed = if constraint.is_empty() {
            column.sql_type.clone()
        } else {
            format!("{:type_width$}{constraint}", column.sql_type)
        };
        let mut line = format!("    {:width$} {typed}{comma}", column.name);
        if let Some(comment) = &column.comment {
            // Comments line up after the longest "name type PRIMARY KEY,".
            let at = 4 + width + 1 + type_width + " PRIMARY KEY,".len();
            line = format!("{line:<at$} -- {comment}");
        }
        lines.push(line.trim_end().to_owned());
    }
    format!(
        "CREATE TABLE {} (\n{}\n);",
        quoted_table(table),
        lines.join("\n")
    )
}

/// `schema.table` or `table`, each part quoted.
pub fn quoted_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// A migration name (without `.sql`) that sorts after every name in `existing`: the greatest
/// leading number plus one, as wide as it (at least 4 digits), then `_<what>`.
pub fn next_migration_name(existing: &[String], what: &str) -> String {
    let number = |name: &str| -> Option<(u64, usize)> {
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().map(|n| (n, digits.len()))
    };
    let (greatest, width) = existing
        .iter()
        .filter_map(|name| number(name))
        .max()
        .unwrap_or((0, 4));
    let candidate = format!(
        "{:0width$}_{what}",
        greatest.saturating_add(1),
        width = width.max(4)
    );
    match existing.iter().max() {
        Some(last) if last.as_str() >= candidate.as_str() => format!("{last}_{what}"),
        _ => candidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, Pointer, SqlType};

    #[test]
    fn a_new_migration_sorts_after_every_other() {
        let existing = ["0001_warehouse".to_owned(), "0005_lake".to_owned()];
        assert_eq!(next_migration_name(&existing, "cards"), "0006_cards");
        let with_example = ["0005_lake".to_owned(), "1000_transactions".to_owned()];
        assert_eq!(next_migration_name(&with_example, "x"), "1001_x");
        assert_eq!(next_migration_name(&[], "x"), "0001_x");
        let odd = ["0002_a".to_owned(), "zz_b".to_owned()];
        assert_eq!(next_migration_name(&odd, "x"), "zz_b_x");
    }

    fn cards(extra: &[(&str, SqlType, bool)]) -> EventType {
        let column = |name: &str, sql_type: SqlType, optional: bool| Column {
            name: name.into(),
            sql_type,
            field: Pointer::parse(&format!("/payload/{name}")).expect("pointer"),
            optional,
        };
        let mut columns = vec![
            column("id", SqlType::BigInt, false),
            column("updated_at", SqlType::Timestamp, false),
        ];
        columns.extend(extra.iter().map(|(n, t, o)| column(n, t.clone(), *o)));
        EventType {
            name: "cards".into(),
            envelope_type: "card".into(),
            table: "cards".into(),
            columns,
            key: 0,
            version: vec![Clock::Column(1), Clock::EventAt, Clock::EventId],
            schema: jsonschema::draft202012::new(&serde_json::json!({})).expect("schema"),
            schema_origin: "test".into(),
            shape: None,
        }
    }

    fn table(columns: &[(&str, &str, bool)]) -> Table {
        let mut all: Vec<TableColumn> = columns
            .iter()
            .map(|(name, sql_type, not_null)| TableColumn {
                name: (*name).into(),
                sql_type: (*sql_type).into(),
                not_null: *not_null,
            })
            .collect();
        for (name, sql_type) in [
            ("event_at", "timestamp without time zone"),
            ("event_id", "uuid"),
        ] {
            all.push(TableColumn {
                name: name.into(),
                sql_type: sql_type.into(),
                not_null: true,
            });
        }
        Table {
            columns: all,
            unique: vec!["id".into()],
        }
    }

    fn spelled() -> HashMap<String, Option<String>> {
        [
            ("bigint", "bigint"),
            ("integer", "integer"),
            ("timestamp", "timestamp without time zone"),
            ("text", "text"),
            ("numeric", "numeric"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), Some(b.to_owned())))
        .collect()
    }

    #[test]
    fn a_new_optional_column_is_added_and_a_widened_one_altered() {
        let kind = cards(&[
            ("colour", SqlType::Text, true),
            ("amount", SqlType::Other("numeric".into()), true),
        ]);
        let now = table(&[
            ("id", "bigint", true),
            ("updated_at", "timestamp without time zone", true),
            ("amount", "integer", true),
        ]);
        let plan = plan(&kind, &spelled(), Some(&now));
        assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
        assert_eq!(
            plan.statements,
            [
                r#"ALTER TABLE "cards" ADD COLUMN "colour" text;"#,
                r#"ALTER TABLE "cards" ALTER COLUMN "amount" TYPE numeric;"#,
                r#"ALTER TABLE "cards" ALTER COLUMN "amount" DROP NOT NULL;"#,
            ]
        );
        assert!(plan.warnings[0].contains("rewrites"), "{:?}", plan.warnings);
    }

    #[test]
    fn changes_that_lose_data_are_refused_with_the_reason() {
        let narrowed = cards(&[("n", SqlType::Integer, false)]);
        let now = table(&[
            ("id", "bigint", true),
            ("updated_at", "timestamp without time zone", true),
            ("n", "bigint", true),
            ("gone", "text", false),
        ]);
        let plan = plan(&narrowed, &spelled(), Some(&now));
        let refusals = plan.refusals.join("\n");
        assert!(refusals.contains("narrows it to integer"), "{refusals}");
        assert!(
            refusals.contains("cards.gone is no longer declared"),
            "{refusals}"
        );
        let mut new_clock = cards(&[("version", SqlType::BigInt, false)]);
        new_clock.version[0] = Clock::Column(2);
        let refusals = plan_of(&new_clock, &now);
        assert!(
            refusals.contains("version clock version is a new column"),
            "{refusals}"
        );
        let mut new_key = cards(&[]);
        new_key.columns.swap(0, 1);
        new_key.columns[0] = new_key.columns[1].clone();
        new_key.columns[0].name = "serial".into();
        let refusals = plan_of(&new_key, &now);
        assert!(
            refusals.contains("the key serial is a new column"),
            "{refusals}"
        );
    }

    fn plan_of(kind: &EventType, now: &Table) -> String {
        plan(kind, &spelled(), Some(now)).refusals.join("\n")
    }

    #[test]
    fn a_missing_table_is_created() {
        let plan = plan(&cards(&[("colour", SqlType::Text, true)]), &spelled(), None);
        assert_eq!(plan.statements.len(), 1);
        assert!(plan.statements[0].starts_with("CREATE TABLE \"cards\""));
        assert!(
            plan.statements[0].contains("id         bigint    PRIMARY KEY"),
            "{}",
            plan.statements[0]
        );
    }

    #[test]
    fn widenings_are_known_and_narrowings_are_not() {
        assert_eq!(widening("integer", "bigint"), Some(true));
        assert_eq!(widening("bigint", "numeric"), Some(true));
        assert_eq!(widening("character varying", "text"), Some(false));
        assert_eq!(widening("bigint", "integer"), None);
        assert_eq!(widening("text", "bigint"), None);
    }
}
