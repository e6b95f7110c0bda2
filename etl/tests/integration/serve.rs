//! `etl serve`, the read API, as a client sees it: the real binary against a real PostgreSQL
//! loaded by the daemon. A row equals the table's row, lists page through exactly the table's
//! rows, a history is the raw zone's versions in version order and says when older ones went to
//! the lake; bad input is a 400 or 404, never a 500; the token guards the data and never reaches
//! the log; beyond the cap a request gets 503 at once; the OpenAPI document describes every
//! declared type (the transactions example included), and openapi-spec-validator and
//! schemathesis accept it against the live server.

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A GET with an optional bearer token: (status, body as JSON, or the text as a JSON string).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    let response = testkit::http::request(addr, "GET", path, &headers, "")
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    let body = serde_json::from_str(&response.body)
        .unwrap_or_else(|_| Value::String(response.body.clone()));
    (response.status, body)
}

/// `etl serve` on a free loopback port, ready to answer.
struct Served {
    daemon: Daemon,
    addr: String,
}

fn serve(env: &Env, name: &str, vars: &[(&str, String)]) -> Served {
    let addr = free_addr();
    let daemon = env.spawn_etl(name, &["serve", "--listen", &addr], vars);
    let ready = wait_until(Duration::from_secs(30), || {
        try_get(&addr, "/api/v1/openapi.json").is_some_and(|(code, _)| code == 200)
    });
    assert!(ready, "etl serve did not start: {}", daemon.log_tail(20));
    Served { daemon, addr }
}

/// A backlog of valid users and cards, loaded by `etl run --drain`.
fn loaded(users: usize, cards: usize) -> Env {
    let env = Env::new();
    let backlog = env.dir.path().join("backlog");
    valid_backlog(&backlog, users, cards, 7);
    for kind in TYPES {
        for file in event_files(&backlog.join(kind)) {
            std::fs::copy(&file, env.inbox(kind).join(file.file_name().expect("name")))
                .expect("copy");
        }
    }
    let out = env.run_etl(&["run", "--drain"]);
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env
}

/// The cards table as the API serves it: timestamps RFC 3339 (the stored zone-less time, `Z`).
fn cards_table(env: &Env, condition: &str) -> Value {
    env.query_json(&format!(
        "SELECT id, user_id, created_by_name,
                to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
                to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at, active,
                to_char(event_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS event_at,
                event_id::text AS event_id
           FROM cards WHERE {condition}"
    ))
}

/// Every item of a list, following `next_after` page by page; the pages' sizes too.
fn all_pages(addr: &str, query: &str, token: Option<&str>) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(a) => format!("{query}&after={a}"),
            None => query.to_owned(),
        };
        let (code, page) = get(addr, &path, token);
        assert_eq!(code, 200, "{path}: {page}");
        let got = page["items"].as_array().expect("items").clone();
        sizes.push(got.len());
        items.extend(got);
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => {
                assert!(page["next_after"].is_null(), "{page}");
                return (items, sizes);
            }
        }
    }
}

fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[test]
fn rows_lists_and_histories_answer_what_the_warehouse_holds() {
    let env = loaded(60, 500);
    let served = serve(&env, "serve", &[]);
    let addr = served.addr.as_str();

    // Every card, 37 at a time: exactly the table, in key order, in full pages.
    let table = cards_table(&env, "true");
    let (items, sizes) = all_pages(addr, "/api/v1/cards?limit=37", None);
    assert_eq!(Value::Array(items), table);
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 37),
        "{sizes:?}"
    );

    // A point lookup is the table's row.
    for row in table.as_array().expect("rows").iter().step_by(97) {
        let id = row["id"].as_i64().expect("id");
        let (code, body) = get(addr, &format!("/api/v1/cards/{id}"), None);
        assert_eq!(code, 200, "{body}");
        assert_eq!(&body, row);
    }
    let user = env.query_json(
        "SELECT id, name, address, job, score FROM users WHERE id = (SELECT min(id) FROM users)",
    );
    let user = &user[0];
    let (code, body) = get(addr, &format!("/api/v1/users/{}", user["id"]), None);
    assert_eq!(code, 200, "{body}");
    for field in ["id", "name", "address", "job", "score"] {
        assert_eq!(body[field], user[field], "users.{field}");
    }

    // The cards of one user, two per page: exactly that user's cards.
    let owner = env.scalar(
        "SELECT user_id FROM cards WHERE user_id IS NOT NULL GROUP BY user_id
          ORDER BY count(*) DESC, user_id LIMIT 1",
    );
    let (items, sizes) = all_pages(
        addr,
        &format!("/api/v1/cards?user_id={owner}&limit=2"),
        None,
    );
    assert!(sizes.len() >= 2, "the owner has several pages: {sizes:?}");
    assert_eq!(
        Value::Array(items),
        cards_table(&env, &format!("user_id = {owner}"))
    );

    // Unknown ids and types are 404; bad parameters are 400 naming what is wrong.
    let (code, body) = get(addr, "/api/v1/cards/987654321", None);
    assert_eq!((code, error_code(&body)), (404, "not_found"), "{body}");
    for path in [
        "/api/v1/widgets/1",
        "/api/v1/widgets",
        "/api/v1/widgets/1/history",
    ] {
        let (code, body) = get(addr, path, None);
        assert_eq!(
            (code, error_code(&body)),
            (404, "not_found"),
            "{path}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("widgets"),
            "{body}"
        );
    }
    for (path, named) in [
        ("/api/v1/cards/abc", "abc"),
        ("/api/v1/cards/1.5/history", "1.5"),
        ("/api/v1/cards/99999999999999999999", "99999999999999999999"),
        ("/api/v1/cards?colour=red", "colour"),
        ("/api/v1/cards?created_by_name=x", "created_by_name"),
        ("/api/v1/cards?limit=0", "limit"),
        ("/api/v1/cards?limit=1001", "limit"),
        ("/api/v1/cards?limit=ten", "limit"),
        ("/api/v1/cards?after=x", "after"),
        ("/api/v1/cards?limit=5&limit=6", "limit"),
        ("/api/v1/cards?user_id=abc", "abc"),
        ("/api/v1/cards?user_id=99999999999999999999", "out of range"),
    ] {
        let (code, body) = get(addr, path, None);
        assert_eq!(
            (code, error_code(&body)),
            (400, "bad_request"),
            "{path}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{path}: {message}");
    }

    // A history: every raw version, in version order (updated_at, event_at, event_id).
    let card = env.scalar(
        "SELECT entity_id FROM events WHERE type = 'cards' GROUP BY entity_id
          ORDER BY count(*) DESC, entity_id LIMIT 1",
    );
    let raw = env.query_json(&format!(
        "SELECT row_number() OVER (ORDER BY payload->>'updated_at', event_at, event_id) AS id,
                event_id::text AS event_id, payload
           FROM events WHERE type = 'cards' AND entity_id = {card}"
    ));
    let raw = raw.as_array().expect("rows");
    assert!(raw.len() >= 3, "a card with several versions: {raw:?}");
    let (code, history) = get(addr, &format!("/api/v1/cards/{card}/history"), None);
    assert_eq!(code, 200, "{history}");
    let versions = history["versions"].as_array().expect("versions");
    let ids: Vec<&Value> = versions.iter().map(|v| &v["event_id"]).collect();
    let expected: Vec<&Value> = raw.iter().map(|r| &r["event_id"]).collect();
    assert_eq!(ids, expected, "the versions in version order");
    for (version, row) in versions.iter().zip(raw) {
        assert_eq!(version["payload"], row["payload"]);
    }
    assert_eq!(history["retired_versions"], 0);
    assert_eq!(history["complete"], true);
    assert!(history["note"].is_null());
    // A busy entity: 1,100 raw versions; the answer holds the newest 1,000, says so, and is
    // still in version order.
    let inserted = env.scalar(
        "WITH ins AS (INSERT INTO events (event_id, type, entity_id, event_at, payload, source_file)
           SELECT gen_random_uuid(), 'cards', 987000, timestamp '2024-01-01' + n * interval '1 s',
                  jsonb_build_object('id', 987000, 'updated_at',
                      to_char(timestamp '2024-01-01' + n * interval '1 s', 'YYYY-MM-DD HH24:MI:SS')),
                  'busy'
             FROM generate_series(1, 1100) AS n RETURNING 1)
         SELECT count(*) FROM ins",
    );
    assert_eq!(inserted, 1100);
    let (code, busy) = get(addr, "/api/v1/cards/987000/history", None);
    assert_eq!(code, 200, "{busy}");
    let busy_versions = busy["versions"].as_array().expect("versions");
    assert_eq!(busy_versions.len(), 1000);
    assert_eq!(busy["complete"], false);
    assert!(
        busy["note"]
            .as_str()
            .is_some_and(|n| n.contains("newest 1000")),
        "{busy}"
    );
    let times: Vec<&str> = busy_versions
        .iter()
        .filter_map(|v| v["payload"]["updated_at"].as_str())
        .collect();
    assert_eq!(
        times.first(),
        Some(&"2024-01-01 00:01:41"),
        "the oldest 100 left out"
    );
    assert_eq!(times.last(), Some(&"2024-01-01 00:18:20"));
    assert!(times.windows(2).all(|w| w[0] < w[1]), "in version order");
    // The last version is the current row.
    let (_, current) = get(addr, &format!("/api/v1/cards/{card}"), None);
    assert_eq!(
        versions.last().expect("a version")["event_id"],
        current["event_id"]
    );
    let (code, body) = get(addr, "/api/v1/cards/987654321/history", None);
    assert_eq!((code, error_code(&body)), (404, "not_found"), "{body}");

    // Nothing above was a server error.
    assert!(
        served.daemon.lines_at("ERROR").is_empty(),
        "{}",
        served.daemon.log()
    );
}

#[test]
fn a_history_says_when_older_versions_moved_to_the_lake() {
    let env = loaded(20, 200);
    let card = env.scalar(
        "SELECT entity_id FROM events WHERE type = 'cards' GROUP BY entity_id
          ORDER BY count(*) DESC, entity_id LIMIT 1",
    );
    let versions = env.scalar(&format!(
        "SELECT count(*) FROM events WHERE type = 'cards' AND entity_id = {card}"
    ));
    assert!(versions >= 3, "a card with several versions");
    let latest = testkit::pg::psql(
        &env.db.url,
        &format!(
            "SELECT event_id FROM events WHERE type = 'cards' AND entity_id = {card}
              ORDER BY payload->>'updated_at' DESC, event_at DESC, event_id DESC LIMIT 1"
        ),
    )
    .expect("query");
    // Every raw card event but that card's latest looks 40 days old: retention retires them.
    env.scalar(&format!(
        "WITH u AS (UPDATE events SET ingested_at = ingested_at - interval '40 days'
                     WHERE type = 'cards' AND event_id <> '{latest}' RETURNING 1)
         SELECT count(*) FROM u"
    ));
    let lake = env.dir.path().join("lake");
    let vars = [
        ("ETL_LAKE_DIR", lake.display().to_string()),
        ("ETL_LAKE_EXPORT_INTERVAL_SECS", "1".to_owned()),
        ("ETL_RAW_RETENTION_DAYS", "30".to_owned()),
    ];
    let mut daemon = env.spawn_etl("run", &["run"], &vars);
    assert!(
        wait_until(Duration::from_secs(60), || env.scalar(&format!(
            "SELECT count(*) FROM events WHERE type = 'cards' AND entity_id = {card}"
        )) == 1),
        "the old raw rows were not retired: {}",
        daemon.log_tail(20)
    );
    daemon.signal(libc::SIGTERM);
    daemon.exit_within(Duration::from_secs(20));

    let served = serve(
        &env,
        "serve",
        &[("ETL_LAKE_DIR", lake.display().to_string())],
    );
    let (code, history) = get(&served.addr, &format!("/api/v1/cards/{card}/history"), None);
    assert_eq!(code, 200, "{history}");
    let kept = history["versions"].as_array().expect("versions");
    assert_eq!(kept.len(), 1, "{history}");
    assert_eq!(kept[0]["event_id"], latest.as_str());
    assert_eq!(history["retired_versions"], versions - 1);
    assert_eq!(history["complete"], false);
    let note = history["note"].as_str().expect("a note");
    assert!(
        note.contains(&lake.join("events").display().to_string()),
        "{note}"
    );
}

#[test]
fn the_token_guards_the_data_and_never_reaches_the_log() {
    let env = loaded(5, 20);
    // Listening beyond loopback without a token: refused, exit 2, with the reason.
    let out = env.run_etl(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("token") && stderr.contains("loopback"),
        "{stderr}"
    );

    // With a token (from a file), on every interface: 401 without it or with a wrong one.
    let token = "s3cr3t-t0ken-4f1d9a";
    let file = env.dir.path().join("api-token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    let port = free_port();
    let vars = [
        ("ETL_API_TOKEN_FILE", file.display().to_string()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let mut daemon = env.spawn_etl(
        "serve",
        &["serve", "--listen", &format!("0.0.0.0:{port}")],
        &vars,
    );
    let addr = format!("127.0.0.1:{port}");
    assert!(
        wait_until(Duration::from_secs(30), || try_get(
            &addr,
            "/api/v1/openapi.json"
        )
        .is_some_and(|(code, _)| code == 200)),
        "etl serve did not start: {}",
        daemon.log_tail(20)
    );
    let id = env.scalar("SELECT min(id) FROM cards");
    let path = format!("/api/v1/cards/{id}");
    let (code, body) = get(&addr, &path, None);
    assert_eq!((code, error_code(&body)), (401, "unauthorized"), "{body}");
    let (code, _) = get(&addr, &path, Some("wrong"));
    assert_eq!(code, 401);
    let (code, _) = get(&addr, &path, Some(&format!("{token}x")));
    assert_eq!(code, 401);
    let (code, body) = get(&addr, &path, Some(token));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"], id);
    let (code, body) = get(&addr, "/api/v1/cards?limit=1", Some(token));
    assert_eq!(code, 200, "{body}");
    // The document says so.
    let (_, document) = get(&addr, "/api/v1/openapi.json", None);
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    assert!(document["paths"]["/api/v1/cards/{id}"]["get"]["responses"]["401"].is_object());

    daemon.signal(libc::SIGTERM);
    daemon.exit_within(Duration::from_secs(20));
    let log = daemon.log();
    assert!(log.lines().count() > 3, "trace logging was on: {log}");
    assert!(!log.contains(token), "the token is in the log");
    assert!(!log.contains("s3cr3t"), "part of the token is in the log");
}

/// A session holding `LOCK TABLE <table>` until dropped.
struct Lock {
    psql: std::process::Child,
    url: String,
}

impl Lock {
    fn take(url: &str, table: &str) -> Lock {
        let psql = if which("psql") {
            "psql".to_owned()
        } else {
            pg_bin("psql")
        };
        let mut child = Command::new(psql)
            .args(["-X", "-q", "-d", url])
            .env("PGAPPNAME", "serve-test-lock")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql starts");
        writeln!(
            child.stdin.as_mut().expect("stdin"),
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);"
        )
        .expect("lock sent");
        Lock {
            psql: child,
            url: url.to_owned(),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // The server would notice the client gone only after pg_sleep: end the session there.
        let _ = testkit::pg::psql(
            &self.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'serve-test-lock'",
        );
        let _ = self.psql.kill();
        let _ = self.psql.wait();
    }
}

fn which(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A PostgreSQL client program from the server's own bin folder.
fn pg_bin(name: &str) -> String {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.last()
        .expect("a PostgreSQL version")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn beyond_the_cap_a_request_gets_503_at_once_and_a_slow_read_times_out() {
    let env = loaded(5, 20);
    let vars = [
        ("ETL_SERVE_POOL_SIZE", "1".to_owned()),
        ("ETL_SERVE_MAX_IN_FLIGHT", "1".to_owned()),
        ("ETL_SERVE_STATEMENT_TIMEOUT_MS", "3000".to_owned()),
    ];
    let served = serve(&env, "serve", &vars);
    let id = env.scalar("SELECT min(id) FROM cards");
    let path = format!("/api/v1/cards/{id}");
    let (code, _) = get(&served.addr, &path, None);
    assert_eq!(code, 200, "the pool's connection is made");

    let lock = Lock::take(&env.db.url, "cards");
    assert!(
        wait_until(Duration::from_secs(10), || {
            env.scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'cards'::regclass AND granted AND mode = 'AccessExclusiveLock'"
        ) == 1
        }),
        "the lock was not taken"
    );
    let slow = {
        let addr = served.addr.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = get(&addr, &path, None);
            (answer, started.elapsed())
        })
    };
    // The first request waits on the lock...
    assert!(
        wait_until(Duration::from_secs(10), || env.scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'cards'::regclass AND NOT granted"
        ) == 1),
        "the first read is not waiting on the lock"
    );
    // ...so the second is beyond the cap: 503 at once, with a JSON reason.
    let started = Instant::now();
    let (code, body) = get(&served.addr, &path, None);
    assert_eq!((code, error_code(&body)), (503, "unavailable"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("in flight"),
        "{body}"
    );
    // The first one meets the statement timeout: 503 too, never a 500.
    let ((code, body), took) = slow.join().expect("the slow request");
    assert_eq!((code, error_code(&body)), (503, "unavailable"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout"),
        "{body}"
    );
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    drop(lock);
    let (code, _) = get(&served.addr, &path, None);
    assert_eq!(code, 200, "served again once the lock is gone");
}

/// A project folder with the shipped types plus the transactions example (as `tests/types.rs`
#[test]
fn the_openapi_document_describes_every_type_and_the_live_server_conforms() {
    let mut env = Env::new();
    project(&mut env, true);
    services::generate_backlog_with(
        &env.config.events_dir().join("inbox"),
        &services::BacklogSpec {
            users: 30,
            card_events: 150,
            transaction_events: 300,
            seed: 5,
        },
    )
    .expect("backlog");
    let out = env.run_etl(&["run", "--drain"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.scalar("SELECT count(*) FROM transactions") > 0);

    let token = "schemathesis-token";
    let served = serve(&env, "serve", &[("ETL_API_TOKEN", token.to_owned())]);
    let (code, document) = get(&served.addr, "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(document["openapi"], "3.1.0");

    // Every declared type, with every column and its type.
    let schemas = &document["components"]["schemas"];
    let int64 = json!({"type": "integer", "format": "int64"});
    let text = json!({"type": "string"});
    let at = json!({"type": "string", "format": "date-time"});
    let expect = |kind: &str, fields: &[(&str, Value)]| {
        let properties = &schemas[kind]["properties"];
        for (name, schema) in fields {
            assert_eq!(&properties[*name], schema, "{kind}.{name}");
        }
        let required = schemas[kind]["required"].as_array().expect("required");
        for (name, _) in fields
            .iter()
            .chain(&[("event_at", at.clone()), ("event_id", Value::Null)])
        {
            assert!(
                required.contains(&json!(name)),
                "{kind}.{name}: {required:?}"
            );
        }
        for path in [
            format!("/api/v1/{kind}"),
            format!("/api/v1/{kind}/{{id}}"),
            format!("/api/v1/{kind}/{{id}}/history"),
        ] {
            assert!(document["paths"][&path]["get"].is_object(), "{path}");
        }
    };
    expect(
        "users",
        &[
            ("id", int64.clone()),
            ("name", text.clone()),
            ("address", text.clone()),
            ("job", text.clone()),
            ("score", json!({"type": "number", "format": "double"})),
        ],
    );
    expect(
        "cards",
        &[
            ("id", int64.clone()),
            (
                "user_id",
                json!({"type": ["integer", "null"], "format": "int64"}),
            ),
            ("created_by_name", text.clone()),
            ("created_at", at.clone()),
            ("updated_at", at.clone()),
            ("active", json!({"type": "boolean"})),
        ],
    );
    expect(
        "transactions",
        &[
            ("id", int64.clone()),
            ("card_id", int64.clone()),
            ("currency", text.clone()),
            ("merchant", text.clone()),
            ("status", text.clone()),
            ("updated_at", at.clone()),
        ],
    );
    assert_eq!(
        schemas["transactions"]["properties"]["amount"]["type"],
        "string"
    );
    assert_eq!(
        schemas["transactions"]["properties"]["amount"]["format"],
        "decimal"
    );
    // The list filters are the indexed columns.
    let query_params = |path: &str| -> Vec<String> {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(query_params("/api/v1/cards"), ["user_id", "after", "limit"]);
    assert_eq!(
        query_params("/api/v1/transactions"),
        ["card_id", "after", "limit"]
    );
    assert_eq!(query_params("/api/v1/users"), ["after", "limit"]);
    // A transaction served: its amount is the exact decimal.
    let (id, amount) = {
        let row = env
            .query_json("SELECT id, amount::text AS amount FROM transactions ORDER BY id LIMIT 1");
        (row[0]["id"].as_i64().expect("id"), row[0]["amount"].clone())
    };
    let (code, row) = get(
        &served.addr,
        &format!("/api/v1/transactions/{id}"),
        Some(token),
    );
    assert_eq!(code, 200, "{row}");
    assert_eq!(row["amount"], amount);

    // An independent validator accepts the document.
    python_with(&[
        ("openapi_spec_validator", "openapi-spec-validator"),
        ("schemathesis", "schemathesis"),
    ]);
    let file = env.dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).expect("write the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // schemathesis against the live server: every check, no failure.
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{}/api/v1/openapi.json", served.addr))
        .args(["--checks", "all", "--max-examples", "25", "--seed", "1"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--request-timeout", "10", "--max-time", "60"])
        .current_dir(env.dir.path())
        .output()
        .expect("schemathesis runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    // Three types, three operations each: all of them were exercised.
    assert!(
        report.contains("9 selected / 9 total") && report.contains("No issues found"),
        "{report}"
    );
    assert!(
        served.daemon.lines_at("ERROR").is_empty(),
        "{}",
        served.daemon.log()
    );
}

/// A request with any method and a body of `{}`: (status, the headers' lines, lower-cased, and
/// the body).
fn request(addr: &str, method: &str, path: &str) -> (u16, String, String) {
    let response = testkit::http::request(addr, method, path, &[], "{}")
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (
        response.status,
        response.head.to_ascii_lowercase(),
        response.body,
    )
}

/// Every error answer is JSON, `{"error": code, "message": sentence}` with a JSON content type,
/// whichever layer produced it: a method other than GET (axum's own 405, with an empty body
/// before), an unknown route (404), an unknown type or id, a bad parameter.
#[test]
fn every_error_answers_with_a_json_body() {
    let env = Env::new();
    let migrated = env.run_etl(&["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let served = serve(&env, "serve", &[]);
    let addr = served.addr.as_str();
    for (method, path, status, code) in [
        ("POST", "/api/v1/cards", 405, "method_not_allowed"),
        ("DELETE", "/api/v1/cards/1", 405, "method_not_allowed"),
        ("PUT", "/api/v1/cards/1/history", 405, "method_not_allowed"),
        ("POST", "/api/v1/openapi.json", 405, "method_not_allowed"),
        ("GET", "/", 404, "not_found"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/nope", 404, "not_found"),
        ("GET", "/api/v1/cards/1/history/more", 404, "not_found"),
        ("GET", "/api/v1/widgets", 404, "not_found"),
        ("GET", "/api/v1/cards/1", 404, "not_found"),
        ("GET", "/api/v1/cards?limit=many", 400, "bad_request"),
        // Over an empty table too (the server's cast alone would not run there).
        (
            "GET",
            "/api/v1/cards?user_id=-1.1754943508222875e-38",
            400,
            "bad_request",
        ),
        ("GET", "/api/v1/cards/x", 400, "bad_request"),
    ] {
        let (got, head, body) = request(addr, method, path);
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{method} {path}: {got}, not JSON: {body:?}\n{head}"));
        assert_eq!(
            (got, error_code(&json)),
            (status, code),
            "{method} {path}: {body}"
        );
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {body}"
        );
        assert!(
            head.contains("content-type: application/json"),
            "{method} {path}: {head}"
        );
        if status == 405 {
            assert!(head.contains("allow: get"), "{method} {path}: {head}");
        }
    }
    assert!(
        served.daemon.lines_at("ERROR").is_empty(),
        "{}",
        served.daemon.log()
    );
}
