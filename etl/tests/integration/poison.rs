//! One event can never stall the pipeline: an event the database refuses is isolated and
//! rejected while every other event loads; trouble that is not about the rows (an outage, a
//! revoked permission) never rejects an event; a version from the far future is refused.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{files_in, free_addr, oracle, try_get as get, wait_until, Env};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(90);

/// A card event; `n` makes its event_id unique.
fn card(id: i64, updated_at: &str, n: u32) -> Value {
    json!({
        "payload": {"id": id, "user_id": 7, "created_by_name": "A B",
                    "updated_at": updated_at, "created_at": "2024-05-01 11:58:40", "active": true},
        "metadata": {"type": "card", "event_at": "2024-05-01 12:00:03",
                     "event_id": format!("00000000-0000-4000-8000-{n:012}")}
    })
}

/// Writes a card file atomically (dotfile, then rename), as the producers do.
fn write_card(dir: &Path, name: &str, doc: &Value) -> PathBuf {
    let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(name));
    fs::write(&tmp, serde_json::to_vec(doc).expect("json")).expect("write");
    fs::rename(&tmp, &path).expect("rename");
    path
}

fn reason_of(env: &Env, name: &str) -> Value {
    let path = common::finished(&env.config.failed("cards"), etl::layout::sidecar_name(name));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reason file is JSON")
}

/// The DBA's constraint that the schema knows nothing about.
const SMALL_IDS: &str = "ALTER TABLE cards ADD CONSTRAINT small_ids CHECK (id < 1000000000)";

fn migrate_and_constrain(env: &Env) {
    let out = env.run_etl(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    testkit::pg::psql(&env.config.database.url, SMALL_IDS).expect("constraint added");
}

fn assert_refused_by_constraint(env: &Env, name: &str) {
    let failed = env.config.failed("cards");
    assert!(
        common::finished(&failed, name).exists(),
        "{name} not in failed/"
    );
    let reason = reason_of(env, name);
    assert_eq!(reason["code"], "db_refused", "{reason}");
    assert_eq!(reason["sqlstate"], "23514", "{reason}");
    assert_eq!(reason["constraint"], "small_ids", "{reason}");
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or("")
            .contains("small_ids"),
        "{reason}"
    );
}

/// The case: 2,000-odd events and one card the database refuses. The drain ends, the
/// others load, and only the poison file is in failed/.
#[test]
fn one_refused_event_among_thousands_is_rejected_and_the_rest_load() {
    let env = Env::new();
    migrate_and_constrain(&env);
    let inbox = env.config.events_dir().join("inbox");
    let valid = common::valid_backlog(&inbox, 100, 2_000, 31);
    let expected = oracle(&valid);
    write_card(
        &env.inbox("cards"),
        "poison.json",
        &card(2_000_000_000, "2024-05-01 12:00:03", 1),
    );

    let mut etl = env.spawn_etl("drain", &["run", "--drain"], &[]);
    let status = etl.exit_within(PATIENCE);
    assert!(status.success(), "{}", etl.log_tail(20));

    assert_eq!(env.dump(), expected, "every other event loaded");
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        valid.len() as i64
    );
    assert_eq!(files_in(&env, "inbox"), Vec::<PathBuf>::new());
    assert_eq!(files_in(&env, "failed").len(), 1);
    assert_refused_by_constraint(&env, "poison.json");
    assert!(etl.rejection_line("poison.json").is_some(), "no WARN line");
    assert!(
        !etl.log().contains("database unavailable"),
        "the refusal was blamed on the database: {}",
        etl.log_tail(20)
    );
}

/// Several poison events in one batch (one worker, one batch): each is isolated.
#[test]
fn a_batch_with_several_refused_events_isolates_all_of_them() {
    let env = Env::new();
    migrate_and_constrain(&env);
    let inbox = env.config.events_dir().join("inbox");
    let valid = common::valid_backlog(&inbox, 20, 300, 32);
    let expected = oracle(&valid);
    let poison: Vec<String> = (0..5).map(|i| format!("poison-{i}.json")).collect();
    for (i, name) in poison.iter().enumerate() {
        let doc = card(
            2_000_000_000 + i as i64,
            "2024-05-01 12:00:03",
            100 + i as u32,
        );
        write_card(&env.inbox("cards"), name, &doc);
    }

    let mut etl = env.spawn_etl(
        "drain",
        &["run", "--drain"],
        &[
            ("ETL_WORKERS", "1".into()),
            ("ETL_BATCH_SIZE", "5000".into()),
            ("ETL_SETTLE_MS", "0".into()),
        ],
    );
    assert!(etl.exit_within(PATIENCE).success(), "{}", etl.log_tail(20));
    assert_eq!(env.dump(), expected);
    assert_eq!(files_in(&env, "failed").len(), poison.len());
    for name in &poison {
        assert_refused_by_constraint(&env, name);
    }
}

/// Puts `files` into the inbox (by their folder's kind) as the producers do: written under a
/// dotfile name, then renamed, so the daemon (which runs with no settle window in these tests)
/// never reads one half-copied.
fn deliver(env: &Env, files: &[PathBuf]) {
    for file in files {
        let folder = file.parent().and_then(|p| p.file_name()).expect("folder");
        let kind = common::type_of_folder(&folder.to_string_lossy()).expect("a type folder");
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        let tmp = env.inbox(kind).join(format!(".{name}.tmp"));
        fs::copy(file, &tmp).expect("copy next to the inbox");
        fs::rename(&tmp, env.inbox(kind).join(name)).expect("rename into the inbox");
    }
}

/// Following, with the poison file arriving alone between ordinary files, and a database outage
/// later in the same run: the poison file is rejected on its own (a batch of one is still
/// isolated, not retried for ever), and the outage rejects nothing.
#[test]
fn following_a_lone_poison_file_is_rejected_and_an_outage_in_the_same_run_blames_no_event() {
    let cluster = testkit::pg::Cluster::start().expect("private cluster");
    let mut env = Env::new();
    env.config.database.url = cluster.url();
    migrate_and_constrain(&env);
    let source = tempfile::tempdir().expect("tmp");
    let valid = common::valid_backlog(source.path(), 30, 600, 33);
    let expected = oracle(&valid);
    let (first, rest) = valid.split_at(valid.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);

    let addr = free_addr();
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            ("ETL_HTTP_ADDR", addr.clone()),
            ("ETL_MAX_RETRY_BACKOFF_MS", "500".into()),
            ("ETL_SETTLE_MS", "0".into()),
        ],
    );
    deliver(&env, first);
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len() == first.len()),
        "{}",
        etl.log_tail(20)
    );
    write_card(
        &env.inbox("cards"),
        "poison.json",
        &card(2_000_000_000, "2024-05-01 12:00:03", 1),
    );
    assert!(
        wait_until(PATIENCE, || common::finished(
            &env.config.failed("cards"),
            "poison.json"
        )
        .exists()),
        "the lone poison file was not rejected: {}",
        etl.log_tail(20)
    );
    deliver(&env, second);
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len()
            == first.len() + second.len()),
        "{}",
        etl.log_tail(20)
    );

    cluster.stop().expect("stop the server");
    deliver(&env, third);
    assert!(
        etl.wait_for_log("database unavailable", PATIENCE),
        "{}",
        etl.log_tail(20)
    );
    assert!(
        common::wait_for_db_retries(&addr, 3, PATIENCE),
        "no retries: {}",
        etl.log_tail(20)
    );
    assert_eq!(
        files_in(&env, "failed").len(),
        1,
        "an outage rejected events"
    );
    cluster.start_again().expect("restart the server");
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len() == valid.len()),
        "{}",
        etl.log_tail(20)
    );
    assert!(etl.is_running());
    assert_eq!(files_in(&env, "failed").len(), 1);
    assert_refused_by_constraint(&env, "poison.json");
    assert_eq!(common::dump_at(&env.config.database.url), expected);
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(30)).success());
}

/// A revoked permission hits every event alike: nothing goes to failed/, `/readyz` says why,
/// and once the grant is back everything loads.
#[test]
fn a_revoked_insert_rejects_nothing_and_everything_loads_once_granted_again() {
    let env = Env::new();
    let out = env.run_etl(&["migrate"]);
    assert!(out.status.success());
    // A role of its own (superusers ignore privileges); role names are server-wide.
    let role = format!("loader_{}", env.db.name);
    testkit::pg::psql(
        &env.db.url,
        &format!(
            "CREATE ROLE {role} LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT ALL ON SCHEMA public TO {role}"
        ),
    )
    .expect("role");
    let (server, _) = env.db.url.rsplit_once('/').expect("url with a database");
    let (scheme_user, host) = server.rsplit_once('@').expect("url with a user");
    let (scheme, _) = scheme_user.split_once("//").expect("scheme");
    let role_url = format!("{scheme}//{role}@{host}/{}", env.db.name);

    let source = tempfile::tempdir().expect("tmp");
    let valid = common::valid_backlog(source.path(), 20, 300, 34);
    let expected = oracle(&valid);
    let (before, after) = valid.split_at(valid.len() / 2);
    let addr = free_addr();
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            ("ETL_DATABASE_URL", role_url),
            ("ETL_HTTP_ADDR", addr.clone()),
            ("ETL_MAX_RETRY_BACKOFF_MS", "500".into()),
            ("ETL_SETTLE_MS", "0".into()),
        ],
    );
    deliver(&env, before);
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len() == before.len()),
        "{}",
        etl.log_tail(20)
    );

    testkit::pg::psql(&env.db.url, &format!("REVOKE INSERT ON cards FROM {role}")).expect("revoke");
    deliver(&env, after);
    assert!(
        wait_until(PATIENCE, || get(&addr, "/readyz")
            .is_some_and(|(code, body)| code == 503 && body.contains("42501"))),
        "readyz does not say why: {:?}\n{}",
        get(&addr, "/readyz"),
        etl.log_tail(20)
    );
    assert!(
        common::wait_for_db_retries(&addr, 3, PATIENCE),
        "no retries: {}",
        etl.log_tail(20)
    );
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert!(
        !files_in(&env, "inbox").is_empty(),
        "the files wait in the inbox"
    );
    let said = etl
        .lines_at("ERROR")
        .iter()
        .filter(|l| l.to_string().contains("42501"))
        .count();
    assert_eq!(said, 1, "said once per cause: {}", etl.log_tail(20));
    assert!(
        !etl.log().contains("database unavailable"),
        "the server answered: {}",
        etl.log_tail(20)
    );

    testkit::pg::psql(&env.db.url, &format!("GRANT INSERT ON cards TO {role}")).expect("grant");
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len() == valid.len()),
        "{}",
        etl.log_tail(20)
    );
    assert!(wait_until(PATIENCE, || get(&addr, "/readyz")
        .is_some_and(|(code, _)| code == 200)));
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_eq!(env.dump(), expected);
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(30)).success());
    let _ = testkit::pg::psql(
        &env.db.url,
        &format!("DROP OWNED BY {role}; DROP ROLE {role}"),
    );
}

/// A card dated 2099 would win the version guard against every genuine later update. It is
/// refused, and the card keeps following its genuine updates.
#[test]
fn a_far_future_version_is_refused_and_the_entity_keeps_following_genuine_updates() {
    let env = Env::new();
    let inbox = env.inbox("cards");
    write_card(&inbox, "v1.json", &card(5, "2024-05-01 12:00:00", 1));
    write_card(&inbox, "future.json", &card(5, "2099-01-01 00:00:00", 2));
    let mut far_event = card(6, "2024-05-01 12:00:00", 3);
    far_event["metadata"]["event_at"] = json!("2099-01-01 00:00:00");
    write_card(&inbox, "future-event.json", &far_event);
    // A time zone ahead of UTC is not the future: within the default bound of one day.
    let soon = (chrono::Utc::now().naive_utc() + chrono::Duration::hours(13))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    write_card(&inbox, "v2.json", &card(5, &soon, 4));
    let out = env.run_etl(&["run", "--drain"]);
    assert!(out.status.success());

    let later = (chrono::Utc::now().naive_utc() + chrono::Duration::hours(14))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    write_card(&inbox, "v3.json", &card(5, &later, 5));
    let out = env.run_etl(&["run", "--drain"]);
    assert!(out.status.success());

    let stored = testkit::pg::psql(
        &env.db.url,
        "SELECT to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') FROM cards WHERE id = 5",
    )
    .expect("query");
    assert_eq!(stored, later, "the card follows its genuine updates");
    for name in ["future.json", "future-event.json"] {
        let reason = reason_of(&env, name);
        assert_eq!(reason["code"], "future_version", "{reason}");
        assert!(
            reason["reason"].as_str().unwrap_or("").contains("2099"),
            "{reason}"
        );
    }
    assert_eq!(files_in(&env, "failed").len(), 2);
    assert_eq!(env.scalar("SELECT count(*) FROM cards WHERE id = 6"), 0);
}

/// An error of neither class (here a trigger's `RAISE`, SQLSTATE P0001) is retried like a
/// transient one, but an event that keeps failing alone with it is finally rejected with the
/// server's message: nothing is retried for ever.
#[test]
fn an_error_of_unknown_class_is_retried_then_its_lone_event_rejected() {
    let env = Env::new();
    let out = env.run_etl(&["migrate"]);
    assert!(out.status.success());
    testkit::pg::psql(
        &env.db.url,
        "CREATE FUNCTION no_77() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.id = 77 THEN RAISE EXCEPTION 'card 77 is blocked by policy'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER no_77 BEFORE INSERT OR UPDATE ON cards \
           FOR EACH ROW EXECUTE FUNCTION no_77()",
    )
    .expect("trigger");
    let inbox = env.inbox("cards");
    for id in 70..80 {
        write_card(
            &inbox,
            &format!("c{id}.json"),
            &card(id, "2024-05-01 12:00:03", id as u32),
        );
    }
    let mut etl = env.spawn_etl("drain", &["run", "--drain"], &[]);
    assert!(etl.exit_within(PATIENCE).success(), "{}", etl.log_tail(20));
    assert_eq!(env.scalar("SELECT count(*) FROM cards"), 9);
    assert_eq!(files_in(&env, "failed").len(), 1);
    let reason = reason_of(&env, "c77.json");
    assert_eq!(reason["code"], "db_refused", "{reason}");
    assert_eq!(reason["sqlstate"], "P0001", "{reason}");
    assert!(
        reason["reason"]
            .as_str()
            .unwrap_or("")
            .contains("blocked by policy"),
        "{reason}"
    );
    let retries = etl
        .lines_at("WARN")
        .iter()
        .filter(|l| l.to_string().contains("unknown class"))
        .count();
    assert!(retries >= 2, "retried first: {}", etl.log_tail(20));
}
