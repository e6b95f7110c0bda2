//! Names the daemon does not choose: an inbox folder that names no declared type, and file names
//! that are not UTF-8. Neither may make a file vanish from view. An undeclared folder's files are
//! left where they are but reported (log, metric, `etl status`, `etl check`) and load once the
//! type is declared; a name that is not UTF-8 is stored and shown losslessly (`%XX`), so two
//! names that differ only in such a byte stay two files from the inbox to the warehouse, the
//! reason files, the log and `etl replay`.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{card, event_id, free_addr, project, try_get, wait_until, Daemon, Env};
use serde_json::{json, Value};

/// Generous bounds for a loaded machine; each is a deadline for a condition, never a delay.
const LIMIT: Duration = Duration::from_secs(120);

fn user(id: i64, n: u32) -> Value {
    json!({
        "metadata": {"type": "user", "event_at": "2024-05-01 12:00:03", "event_id": event_id(n)},
        "payload": {"id": id, "name": "A B", "address": "1 Main St", "job": "Tester", "score": 0.5}
    })
}

/// A transaction of the transactions example (`examples/transactions/`).
fn transaction(id: i64, n: u32) -> Value {
    json!({
        "metadata": {"type": "transaction", "event_at": "2024-05-01 12:00:03",
                     "event_id": event_id(n)},
        "payload": {"id": id, "card_id": 7, "amount": 12.5, "currency": "EUR",
                    "merchant": "Corner shop", "status": "pending",
                    "updated_at": "2024-05-01 12:00:03"}
    })
}

fn write_json(path: &Path, doc: &Value) {
    fs::write(path, serde_json::to_vec_pretty(doc).expect("serializable")).expect("write");
}

/// The names and contents of the entries of a folder, to show that nothing in it changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut entries: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .expect("readable folder")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = fs::read(&path).expect("readable file");
            (path, bytes)
        })
        .collect();
    entries.sort();
    entries
}

/// The WARN lines announcing the undeclared inbox folder `folder`.
fn undeclared_lines(etl: &Daemon, folder: &str) -> Vec<Value> {
    etl.lines_at("WARN")
        .into_iter()
        .filter(|line| {
            line["folder"] == folder
                && line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("names no declared type"))
        })
        .collect()
}

/// The value of the gauge `etl_undeclared_files{folder="<folder>"}` in `/metrics`, if listed.
fn undeclared_gauge(addr: &str, folder: &str) -> Option<f64> {
    let (_, body) = try_get(addr, "/metrics")?;
    let series = format!("etl_undeclared_files{{folder=\"{folder}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
}

/// `inbox/transactions/` while no `transactions` type is declared, and `inbox/widgets/` made
/// while the daemon runs: each is reported once (WARN line), counted (`/metrics`, `etl status`),
/// named by `etl check`, and left exactly as it is; once the type is declared, a restart loads
/// its files.
#[test]
fn an_inbox_folder_naming_no_declared_type_is_reported_and_left_alone_until_declared() {
    let mut env = Env::new();
    project(&mut env, false); // users and cards only, for now
    let transactions = env.config.events_dir().join("inbox").join("transactions");
    fs::create_dir_all(&transactions).expect("mkdir");
    write_json(&transactions.join("t1.json"), &transaction(1, 1));
    write_json(&transactions.join("t2.json"), &transaction(2, 2));
    fs::write(transactions.join("notes.txt"), "not an event").expect("write");
    write_json(&env.inbox("users").join("u.json"), &user(5, 5));

    // No periodic rescan during the test: what is seen after the start-up scan is seen
    // because the watcher saw a folder appear.
    let addr = free_addr();
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            ("ETL_HTTP_ADDR", addr.clone()),
            ("ETL_RESCAN_INTERVAL_SECS", "3600".to_owned()),
        ],
    );
    // At the start-up scan: the line, the gauge; the declared types go on loading.
    assert!(
        wait_until(LIMIT, || !undeclared_lines(&etl, "transactions").is_empty()),
        "no WARN line for inbox/transactions/:\n{}",
        etl.log_tail(30)
    );
    let line = &undeclared_lines(&etl, "transactions")[0];
    assert_eq!(line["files"], 2, "{line}");
    assert!(
        line["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("events/inbox/transactions")),
        "{line}"
    );
    assert!(
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("declare the type")),
        "the line says what to do: {line}"
    );
    assert!(
        wait_until(LIMIT, || undeclared_gauge(&addr, "transactions")
            == Some(2.0)),
        "etl_undeclared_files{{folder=\"transactions\"}} is not 2"
    );
    assert!(wait_until(LIMIT, || env
        .scalar("SELECT count(*) FROM users")
        == 1));

    // A folder that appears while the daemon runs is reported as soon as it is seen. Made
    // aside and renamed in, so that it appears whole, with its file.
    let inbox = env.config.events_dir().join("inbox");
    let appear = |name: &str, files: &[(&str, Value)]| {
        let staging = env.dir.path().join(format!("staging-{name}"));
        fs::create_dir(&staging).expect("mkdir");
        for (file, doc) in files {
            write_json(&staging.join(file), doc);
        }
        fs::rename(&staging, inbox.join(name)).expect("rename into the inbox");
        inbox.join(name)
    };
    let widgets = appear("widgets", &[("w.json", user(6, 6))]);
    assert!(
        wait_until(LIMIT, || !undeclared_lines(&etl, "widgets").is_empty()),
        "no WARN line for inbox/widgets/:\n{}",
        etl.log_tail(30)
    );
    assert_eq!(undeclared_lines(&etl, "widgets")[0]["files"], 1);
    assert!(wait_until(LIMIT, || undeclared_gauge(&addr, "widgets") == Some(1.0)));

    // The scan the next folder asks for updates every count, and says nothing again about
    // the folders already reported.
    write_json(&transactions.join("t3.json"), &transaction(3, 3));
    appear("gadgets", &[]);
    assert!(
        wait_until(LIMIT, || undeclared_gauge(&addr, "transactions")
            == Some(3.0)),
        "the gauge did not follow a new file"
    );
    assert_eq!(undeclared_gauge(&addr, "gadgets"), Some(0.0));
    for folder in ["transactions", "widgets", "gadgets"] {
        assert_eq!(
            undeclared_lines(&etl, folder).len(),
            1,
            "one line for {folder}"
        );
    }

    // `etl status` counts them under a header of their own.
    let status = env.run_etl(&["status"]);
    let report = String::from_utf8_lossy(&status.stdout);
    let header = report
        .lines()
        .position(|l| l.starts_with("undeclared inbox folder"))
        .unwrap_or_else(|| panic!("no undeclared folders in etl status:\n{report}"));
    let rows: Vec<Vec<&str>> = report
        .lines()
        .skip(header + 1)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["gadgets", "0"],
            vec!["transactions", "3"],
            vec!["widgets", "1"]
        ],
        "{report}"
    );

    // `etl check` does not call such a file ok: it names the reason, and exits 1.
    let checked = env
        .etl()
        .arg("check")
        .arg(transactions.join("t1.json"))
        .output()
        .expect("etl check runs");
    let verdict = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{verdict}");
    assert!(verdict.starts_with("invalid "), "{verdict}");
    assert!(
        verdict.contains("transactions/, which names no declared type"),
        "{verdict}"
    );

    let before = (snapshot(&transactions), snapshot(&widgets));
    etl.signal(libc::SIGTERM);
    let status = etl.exit_within(LIMIT);
    assert!(status.success(), "{}", etl.log_tail(20));
    assert_eq!(
        (snapshot(&transactions), snapshot(&widgets)),
        before,
        "nothing in an undeclared folder is moved, changed or deleted"
    );
    assert_eq!(before.0.len(), 4, "t1, t2, t3 and notes.txt");
    for area in ["done", "failed"] {
        for folder in ["transactions", "widgets"] {
            let made = env.config.events_dir().join(area).join(folder);
            assert!(!made.exists(), "{} was made", made.display());
        }
    }

    // Declared later (the example installed), a restart loads them; widgets still waits.
    project(&mut env, true);
    let mut drain = env.spawn_etl("drain", &["run", "--drain"], &[]);
    let status = drain.exit_within(LIMIT);
    assert!(status.success(), "{}", drain.log_tail(20));
    assert_eq!(env.scalar("SELECT count(*) FROM transactions"), 3);
    assert_eq!(common::count(&transactions), 0);
    assert_eq!(snapshot(&widgets), before.1);
    assert_eq!(undeclared_lines(&drain, "widgets").len(), 1);
    assert!(undeclared_lines(&drain, "transactions").is_empty());
}

/// Two valid cards and two invalid ones whose names differ only in a byte that is not UTF-8,
/// and a name with a `%`: each keeps its own identity everywhere, and `etl replay` finds the
/// failed one it is asked for.
#[test]
fn names_that_are_not_utf8_are_stored_and_shown_losslessly_and_each_maps_back_to_its_file() {
    let env = Env::new();
    let cards = env.inbox("cards");
    let name = |bytes: &'static [u8]| OsStr::from_bytes(bytes);
    let (ok_ff, ok_fe, percent) = (
        name(b"ok\xff.json"),
        name(b"ok\xfe.json"),
        name(b"50%.json"),
    );
    let (bad_ff, bad_fe) = (name(b"bad\xff.json"), name(b"bad\xfe.json"));
    write_json(&cards.join(ok_ff), &card(1001, 1001));
    write_json(&cards.join(ok_fe), &card(1002, 1002));
    write_json(&cards.join(percent), &card(1003, 1003));
    fs::write(cards.join(bad_ff), "{").expect("write"); // invalid JSON
    let mut ownerless = card(1004, 1004);
    ownerless["payload"]
        .as_object_mut()
        .expect("payload")
        .remove("user_id");
    write_json(&cards.join(bad_fe), &ownerless); // fails the schema

    let mut etl = env.spawn_etl(
        "drain",
        &["run", "--drain"],
        &[("ETL_SETTLE_MS", "0".to_owned())],
    );
    let status = etl.exit_within(LIMIT);
    assert!(status.success(), "{}", etl.log_tail(20));

    // The raw zone: one row per file, each naming its own file.
    let rows = testkit::pg::psql(
        &env.db.url,
        "SELECT entity_id || ' ' || source_file FROM events ORDER BY entity_id",
    )
    .expect("query");
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            "1001 cards/ok%FF.json",
            "1002 cards/ok%FE.json",
            "1003 cards/50%25.json"
        ]
    );
    let done = env.config.done("cards");
    for (source_file, file) in [
        ("cards/ok%FF.json", ok_ff),
        ("cards/ok%FE.json", ok_fe),
        ("cards/50%25.json", percent),
    ] {
        let decoded = etl::names::decode(&source_file["cards/".len()..]).expect("an encoding");
        assert_eq!(decoded, file, "{source_file} maps back to its file");
        assert!(common::finished(&done, file).is_file(), "{source_file}");
    }

    // failed/: each file under its real name, with its own reason file saying its own reason.
    let failed = env.config.failed("cards");
    for (file, shown, code) in [
        (bad_ff, "bad%FF.json", "invalid_json"),
        (bad_fe, "bad%FE.json", "schema"),
    ] {
        assert!(common::finished(&failed, file).is_file(), "{shown}");
        let mut sidecar = file.to_owned();
        sidecar.push(".error.json");
        let reason = fs::read(common::finished(&failed, &sidecar)).expect("its reason file");
        let record: Value = serde_json::from_slice(&reason).expect("JSON");
        assert_eq!(record["file"], shown, "{record}");
        assert_eq!(record["code"], code, "{record}");
        let line = etl
            .rejection_line(shown)
            .unwrap_or_else(|| panic!("no WARN line for {shown}:\n{}", etl.log_tail(20)));
        assert_eq!(line["code"], code, "{line}");
        assert!(
            line["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(&format!("/cards/{shown}"))),
            "{line}"
        );
    }
    assert!(
        !etl.log().contains('\u{FFFD}'),
        "a name was written lossily:\n{}",
        etl.log()
    );

    // `etl check` shows the name the same way.
    let in_failed = common::finished(&failed, bad_fe);
    let checked = env
        .etl()
        .arg("check")
        .arg(&in_failed)
        .output()
        .expect("etl check runs");
    let verdict = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(1), "{verdict}");
    assert!(verdict.contains("bad%FE.json: "), "{verdict}");
    assert!(!verdict.contains('\u{FFFD}'), "{verdict}");

    // `etl replay` finds the failed file it is asked for, and only that one.
    let replay = env.run_etl(&["replay", "--type", "cards", "--reason", "invalid_json"]);
    let said = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(said.contains("moved 1 failed file"), "{said}");
    assert!(
        cards.join(bad_ff).is_file(),
        "bad\\xff.json is back in the inbox"
    );
    let mut sidecar_ff = bad_ff.to_owned();
    sidecar_ff.push(".error.json");
    assert!(
        !common::finished(&failed, &sidecar_ff).exists(),
        "its reason file is gone"
    );
    assert!(
        common::finished(&failed, bad_fe).is_file(),
        "the other one stays"
    );
    let mut sidecar_fe = bad_fe.to_owned();
    sidecar_fe.push(".error.json");
    assert!(
        common::finished(&failed, &sidecar_fe).is_file(),
        "with its reason"
    );
    assert!(!cards.join(bad_fe).exists());
}
