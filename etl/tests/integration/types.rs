//! Event types are data: the transactions example (`examples/transactions/`), installed into a
//! temporary project folder as an operator would install it — a schema, a declaration and a
//! migration, no code — loads to its oracle beside users and cards; a declaration its table
//! does not match, or a broken migration, stops the start with a clear message.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{event_files, oracle, project, Env};
use serde_json::{json, Value};

/// The expected `transactions` table from the files: per id, the version with the greatest
/// (updated_at, event_at, event_id), comparing the producers' text forms. `amount` is the number
/// exactly as the file writes it (read from the text, not through a float).
fn transactions_oracle(files: &[PathBuf]) -> Value {
    let mut best: BTreeMap<i64, (Vec<String>, Value)> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("readable");
        let doc: Value = serde_json::from_str(&text).expect("generated files are JSON");
        let (meta, p) = (&doc["metadata"], &doc["payload"]);
        let s = |v: &Value| v.as_str().unwrap_or_default().to_lowercase();
        let key = vec![
            s(&p["updated_at"]),
            s(&meta["event_at"]),
            s(&meta["event_id"]),
        ];
        let row = json!({
            "id": p["id"], "card_id": p["card_id"], "amount": amount_text(&text),
            "currency": p["currency"], "merchant": p["merchant"], "status": p["status"],
            "updated_at": p["updated_at"], "event_id": s(&meta["event_id"]),
        });
        let id = p["id"].as_i64().expect("id");
        if best.get(&id).is_none_or(|(k, _)| *k < key) {
            best.insert(id, (key, row));
        }
    }
    Value::Array(best.into_values().map(|(_, row)| row).collect())
}

/// The text of the `amount` number in a file (`"amount": 12.5,` → `12.5`).
fn amount_text(text: &str) -> String {
    let start = text.find("\"amount\":").expect("an amount") + "\"amount\":".len();
    text[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactions_example_loads_without_code_beside_users_and_cards() {
    let mut env = Env::new();
    project(&mut env, true);
    let events = env.config.events_dir().join("inbox");
    services::generate_backlog_with(
        &events,
        &services::BacklogSpec {
            users: 300,
            card_events: 1_500,
            transaction_events: 3_000,
            seed: 11,
        },
    )
    .expect("backlog");
    let transactions = event_files(&env.inbox("transactions"));
    assert_eq!(transactions.len(), 3_000);
    let mut entities = event_files(&env.inbox("users"));
    entities.extend(event_files(&env.inbox("cards")));
    let ownerless = common::ownerless_cards(&entities);

    let summary = env.drain().await;
    assert!(summary.graceful && summary.stuck == 0, "{summary:?}");

    // Every transaction settled: in done/, none failed, none left.
    assert_eq!(common::count(&env.inbox("transactions")), 0);
    assert_eq!(common::count(&env.config.failed("transactions")), 0);
    assert_eq!(common::count(&env.config.done("transactions")), 3_000);
    let done = event_files(&env.config.done("transactions"));
    let table = env.query_json(
        "SELECT id, card_id, amount::text AS amount, currency, merchant, status,
                to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') AS updated_at, event_id::text AS event_id
           FROM transactions",
    );
    assert_eq!(table, transactions_oracle(&done));
    // Both statuses of a transaction's life are there, so versions really were ordered.
    assert!(env.scalar("SELECT count(*) FROM transactions WHERE status = 'pending'") > 0);
    assert!(env.scalar("SELECT count(*) FROM transactions WHERE status <> 'pending'") > 0);

    // The shipped types are unaffected, and the raw zone names each event by its type's name.
    let mut loaded = event_files(&env.config.done("users"));
    loaded.extend(event_files(&env.config.done("cards")));
    assert_eq!(env.dump(), oracle(&loaded));
    assert_eq!(common::count(&env.config.failed("cards")), ownerless);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE type = 'transactions'"),
        3_000
    );
    assert_eq!(
        env.scalar("SELECT count(DISTINCT type) FROM events"),
        3,
        "one name per type in the raw zone"
    );
    // The operator's migration ran once and is recorded.
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM schema_migrations WHERE version IN ('0001_warehouse', \
             '0002_types_as_data', '1000_transactions')"
        ),
        3
    );

    // The operator's commands know the type by the same name.
    let status = env.run_etl(&["status"]);
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{report}");
    let files_line = report
        .lines()
        .find(|l| l.starts_with("transactions "))
        .expect("a files line for transactions");
    // Inbox 0, failed 0, done/ in one day folder (today's): done/ itself is never listed.
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        files_line.split_whitespace().collect::<Vec<_>>(),
        ["transactions", "0", "0", "1", &format!("{today}..{today}")]
    );
    let rows = env.scalar("SELECT count(*) FROM transactions");
    assert!(
        report.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["transactions", &rows.to_string()]
        ),
        "{report}"
    );
    let replay = env.run_etl(&["replay", "--type", "transactions"]);
    assert!(replay.status.success());
    let unknown = env.run_etl(&["replay", "--type", "transaction"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such event type"));

    // A transaction in the wrong folder is refused for its folder, like any type.
    let text = std::fs::read_to_string(&done[0]).expect("a done transaction");
    std::fs::write(env.inbox("cards").join("stray.json"), text).expect("write");
    env.drain().await;
    let reason = std::fs::read_to_string(common::finished(
        &env.config.failed("cards"),
        "stray.json.error.json",
    ))
    .expect("a reason file");
    let reason: Value = serde_json::from_str(&reason).expect("JSON reason");
    assert_eq!(reason["code"], "wrong_folder");
    assert_eq!(reason["type"], "cards");
}

/// `etl run --drain` with the environment's settings: its exit code and everything it printed.
fn start(env: &Env) -> (Option<i32>, String) {
    let out = env.run_etl(&["run", "--drain"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_declaration_its_table_does_not_match_stops_the_start_with_the_reason() {
    let mut env = Env::new();
    let root = project(&mut env, true);
    let declaration = root.join("types/transactions.toml");
    let original = std::fs::read_to_string(&declaration).expect("declaration");

    // A column type the table does not have.
    let float = original.replace(r#"type = "numeric""#, r#"type = "double precision""#);
    std::fs::write(&declaration, float).expect("write");
    let (code, log) = start(&env);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(
            "column transactions.amount is numeric, but the declaration says double precision"
        ),
        "{log}"
    );

    // A column the table lacks.
    let extra = original.replace(
        r#"{ name = "status",     type = "text" },"#,
        r#"{ name = "status",     type = "text" }, { name = "country", type = "text" },"#,
    );
    std::fs::write(&declaration, extra).expect("write");
    let (code, log) = start(&env);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("table transactions has no column country"),
        "{log}"
    );

    // No migration for the table at all.
    std::fs::write(&declaration, &original).expect("write");
    std::fs::remove_file(root.join("db/migrations/1000_transactions.sql")).expect("rm");
    let fresh = Env::new();
    env.config.database.url = fresh.config.database.url.clone();
    let (code, log) = start(&env);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("table transactions does not exist"), "{log}");

    // A migration the server refuses: named, and not retried for ever.
    std::fs::write(
        root.join("db/migrations/1000_transactions.sql"),
        "CREATE TABLE transactions (id bigint PRIMARY KEY,, oops);",
    )
    .expect("write");
    let (code, log) = start(&env);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("migration 1000_transactions failed"), "{log}");

    // Nothing was applied by the failed starts but the shipped migrations; nothing loaded.
    assert_eq!(
        fresh.scalar("SELECT count(*) FROM schema_migrations WHERE version LIKE '1000%'"),
        0
    );
}

#[test]
fn an_invalid_declaration_is_refused_with_its_file_named() {
    let mut env = Env::new();
    let root = project(&mut env, true);
    std::fs::write(
        root.join("types/transactions.toml"),
        "key = \"id\"\nversion = [\"merchant\"]\ncolumns = [{ name = \"id\", type = \"bigint\" }, \
         { name = \"merchant\", type = \"text\" }]\n",
    )
    .expect("write");
    let (code, log) = start(&env);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("event type transactions"), "{log}");
    assert!(log.contains("version clock merchant"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
