//! A type drafted from its samples, and a changed declaration that plans its own migration,
//! against real PostgreSQL: `etl infer` on loadgen's transactions drafts a type under which the
//! files load to the same table as under the hand-written example; samples that disagree about
//! a field are reported, not guessed; the reference cards' draft says which field is missing
//! and, once it is required, loads them with the shipped schema's outcomes; and a field added
//! to `cards` through `etl types plan` loads beside the old rows, which keep NULL.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{event_files, project, Env, SAMPLES};
use serde_json::Value;

/// `etl infer …` as an operator runs it (no warehouse involved: the environment's settings
/// only name the project's folders).
fn infer(env: &Env, args: &[&str]) -> Output {
    let mut all = vec!["infer"];
    all.extend_from_slice(args);
    env.run_etl(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies every file of `drafts` into the project's live folders, as the guide installs a
/// draft: the schema into schemas/, the declaration into types/, the migration into
/// db/migrations/.
fn install(env: &Env, drafts: &Path) {
    for entry in std::fs::read_dir(drafts).expect("drafts folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let to = if name.ends_with(".schema.json") {
            &env.config.schemas_dir
        } else if name.ends_with(".toml") {
            &env.config.types_dir
        } else {
            &env.config.database.migrations_dir
        };
        std::fs::copy(&path, to.join(&name)).expect("install a draft");
    }
}

/// Every row of the transactions table as text, ordered by key.
fn transactions(env: &Env) -> Vec<String> {
    let out = testkit::pg::psql(
        &env.db.url,
        "SELECT concat_ws('|', id::text, card_id::text, amount::text, currency, merchant, status,
                          updated_at::text, event_at::text, event_id::text)
           FROM transactions ORDER BY id",
    )
    .expect("query runs");
    out.lines().map(str::to_owned).collect()
}

/// Copies `files` into the inbox folder of `kind`.
fn feed(env: &Env, kind: &str, files: &[PathBuf]) {
    let inbox = env.config.inbox(kind);
    std::fs::create_dir_all(&inbox).expect("inbox folder");
    for file in files {
        std::fs::copy(file, inbox.join(file.file_name().expect("name"))).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_drafted_from_loadgen_load_like_the_hand_written_example() {
    // What `loadgen --users 0 --card-events 0 --transaction-events 2000 --seed 1` writes.
    let samples = tempfile::tempdir().expect("temp dir");
    services::generate_backlog_with(
        samples.path(),
        &services::BacklogSpec {
            users: 0,
            card_events: 0,
            transaction_events: 2_000,
            seed: 1,
        },
    )
    .expect("backlog");
    let files = event_files(&samples.path().join("transactions"));
    assert_eq!(files.len(), 2_000);

    // Under the hand-written example.
    let mut by_hand = Env::new();
    project(&mut by_hand, true);
    feed(&by_hand, "transactions", &files);
    let summary = by_hand.drain().await;
    assert!(summary.graceful && summary.stuck == 0, "{summary:?}");
    let expected = transactions(&by_hand);
    assert!(expected.len() > 1_000, "{} rows", expected.len());

    // Under the draft, from the samples alone.
    let mut drafted = Env::new();
    project(&mut drafted, false);
    let drafts = drafted.dir.path().join("drafts/transactions");
    let sample_dir = samples.path().join("transactions");
    let out = infer(
        &drafted,
        &[
            "--type",
            "transactions",
            "--out",
            drafts.to_str().expect("UTF-8 path"),
            sample_dir.to_str().expect("UTF-8 path"),
        ],
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("read 2000 sample(s) of type transactions"),
        "{report}"
    );
    let amount = report
        .lines()
        .find(|l| l.trim_start().starts_with("/payload/amount"))
        .expect("a line for amount");
    assert!(amount.contains("numeric"), "{amount}");
    assert!(report.contains("key: id ("), "{report}");
    assert!(report.contains("version clock: updated_at ("), "{report}");
    let declaration = std::fs::read_to_string(drafts.join("transactions.toml")).expect("drafted");
    assert!(
        declaration.contains(r#"envelope_type = "transaction""#),
        "{declaration}"
    );
    assert!(declaration.contains(r#"type = "numeric""#), "{declaration}");
    // The migration sorts after every existing one; nothing went into the live folders.
    assert!(drafts.join("0006_transactions.sql").is_file());
    assert!(!drafted.config.types_dir.join("transactions.toml").exists());

    // The samples pass the draft before it is installed.
    let mut check = vec![
        "check".to_owned(),
        "--types-dir".to_owned(),
        drafts.display().to_string(),
        "--schemas-dir".to_owned(),
        drafts.display().to_string(),
    ];
    check.extend(files.iter().take(50).map(|f| f.display().to_string()));
    let checked = drafted.etl().args(&check).output().expect("etl check runs");
    assert!(checked.status.success(), "{}", text(&checked.stdout));

    install(&drafted, &drafts);
    feed(&drafted, "transactions", &files);
    let summary = drafted.drain().await;
    assert!(summary.graceful && summary.stuck == 0, "{summary:?}");
    assert_eq!(common::count(&drafted.config.failed("transactions")), 0);
    assert_eq!(transactions(&drafted), expected);
    let amount_type = testkit::pg::psql(
        &drafted.db.url,
        "SELECT format_type(atttypid, NULL) FROM pg_attribute
          WHERE attrelid = 'transactions'::regclass AND attname = 'amount'",
    )
    .expect("query runs");
    assert_eq!(amount_type.trim(), "numeric");
}

#[test]
fn samples_that_disagree_about_a_field_are_reported_not_guessed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = dir.path().join("samples");
    std::fs::create_dir_all(&samples).expect("mkdir");
    let event = |n: u32, amount: &str| {
        format!(
            r#"{{"metadata": {{"type": "merchant", "event_at": "2026-11-22 02:58:1{n}", "event_id": "{}"}},
                "payload": {{"id": {n}, "name": "shop {n}", "amount": {amount}}}}}"#,
            common::event_id(n)
        )
    };
    std::fs::write(samples.join("a.json"), event(1, "12.5")).expect("write");
    std::fs::write(samples.join("b.json"), event(2, "3")).expect("write");
    std::fs::write(samples.join("c.json"), event(3, r#""twelve""#)).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["infer", "--type", "merchants", "samples"])
        .current_dir(dir.path())
        .env("ETL_TYPES_DIR", dir.path().join("types"))
        .output()
        .expect("etl runs");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}{}", text(&out.stderr));
    let conflict = report
        .lines()
        .find(|l| l.starts_with("conflict: "))
        .unwrap_or_else(|| panic!("a conflict line: {report}"));
    for said in [
        "/payload/amount",
        "decimal in samples/a.json",
        "integer in samples/b.json",
        "string in samples/c.json",
    ] {
        assert!(conflict.contains(said), "{said:?} not in {conflict}");
    }
    assert!(report.contains("nothing drafted"), "{report}");
    assert!(
        !dir.path().join("drafts").exists(),
        "no draft from a conflict"
    );

    // Without a field that can be the key, it names the candidates and --key, exit 2.
    let keyless = dir.path().join("keyless");
    std::fs::create_dir_all(&keyless).expect("mkdir");
    for (name, n) in [("a.json", 1), ("b.json", 2)] {
        let same = event(1, "1.5").replace("\"event_id\": \"", &format!("\"event_id\": \"{n}"));
        std::fs::write(keyless.join(name), same).expect("write");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["infer", "--type", "merchants", "keyless"])
        .current_dir(dir.path())
        .output()
        .expect("etl runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let error = text(&out.stderr);
    assert!(
        error.contains("share (id, event_at)") && error.contains("--key"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_cards_draft_names_the_missing_owner_and_loads_like_the_shipped_schema() {
    // Under the shipped schema.
    let shipped = Env::new();
    common::copy_samples(&shipped);
    shipped.drain().await;
    let outcome = |env: &Env| {
        let failed: Vec<(String, String)> = event_files(&env.config.failed("cards"))
            .iter()
            .map(|file| {
                let name = file
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                let reason = std::fs::read_to_string(common::finished(
                    &env.config.failed("cards"),
                    format!("{name}.error.json"),
                ))
                .expect("a reason file");
                let reason: Value = serde_json::from_str(&reason).expect("JSON reason");
                (name, reason["code"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        (env.dump(), failed)
    };
    let expected = outcome(&shipped);
    assert_eq!(expected.1.len(), 2, "the two owner-less cards fail");

    // The draft, from the reference producers' files.
    let mut drafted = Env::new();
    project(&mut drafted, false);
    let drafts = drafted.dir.path().join("drafts/cards");
    let cards = Path::new(SAMPLES).join("cards");
    let out = infer(
        &drafted,
        &[
            "--type",
            "cards",
            "--out",
            drafts.to_str().expect("UTF-8 path"),
            cards.to_str().expect("UTF-8 path"),
        ],
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("optional: user_id (missing from 2 of 8 samples (25%))"),
        "{report}"
    );

    // user_id made required in the draft: in the schema's required list, and not optional.
    let schema_path = drafts.join("cards.schema.json");
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("draft")).expect("JSON");
    schema["properties"]["payload"]["required"]
        .as_array_mut()
        .expect("a required list")
        .push("user_id".into());
    std::fs::write(
        &schema_path,
        serde_json::to_string_pretty(&schema).expect("JSON"),
    )
    .expect("write");
    let toml_path = drafts.join("cards.toml");
    let declaration = std::fs::read_to_string(&toml_path).expect("draft");
    assert!(declaration.contains(", optional = true"), "{declaration}");
    std::fs::write(&toml_path, declaration.replace(", optional = true", "")).expect("write");

    // Installed over the shipped cards (the shipped migration already made its table, which
    // the start-up check finds in agreement with the draft: its migration is not needed).
    for file in ["cards.schema.json", "cards.toml"] {
        let to = if file.ends_with(".toml") {
            &drafted.config.types_dir
        } else {
            &drafted.config.schemas_dir
        };
        std::fs::copy(drafts.join(file), to.join(file)).expect("install");
    }
    common::copy_samples(&drafted);
    drafted.drain().await;
    let got = outcome(&drafted);
    assert_eq!(got, expected);
    assert!(
        got.1.iter().all(|(_, code)| code == "schema"),
        "{:?}",
        got.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_to_cards_through_types_plan_loads_beside_old_rows() {
    let mut env = Env::new();
    let root = project(&mut env, false);
    common::copy_samples(&env);
    env.drain().await;
    let old_rows = env.scalar("SELECT count(*) FROM cards");
    assert!(old_rows > 0);

    // Nothing to plan while the declarations and tables agree.
    let agree = env.run_etl(&["types", "plan"]);
    assert!(agree.status.success(), "{}", text(&agree.stderr));
    assert!(text(&agree.stdout).contains("no migration needed"));

    // A field added to the declaration.
    let declaration_path = env.config.types_dir.join("cards.toml");
    let declaration = std::fs::read_to_string(&declaration_path).expect("cards.toml");
    let with_colour = declaration.replace(
        r#"    { name = "active",          type = "boolean" },"#,
        r#"    { name = "active",          type = "boolean" },
    { name = "colour",          type = "text", optional = true },"#,
    );
    assert_ne!(with_colour, declaration);
    std::fs::write(&declaration_path, &with_colour).expect("write");

    // Refused changes name their reason and plan nothing.
    let narrowed = with_colour.replace(
        r#"{ name = "id",              type = "bigint" }"#,
        r#"{ name = "id",              type = "integer" }"#,
    );
    std::fs::write(&declaration_path, &narrowed).expect("write");
    let refused = env.run_etl(&["types", "plan"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stdout).contains("narrows it to integer"),
        "{}",
        text(&refused.stdout)
    );
    let dropped = with_colour.replace("    { name = \"created_by_name\", type = \"text\" },\n", "");
    std::fs::write(&declaration_path, &dropped).expect("write");
    let refused = env.run_etl(&["types", "plan"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stdout).contains("cards.created_by_name is no longer declared"),
        "{}",
        text(&refused.stdout)
    );
    std::fs::write(&declaration_path, &with_colour).expect("write");

    // The plan, written as a file to review, then installed and applied.
    let review = root.join("review");
    let planned = env.run_etl(&["types", "plan", "--out", review.to_str().expect("UTF-8")]);
    let plan = text(&planned.stdout);
    assert!(planned.status.success(), "{plan}{}", text(&planned.stderr));
    assert!(
        plan.contains(r#"ALTER TABLE "cards" ADD COLUMN "colour" text;"#),
        "{plan}"
    );
    let file = review.join("0006_update_cards.sql");
    assert!(file.is_file(), "{plan}");
    std::fs::copy(
        &file,
        env.config
            .database
            .migrations_dir
            .join("0006_update_cards.sql"),
    )
    .expect("install");
    let migrated = env.run_etl(&["migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));

    // New events with and without the field load; the old rows keep NULL.
    let mut with = common::card(900, 9_001);
    with["payload"]["colour"] = "teal".into();
    let without = common::card(901, 9_002);
    for (name, doc) in [("with.json", &with), ("without.json", &without)] {
        std::fs::write(env.inbox("cards").join(name), doc.to_string()).expect("write");
    }
    env.drain().await;
    assert_eq!(
        common::count(&env.config.failed("cards")),
        2,
        "only the owner-less samples"
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id = 900 AND colour = 'teal'"),
        1
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id = 901 AND colour IS NULL"),
        1
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id NOT IN (900, 901) AND colour IS NULL"),
        old_rows
    );
    let agree = env.run_etl(&["types", "plan"]);
    assert!(text(&agree.stdout).contains("no migration needed"));
}

#[test]
fn drafts_never_go_into_the_live_folders_and_a_plan_waits_only_within_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = Path::new(SAMPLES).join("cards");
    let etl = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_etl"));
        cmd.current_dir(dir.path())
            .env("ETL_TYPES_DIR", dir.path().join("types"))
            .env("ETL_SCHEMAS_DIR", dir.path().join("schemas"))
            .env("ETL_MIGRATIONS_DIR", dir.path().join("db/migrations"));
        cmd
    };
    for live in ["types", "schemas", "db/migrations"] {
        std::fs::create_dir_all(dir.path().join(live)).expect("mkdir");
        let out = etl()
            .args(["infer", "--type", "cards", "--out", live])
            .arg(&samples)
            .output()
            .expect("etl runs");
        assert_eq!(out.status.code(), Some(2), "--out {live}");
        let error = text(&out.stderr);
        assert!(error.contains("daemon reads at start-up"), "{error}");
        let entries = std::fs::read_dir(dir.path().join(live))
            .expect("folder")
            .count();
        assert_eq!(entries, 0, "nothing written into {live}");
    }

    // No warehouse answers: `types plan` gives up after --wait, with exit 1.
    let closed = common::free_addr();
    let started = std::time::Instant::now();
    let out = etl()
        .args(["--wait", "1", "types", "plan"])
        .env(
            "ETL_TYPES_DIR",
            Path::new(SAMPLES).join("../../../../types"),
        )
        .env(
            "ETL_SCHEMAS_DIR",
            Path::new(SAMPLES).join("../../../../schemas"),
        )
        .env(
            "ETL_DATABASE_URL",
            format!("postgres://postgres@{closed}/dwh"),
        )
        .output()
        .expect("etl runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("gave up after"), "{said}");
}
