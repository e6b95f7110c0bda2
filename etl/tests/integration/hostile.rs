//! Hostile input: whatever lands in the inbox, the daemon neither crashes, hangs, loses a valid
//! event next to it, nor touches what is not its own. Every bad file goes to `failed/<type>/`
//! with a reason file that says what is wrong; every odd directory entry stays where it is.

use crate::common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{card, event_id, Kind};
use common::{event_files, files_in, oracle, wait_until, Env};
use serde_json::{json, Value};

/// Long enough for a drain of a few dozen files on a loaded machine; a hang exceeds it.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

const SQL: &str = "'); DROP TABLE cards; --";

/// `etl run --drain` with no settle window, so truncated files are rejected at once.
fn drain_without_settle(env: &Env) -> common::Daemon {
    env.spawn_etl(
        "drain",
        &["run", "--drain"],
        &[("ETL_SETTLE_MS", "0".to_owned())],
    )
}

fn user(id: i64, n: u32) -> Value {
    json!({
        "metadata": {"type": "user", "event_at": "2024-05-01 12:00:03", "event_id": event_id(n)},
        "payload": {"id": id, "name": "A B", "address": "1 Main St\nTown, ST 00001",
                    "job": "Tester", "score": 0.5}
    })
}

/// `doc` with the value at `pointer` replaced (or, with `None`, removed).
fn with(mut doc: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let object = doc
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent object");
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    doc
}

fn text(doc: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(doc).expect("serializable")
}

/// One hostile file: where it goes, its name and bytes, and a word its reason must contain.
struct Case {
    kind: Kind,
    name: &'static str,
    bytes: Vec<u8>,
    keyword: &'static str,
}

fn case(kind: Kind, name: &'static str, bytes: impl Into<Vec<u8>>, keyword: &'static str) -> Case {
    Case {
        kind,
        name,
        bytes: bytes.into(),
        keyword,
    }
}

/// Every invalid file the issue lists, and a few more.
fn hostile_cases() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = with(
        card(900, 900),
        "/payload/created_by_name",
        Some(json!("x".repeat(1_100_000))),
    );
    vec![
        case("cards", "empty.json", "", "empty"),
        case("users", "blank.json", " \n\t \n", "empty"),
        case(
            "cards",
            "truncated.json",
            &text(&card(901, 901))[..60],
            "EOF",
        ),
        case(
            "cards",
            "not-utf8.json",
            b"{\"payload\": \"\xff\xfe\xfd\"}".to_vec(),
            "UTF-8",
        ),
        case("cards", "array.json", "[1, 2, 3]", "object"),
        case("users", "array.json", "[]", "object"),
        case("cards", "null.json", "null", "object"),
        case("cards", "string.json", "\"just a string\"", "object"),
        case("cards", "deep.json", deep, "recursion limit"),
        case("cards", "huge.json", text(&huge), "max_file_bytes"),
        case(
            "cards",
            "wrong-type.json",
            text(&with(card(902, 902), "/payload/id", Some(json!("five")))),
            "/payload/id",
        ),
        case(
            "cards",
            "active-yes.json",
            text(&with(card(903, 903), "/payload/active", Some(json!("yes")))),
            "boolean",
        ),
        case(
            "users",
            "score-text.json",
            text(&with(user(904, 904), "/payload/score", Some(json!("high")))),
            "number",
        ),
        case(
            "cards",
            "impossible-date.json",
            text(&with(
                card(905, 905),
                "/payload/created_at",
                Some(json!("2024-02-30 11:58:40")),
            )),
            "2024-02-30",
        ),
        case(
            "users",
            "hour-25.json",
            text(&with(
                user(906, 906),
                "/metadata/event_at",
                Some(json!("2024-05-01 25:00:00")),
            )),
            "2024-05-01 25:00:00",
        ),
        case(
            "cards",
            "bad-event-id.json",
            text(&with(
                card(907, 907),
                "/metadata/event_id",
                Some(json!("not-a-uuid")),
            )),
            "/metadata/event_id",
        ),
        case(
            "cards",
            "user-in-cards.json",
            text(&user(908, 908)),
            "folder",
        ),
        case(
            "users",
            "card-in-users.json",
            text(&card(909, 909)),
            "folder",
        ),
        case(
            "cards",
            "nul.json",
            text(&with(
                card(910, 910),
                "/payload/created_by_name",
                Some(json!("A\u{0}B")),
            )),
            "NUL",
        ),
        case("cards", "negative-id.json", text(&card(-1, 911)), "minimum"),
        case(
            "cards",
            "id-beyond-i64.json",
            text(&with(
                card(0, 912),
                "/payload/id",
                Some(json!(9_223_372_036_854_775_808u64)),
            )),
            "maximum",
        ),
        case(
            "users",
            "no-name.json",
            text(&with(user(913, 913), "/payload/name", None)),
            "required",
        ),
        case(
            "cards",
            "no-metadata.json",
            text(&with(card(914, 914), "/metadata", None)),
            "metadata",
        ),
    ]
}

/// Checks that `case` is in `failed/` with a reason file that explains it.
fn assert_rejected(env: &Env, case: &Case) {
    let failed = env.config.failed(case.kind);
    let name = case.name;
    assert!(
        !env.inbox(case.kind).join(name).exists(),
        "{name} still in the inbox"
    );
    assert!(
        common::finished(&failed, name).exists(),
        "{name} not in failed/"
    );
    let sidecar = common::finished(&failed, etl::layout::sidecar_name(name));
    let record: Value = serde_json::from_str(
        &fs::read_to_string(&sidecar).unwrap_or_else(|e| panic!("{name}: no reason file: {e}")),
    )
    .expect("reason file is JSON");
    assert_eq!(record["file"], name);
    assert_eq!(record["type"], case.kind);
    assert!(
        record["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{record}"
    );
    assert!(record["rejected_at"].is_string(), "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    let located = record["instance_path"].as_str().unwrap_or_default();
    assert!(
        reason.contains(case.keyword) || located == case.keyword,
        "{name}: reason {reason:?} (at {located:?}) does not mention {:?}",
        case.keyword
    );
}

/// The reason file of the rejected file `name` of type `kind`, parsed.
fn reason_record(env: &Env, kind: Kind, name: &str) -> Value {
    let sidecar = common::finished(&env.config.failed(kind), etl::layout::sidecar_name(name));
    let text = fs::read_to_string(&sidecar).unwrap_or_else(|e| panic!("{name}: no reason: {e}"));
    serde_json::from_str(&text).expect("reason file is JSON")
}

/// Things in an inbox that are not event files: each must be left exactly as it is.
struct Bystanders {
    valid_target: PathBuf,
    outside_target: PathBuf,
}

const OUTSIDE: &str = "root:x:0:0:root:/root:/bin/bash\n";

fn plant_bystanders(env: &Env) -> Bystanders {
    let cards = env.inbox("cards");
    let elsewhere = env.dir.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).expect("mkdir");
    let valid_target = elsewhere.join("valid-card.json");
    fs::write(&valid_target, text(&card(950, 950))).expect("write");
    let outside_target = elsewhere.join("passwd");
    fs::write(&outside_target, OUTSIDE).expect("write");

    std::os::unix::fs::symlink(&valid_target, cards.join("link-to-valid.json")).expect("symlink");
    std::os::unix::fs::symlink(&outside_target, cards.join("passwd.json")).expect("symlink");
    std::os::unix::fs::symlink(elsewhere.join("missing"), cards.join("dangling.json"))
        .expect("symlink");
    mkfifo(&cards.join("pipe.json"));
    fs::create_dir(cards.join("folder.json")).expect("mkdir");
    fs::write(
        cards.join("folder.json").join("inner.json"),
        text(&card(951, 951)),
    )
    .expect("write");
    fs::write(cards.join("notes.txt"), text(&card(952, 952))).expect("write");
    fs::write(cards.join(".hidden.json"), text(&card(953, 953))).expect("write");
    fs::write(cards.join("event.json.tmp"), text(&card(954, 954))).expect("write");
    fs::write(cards.join("__id_counter"), "57").expect("write");
    Bystanders {
        valid_target,
        outside_target,
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
}

fn assert_bystanders_untouched(env: &Env, bystanders: &Bystanders) {
    let cards = env.inbox("cards");
    for (link, target) in [
        ("link-to-valid.json", &bystanders.valid_target),
        ("passwd.json", &bystanders.outside_target),
    ] {
        let meta = fs::symlink_metadata(cards.join(link)).expect("symlink still in the inbox");
        assert!(
            meta.file_type().is_symlink(),
            "{link} is no longer a symlink"
        );
        assert_eq!(&fs::read_link(cards.join(link)).expect("readlink"), target);
    }
    assert!(fs::symlink_metadata(cards.join("dangling.json")).is_ok());
    assert_eq!(
        fs::read(&bystanders.valid_target).expect("target"),
        text(&card(950, 950))
    );
    assert_eq!(
        fs::read_to_string(&bystanders.outside_target).expect("target"),
        OUTSIDE
    );
    let pipe = fs::symlink_metadata(cards.join("pipe.json")).expect("FIFO still there");
    assert!(pipe.file_type().is_fifo());
    assert!(cards.join("folder.json").join("inner.json").is_file());
    for name in [
        "notes.txt",
        ".hidden.json",
        "event.json.tmp",
        "__id_counter",
    ] {
        assert!(cards.join(name).is_file(), "{name} was moved");
    }
    for stage in ["done", "failed"] {
        for name in [
            "link-to-valid.json",
            "passwd.json",
            "dangling.json",
            "pipe.json",
        ] {
            let moved = common::finished(&env.config.events_dir().join(stage).join("cards"), name);
            assert!(
                fs::symlink_metadata(moved).is_err(),
                "{name} went to {stage}/"
            );
        }
    }
    // None of the bystanders' events reached the warehouse.
    let loaded = testkit::pg::psql(
        &env.db.url,
        "SELECT count(*) FROM cards WHERE id BETWEEN 950 AND 954",
    )
    .expect("query");
    assert_eq!(loaded, "0");
}

/// A valid event under a file name that is not UTF-8.
fn non_utf8_name() -> &'static OsStr {
    OsStr::from_bytes(b"caf\xe9-valid.json")
}

#[test]
fn every_hostile_file_is_rejected_with_a_reason_and_valid_neighbours_load() {
    let env = Env::new();
    common::copy_samples(&env);
    let sql_card = with(card(960, 960), "/payload/created_by_name", Some(json!(SQL)));
    fs::write(env.inbox("cards").join("sql.json"), text(&sql_card)).expect("write");
    let odd_name = env.inbox("cards").join(non_utf8_name());
    fs::write(&odd_name, text(&card(961, 961))).expect("write");
    let mut valid = files_in(&env, "inbox"); // the samples and sql.json
    valid.push(odd_name);
    let expected = oracle(&valid);
    // The samples' card 15 has no user_id: the reference's 'bad' events, rejected too.
    let ownerless = common::ownerless_cards(&valid);
    assert_eq!(ownerless, 2);
    let cases = hostile_cases();
    for case in &cases {
        fs::write(env.inbox(case.kind).join(case.name), &case.bytes).expect("write");
    }
    let bystanders = plant_bystanders(&env);

    let mut etl = drain_without_settle(&env);
    let status = etl.exit_within(DRAIN_LIMIT);
    assert!(status.success(), "{}", etl.log_tail(20));

    for case in &cases {
        assert_rejected(&env, case);
        assert!(
            etl.rejection_line(case.name).is_some(),
            "no WARN line for {}",
            case.name
        );
    }
    assert_eq!(files_in(&env, "failed").len(), cases.len() + ownerless);
    assert_eq!(env.dump(), expected, "the valid files did not all load");
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        (valid.len() - ownerless) as i64
    );
    let stored = testkit::pg::psql(
        &env.db.url,
        "SELECT created_by_name FROM cards WHERE id = 960",
    )
    .expect("query");
    assert_eq!(stored, SQL, "SQL-looking text is stored verbatim");
    for table in ["events", "users", "cards"] {
        let exists = testkit::pg::psql(
            &env.db.url,
            &format!("SELECT to_regclass('{table}') IS NOT NULL"),
        )
        .expect("query");
        assert_eq!(exists, "t", "table {table} is gone");
    }
    assert!(common::finished(&env.config.done("cards"), non_utf8_name()).is_file());
    assert_bystanders_untouched(&env, &bystanders);
    assert_eq!(etl.lines_at("ERROR"), Vec::<Value>::new());
}

/// The watcher reports entries moved into the inbox; a symlink, FIFO or directory moved in is
/// still left alone, and the daemon goes on with the next valid file.
#[test]
fn odd_entries_moved_in_while_following_are_left_alone() {
    let env = Env::new();
    // Built in a staging folder of the same file system, then renamed in: a moved-in event each.
    let staging = env.dir.path().join("staging");
    fs::create_dir_all(&staging).expect("mkdir");
    let target = env.dir.path().join("valid-card.json");
    fs::write(&target, text(&card(970, 970))).expect("write");
    std::os::unix::fs::symlink(&target, staging.join("link.json")).expect("symlink");
    mkfifo(&staging.join("pipe.json"));
    fs::create_dir(staging.join("folder.json")).expect("mkdir");
    fs::write(staging.join("valid.json"), text(&card(971, 971))).expect("write");

    let addr = common::free_addr();
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            ("ETL_RESCAN_INTERVAL_SECS", "1".to_owned()),
            ("ETL_HTTP_ADDR", addr.clone()),
        ],
    );
    assert!(etl.wait_for_log("pipeline started", Duration::from_secs(60)));
    let cards = env.inbox("cards");
    for name in ["link.json", "pipe.json", "folder.json", "valid.json"] {
        fs::rename(staging.join(name), cards.join(name)).expect("move in");
    }
    let done = common::finished(&env.config.done("cards"), "valid.json");
    assert!(
        wait_until(Duration::from_secs(60), || done.exists()),
        "{}",
        etl.log_tail(20)
    );
    // Two more scans of the whole inbox have had the chance to do something wrong with the
    // others: each scan counts the files of a folder that names no type into its gauge, so a
    // count that follows the files put there proves a scan after them.
    let marker = cards.parent().expect("the inbox").join("scan-marker");
    fs::create_dir(&marker).expect("mkdir");
    for n in 1..=2 {
        fs::write(marker.join(format!("{n}.json")), "{}").expect("write");
        let files = |(_, body): (u16, String)| {
            body.lines()
                .find(|l| l.starts_with("etl_undeclared_files{folder=\"scan-marker\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        assert!(
            wait_until(Duration::from_secs(30), || {
                common::try_get(&addr, "/metrics").and_then(files) == Some(f64::from(n))
            }),
            "no scan counted {n} file(s) in scan-marker/: {}",
            etl.log_tail(20)
        );
    }
    assert!(etl.is_running());
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(60)).success());

    assert!(fs::symlink_metadata(cards.join("link.json"))
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(cards.join("pipe.json"))
        .expect("pipe")
        .file_type()
        .is_fifo());
    assert!(cards.join("folder.json").is_dir());
    assert_eq!(fs::read(&target).expect("target"), text(&card(970, 970)));
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_eq!(env.scalar("SELECT count(*) FROM cards"), 1);
}

// ---------------------------------------------------------------------------------------------
// `etl check`
// ---------------------------------------------------------------------------------------------

/// `etl check` gives the daemon's verdict offline: one line per file with its reason.
#[test]
fn etl_check_prints_each_reason_and_exits_1_on_invalid_files() {
    let env = Env::new();
    let dir = env.dir.path().join("to-check").join("cards");
    fs::create_dir_all(&dir).expect("mkdir");
    let checked: Vec<Case> = hostile_cases()
        .into_iter()
        .filter(|c| c.kind == "cards" && c.name != "huge.json")
        .collect();
    let mut args = vec!["check".to_owned()];
    for case in &checked {
        let path = dir.join(case.name);
        fs::write(&path, &case.bytes).expect("write");
        args.push(path.display().to_string());
    }
    let valid = dir.join("valid.json");
    fs::write(&valid, text(&card(980, 980))).expect("write");
    args.push(valid.display().to_string());

    let output = env.etl().args(&args).output().expect("etl check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for case in &checked {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("/{}:", case.name)))
            .unwrap_or_else(|| panic!("no line for {}:\n{stdout}", case.name));
        assert!(line.starts_with("invalid"), "{line}");
        assert!(line.contains(case.keyword), "{line}");
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.ends_with("valid.json")),
        "{stdout}"
    );
}

/// `etl check` accepts every reference sample but the two versions of card 15, which has no
/// `user_id`: the reference producer's 'bad' events, refused with a reason naming the field.
#[test]
fn etl_check_accepts_the_reference_samples_but_the_ownerless_card() {
    let env = Env::new();
    let mut args = vec!["check".to_owned()];
    for kind in common::TYPES {
        for file in event_files(&Path::new(common::SAMPLES).join(kind)) {
            args.push(file.display().to_string());
        }
    }
    assert!(args.len() > 10, "samples found: {args:?}");
    let output = env.etl().args(&args).output().expect("etl check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let invalid: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("invalid"))
        .collect();
    assert_eq!(invalid.len(), 2, "{stdout}");
    assert!(invalid.iter().all(|l| l.contains("user_id")), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        args.len() - 3
    );
}

/// Outside a `users/` or `cards/` folder `etl check` reads the file to learn its type from
/// `metadata.type`; it must not block on a FIFO (nor follow a symlink or read without limit).
#[test]

fn etl_check_never_hangs_on_a_fifo() {
    let env = Env::new();
    let fifo = env.dir.path().join("pipe.json");
    mkfifo(&fifo);
    let mut child = env
        .etl()
        .arg("check")
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etl check runs");
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().expect("wait").is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(exited, "etl check blocked on a FIFO");
    let output = child.wait_with_output().expect("output");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("not a regular file"));
}

/// A name of 255 bytes is a valid file name, but `<name>.error.json` is not: the rejection must
/// still happen (and a drain still end) rather than leave the file in the inbox for ever.
#[test]
fn a_bad_file_with_the_longest_possible_name_is_still_rejected() {
    let env = Env::new();
    let name = format!("{}.json", "a".repeat(250));
    fs::write(env.inbox("cards").join(&name), "{").expect("write");
    fs::write(env.inbox("cards").join("valid.json"), text(&card(990, 990))).expect("write");

    let mut etl = drain_without_settle(&env);
    let status = etl.exit_within(DRAIN_LIMIT);
    assert!(status.success(), "{}", etl.log_tail(20));
    let failed = env.config.failed("cards");
    assert!(common::finished(&failed, &name).is_file());
    assert!(!env.inbox("cards").join(&name).exists());
    let sidecar = common::finished(&failed, etl::layout::sidecar_name(&name));
    let record: Value =
        serde_json::from_str(&fs::read_to_string(sidecar).expect("reason file")).expect("JSON");
    assert_eq!(record["file"], name.as_str());
    assert_eq!(env.scalar("SELECT count(*) FROM cards"), 1);
}

/// A reason quotes the offending value; a huge value must not make a huge reason (the WARN
/// line and the reason file would repeat up to `max_file_bytes` of hostile input each time).
#[test]
fn a_huge_offending_value_gives_a_short_reason() {
    let env = Env::new();
    let big = "9".repeat(500_000);
    let cases = [
        (
            "huge-wrong-type.json",
            with(card(995, 995), "/payload/id", Some(json!(big))),
        ),
        (
            "huge-type.json",
            with(card(996, 996), "/metadata/type", Some(json!(big))),
        ),
        (
            "huge-array.json",
            with(
                card(997, 997),
                "/payload/active",
                Some(json!(vec![1; 100_000])),
            ),
        ),
    ];
    for (name, doc) in &cases {
        fs::write(env.inbox("cards").join(name), text(doc)).expect("write");
    }
    let mut etl = drain_without_settle(&env);
    assert!(etl.exit_within(DRAIN_LIMIT).success());
    for (name, _) in &cases {
        let record = reason_record(&env, "cards", name);
        let reason = record["reason"].as_str().expect("reason");
        assert!(
            reason.len() < 2_000,
            "{name}: reason of {} bytes",
            reason.len()
        );
        let line = etl.rejection_line(name).expect("WARN line").to_string();
        assert!(
            line.len() < 5_000,
            "{name}: log line of {} bytes",
            line.len()
        );
    }
}

/// A document whose object repeats a key is refused as `duplicate_key`, naming the key and its
/// object, whatever the depth, and neither of its values is loaded; `etl check` says the same.
/// A UTF-8 byte order mark before an otherwise valid document is ignored and the event loads.
#[test]
fn a_repeated_key_is_refused_by_name_and_a_byte_order_mark_is_ignored() {
    let env = Env::new();
    let card_text = |id: i64, n: u32| String::from_utf8(text(&card(id, n))).expect("UTF-8");
    // Two `payload` members: the first card would vanish without a word if the last one won.
    let first = card_text(970, 970);
    let second = card_text(971, 971);
    let payload_of = |doc: &str| {
        let value: Value = serde_json::from_str(doc).expect("JSON");
        value["payload"].to_string()
    };
    let two_payloads = format!(
        "{},\"payload\":{}}}",
        first.trim_end().trim_end_matches('}'),
        payload_of(&second)
    );
    // A repeated key deep inside the payload.
    let deep = card_text(972, 972).replacen(
        "\"active\": true",
        "\"active\": true, \"extra\": {\"tags\": [{\"x\": 1, \"x\": 2}]}",
        1,
    );
    assert_ne!(
        deep,
        card_text(972, 972),
        "the card has an `active` member to extend"
    );
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&text(&card(973, 973)));
    let inbox = env.inbox("cards");
    fs::write(inbox.join("two-payloads.json"), &two_payloads).expect("write");
    fs::write(inbox.join("deep-repeat.json"), &deep).expect("write");
    fs::write(inbox.join("bom.json"), &bom).expect("write");

    // `etl check` first, on the files where they are.
    let output = env
        .etl()
        .arg("check")
        .args(["two-payloads.json", "deep-repeat.json", "bom.json"].map(|n| inbox.join(n)))
        .output()
        .expect("etl check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}"))
            .to_owned()
    };
    assert!(line("two-payloads.json").starts_with("invalid"), "{stdout}");
    assert!(
        line("two-payloads.json").contains("has the key \"payload\" more than once"),
        "{stdout}"
    );
    assert!(
        line("deep-repeat.json").contains("/payload/extra/tags/0 has the key \"x\""),
        "{stdout}"
    );
    assert!(line("bom.json").starts_with("ok"), "{stdout}");

    let mut etl = drain_without_settle(&env);
    assert!(
        etl.exit_within(DRAIN_LIMIT).success(),
        "{}",
        etl.log_tail(20)
    );
    for (name, pointer, key) in [
        ("two-payloads.json", "", "payload"),
        ("deep-repeat.json", "/payload/extra/tags/0", "x"),
    ] {
        let record = reason_record(&env, "cards", name);
        assert_eq!(record["code"], "duplicate_key", "{record}");
        assert_eq!(record["instance_path"], pointer, "{record}");
        assert!(
            record["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("the key {key:?} more than once"))),
            "{record}"
        );
        let line = etl.rejection_line(name).expect("a WARN line");
        assert_eq!(line["code"], "duplicate_key", "{line}");
    }
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id IN (970, 971, 972)"),
        0,
        "no half-read document is loaded"
    );
    assert_eq!(env.scalar("SELECT count(*) FROM cards WHERE id = 973"), 1);
    assert!(common::finished(&env.config.done("cards"), "bom.json").is_file());
}

/// A readable log line's level, message and fields.
type LogLine = (String, String, Vec<(String, String)>);

/// One readable log line, split as a logfmt reader would: `<time> LEVEL message key=value …`.
/// Bare words before the first field are the message; after it, every token must be a field,
/// and a quoted value must end on the same line. Returns the level, message and fields.
fn parse_logfmt(line: &str) -> Result<LogLine, String> {
    let (time, rest) = line.split_once(' ').ok_or("no time")?;
    chrono::DateTime::parse_from_rfc3339(time).map_err(|e| format!("time {time:?}: {e}"))?;
    let rest = rest.trim_start();
    let (level, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return Err(format!("level {level:?}"));
    }
    let mut message = Vec::new();
    let mut fields = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if key_len > 0 && rest[key_len..].starts_with('=') {
            let key = rest[..key_len].to_owned();
            let after = &rest[key_len + 1..];
            let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err(format!("{key}: unterminated quote")),
                        Some((i, '"')) => break i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 'r')) => value.push('\r'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, 'u')) => {
                                let hex: String = chars
                                    .by_ref()
                                    .map(|(_, c)| c)
                                    .take_while(|c| *c != '}')
                                    .filter(|c| *c != '{')
                                    .collect();
                                let code =
                                    u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                                value.push(char::from_u32(code).ok_or("bad escape")?);
                            }
                            other => return Err(format!("{key}: bad escape {other:?}")),
                        },
                        Some((_, c)) => value.push(c),
                    }
                };
                (value, &quoted[end..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                let value = &after[..end];
                if value.is_empty() || value.contains(['"', '=']) {
                    return Err(format!("{key}: bare value {value:?}"));
                }
                (value.to_owned(), &after[end..])
            };
            if !(tail.is_empty() || tail.starts_with(' ')) {
                return Err(format!("{key}: junk after the value: {tail:?}"));
            }
            fields.push((key, value));
            rest = tail;
        } else {
            if !fields.is_empty() {
                return Err(format!("a bare word after the fields: {rest:?}"));
            }
            let end = rest.find(' ').unwrap_or(rest.len());
            message.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    Ok((level.to_owned(), message.join(" "), fields))
}

/// Every line the daemon logs in its readable format is one line of `<time> LEVEL message`
/// followed by logfmt fields, whatever the reasons and file names hold: quotes, `=`, spaces,
/// a newline in a file name, a key with a quote in it.
#[test]
fn every_readable_log_line_parses_as_logfmt_whatever_the_input_holds() {
    let env = Env::new();
    let inbox = env.inbox("cards");
    let weird_name = "we\"ird = name\nwith a line break.json";
    fs::write(inbox.join(weird_name), "{ not json").expect("write");
    let missing_owner = with(card(990, 990), "/payload/user_id", None);
    fs::write(inbox.join("owner=none.json"), text(&missing_owner)).expect("write");
    let odd_value = with(
        card(991, 991),
        "/payload/active",
        Some(json!("a \"quoted\" = value\nover two lines")),
    );
    fs::write(inbox.join("odd-value.json"), text(&odd_value)).expect("write");
    fs::write(
        inbox.join("odd-key.json"),
        r#"{"metadata": {}, "payload": {"k\"=\n": 1, "k\"=\n": 2}}"#,
    )
    .expect("write");

    let output = env
        .etl()
        .args(["--log-format", "text", "run", "--drain"])
        .env("ETL_SETTLE_MS", "0")
        .output()
        .expect("etl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let mut rejected = Vec::new();
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        let (level, message, fields) = parse_logfmt(line)
            .unwrap_or_else(|e| panic!("{e}: a line that is not logfmt:\n{line}"));
        if level == "WARN" && message == "rejected" {
            rejected.push(fields);
        }
    }
    assert_eq!(rejected.len(), 4, "{stdout}");
    let field = |fields: &[(String, String)], key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
    };
    // Each WARN line's fields give back exactly the file name and the reason file's reason.
    for name in [
        weird_name,
        "owner=none.json",
        "odd-value.json",
        "odd-key.json",
    ] {
        let fields = rejected
            .iter()
            .find(|f| field(f, "file").ends_with(name))
            .unwrap_or_else(|| panic!("no WARN line names {name:?}: {rejected:?}"));
        let record = reason_record(&env, "cards", name);
        assert_eq!(field(fields, "reason"), record["reason"], "{name}");
        assert_eq!(field(fields, "code"), record["code"], "{name}");
        assert_eq!(field(fields, "type"), "cards");
    }
}
