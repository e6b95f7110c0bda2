//! Beyond one machine: forwarders on separate data folders ("hosts") publish to a real
//! nats-server (JetStream, started by `testkit::nats`), and `etl run --source jetstream`
//! replicas load the stream into the warehouse. Every fault ends in the oracle with nothing
//! lost, and is shown to have bitten by the broker's own numbers (its consumer's redelivery
//! count, its stream's sequence), which survive a killed process.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{event_files, oracle, wait_until, Daemon, Env};
use serde_json::Value;

const STREAM: &str = "EVENTS";
const CONSUMER: &str = "etl";

/// A producer host: its own data folder and its `etl forward`.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new(env: &Env, name: &str) -> Host {
        let dir = env.dir.path().join(name);
        for stage in ["inbox", "done", "failed"] {
            for kind in common::TYPES {
                std::fs::create_dir_all(dir.join("events").join(stage).join(kind)).expect("mkdir");
            }
        }
        Host { dir }
    }

    fn events(&self, stage: &str) -> PathBuf {
        self.dir.join("events").join(stage)
    }

    /// Event files in `stage` for every type.
    fn files(&self, stage: &str) -> Vec<PathBuf> {
        common::TYPES
            .iter()
            .flat_map(|kind| event_files(&self.events(stage).join(kind)))
            .collect()
    }

    /// Writes a producer backlog straight into this host's inbox (dotfile + rename, as the
    /// producers do); returns the files.
    fn backlog(&self, users: usize, cards: usize, seed: u64) -> Vec<PathBuf> {
        services::generate_backlog(&self.events("inbox"), users, cards, seed).expect("backlog");
        self.files("inbox")
    }
}

/// The settings every process of a test shares: the broker, a short ack wait (so that
/// redeliveries happen within the test), no settle window (files are delivered atomically).
fn broker_vars(server: &testkit::nats::Server, ack_wait_secs: u64) -> Vec<(&'static str, String)> {
    vec![
        ("ETL_NATS_URL", server.url()),
        ("ETL_NATS_ACK_WAIT_SECS", ack_wait_secs.to_string()),
        ("ETL_SETTLE_MS", "0".into()),
        ("ETL_RESCAN_INTERVAL_SECS", "1".into()),
        ("ETL_MAX_RETRY_BACKOFF_MS", "500".into()),
    ]
}

fn with(
    vars: &[(&'static str, String)],
    more: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut all = vars.to_vec();
    all.extend_from_slice(more);
    all
}

fn forward(env: &Env, host: &Host, vars: &[(&'static str, String)], log: &str) -> Daemon {
    let vars = with(vars, &[("ETL_DATA_DIR", host.dir.display().to_string())]);
    env.spawn_etl(log, &["forward"], &vars)
}

fn replica(env: &Env, name: &str, vars: &[(&'static str, String)]) -> Daemon {
    let dir = env.dir.path().join(name);
    let vars = with(vars, &[("ETL_DATA_DIR", dir.display().to_string())]);
    env.spawn_etl(name, &["run", "--source", "jetstream"], &vars)
}

/// Files a test expects to load: the valid ones (the ownerless cards are rejected by the
/// forwarders, into their own failed/).
fn valid(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("readable");
            let doc: Value = serde_json::from_str(&text).expect("JSON");
            !common::is_ownerless_card(&doc)
        })
        .cloned()
        .collect()
}

/// The usual test: a database, a broker, a host with a valid backlog of `users` user events and
/// `cards` card events in its inbox, and the shared settings with an ack wait of `ack_wait`
/// seconds.
struct Case {
    env: Env,
    server: testkit::nats::Server,
    vars: Vec<(&'static str, String)>,
    host: Host,
    files: Vec<PathBuf>,
}

impl Case {
    fn new(ack_wait: u64, users: usize, cards: usize, seed: u64) -> Case {
        let env = Env::new();
        let server = testkit::nats::Server::start();
        let vars = broker_vars(&server, ack_wait);
        let host = Host::new(&env, "host");
        let files = common::valid_backlog(&host.events("inbox"), users, cards, seed);
        Case {
            env,
            server,
            vars,
            host,
            files,
        }
    }
}

/// Inbox files moved aside, to arrive later (during a fault).
struct Parked {
    dir: PathBuf,
}

impl Parked {
    fn away(env: &Env, files: &[PathBuf]) -> Parked {
        let dir = env.dir.path().join("parked");
        for file in files {
            std::fs::create_dir_all(dir.join(folder(file))).expect("mkdir");
            std::fs::rename(file, dir.join(folder(file)).join(name(file))).expect("park");
        }
        Parked { dir }
    }

    /// Puts them back where they were, each written aside then renamed, as producers do.
    fn deliver(&self, files: &[PathBuf]) {
        for file in files {
            let tmp = file.with_file_name(".parked.tmp");
            std::fs::copy(self.dir.join(folder(file)).join(name(file)), &tmp).expect("copy");
            std::fs::rename(&tmp, file).expect("deliver");
        }
    }
}

/// The type folder a file is in, and its name.
fn folder(file: &std::path::Path) -> &std::ffi::OsStr {
    file.parent()
        .and_then(|p| p.file_name())
        .expect("a type folder")
}

fn name(file: &std::path::Path) -> &std::ffi::OsStr {
    file.file_name().expect("a file name")
}

/// `SELECT count(*)`-like `sql` on `url`, or -1 while it cannot run (no replica has migrated
/// the database yet).
fn count(url: &str, sql: &str) -> i64 {
    testkit::pg::psql(url, sql)
        .ok()
        .and_then(|out| out.trim().parse().ok())
        .unwrap_or(-1)
}

/// Waits until every host's inbox is empty and the warehouse holds `events` events, with
/// nothing left in the stream for the consumer.
fn settled(
    env: &Env,
    server: &dyn Broker,
    hosts: &[&Host],
    events: usize,
    limit: Duration,
) -> bool {
    let url = env.config.database.url.clone();
    wait_until(limit, || {
        hosts.iter().all(|h| h.files("inbox").is_empty())
            && count(&url, "SELECT count(*) FROM events") == events as i64
            && server
                .consumer_info()
                .is_some_and(|c| c.num_pending == 0 && c.num_ack_pending == 0)
    })
}

/// A single server or a cluster, as `settled` reads it: the broker's own numbers.
trait Broker {
    fn consumer_info(&self) -> Option<testkit::nats::jsz::ConsumerInfo>;
}

impl Broker for testkit::nats::Server {
    fn consumer_info(&self) -> Option<testkit::nats::jsz::ConsumerInfo> {
        self.consumer(STREAM, CONSUMER)
    }
}

impl Broker for testkit::nats::Cluster {
    fn consumer_info(&self) -> Option<testkit::nats::jsz::ConsumerInfo> {
        self.consumer(STREAM, CONSUMER)
    }
}

/// Every done/ file's event id is in `events`; the tables equal the oracle of those files.
fn assert_loaded(env: &Env, hosts: &[&Host], expected: &[PathBuf]) {
    let mut done: Vec<PathBuf> = hosts.iter().flat_map(|h| h.files("done")).collect();
    done.sort();
    assert_eq!(
        done.len(),
        expected.len(),
        "every valid file is in a done/ folder"
    );
    let url = &env.config.database.url;
    let committed = common::committed_event_ids(url);
    for file in &done {
        let id = common::event_id_of(file);
        assert!(committed.contains(&id), "{} was lost", file.display());
    }
    assert_eq!(common::dump_at(url), oracle(&done));
    for host in hosts {
        assert!(
            host.files("inbox").is_empty(),
            "{} inbox not empty",
            host.dir.display()
        );
    }
}

/// Waits for [`settled`] (failing with the daemons' last log lines if it does not come), then
/// checks [`assert_loaded`].
fn assert_settled_and_loaded(
    env: &Env,
    broker: &dyn Broker,
    host: &Host,
    files: &[PathBuf],
    limit: Duration,
    daemons: &[&Daemon],
) {
    if !settled(env, broker, &[host], files.len(), limit) {
        let logs: Vec<String> = daemons.iter().map(|d| d.log_tail(20)).collect();
        panic!(
            "not settled within {limit:?}: {} events of {}, {} files left in the inbox\n{}",
            count(&env.config.database.url, "SELECT count(*) FROM events"),
            files.len(),
            host.files("inbox").len(),
            logs.join("\n---\n")
        );
    }
    assert_loaded(env, &[host], files);
}

fn stop(mut daemon: Daemon, what: &str) {
    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_within(Duration::from_secs(30));
    assert!(
        status.success(),
        "{what} exited with {status}:\n{}",
        daemon.log_tail(30)
    );
}

#[test]
fn three_forwarders_and_two_replicas_load_the_oracle_with_producers_writing() {
    let env = Env::new();
    let server = testkit::nats::Server::start();
    let vars = broker_vars(&server, 5);
    let hosts: Vec<Host> = (0..3)
        .map(|i| Host::new(&env, &format!("host{i}")))
        .collect();
    let mut files = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        files.extend(host.backlog(100, 1_000, 40 + i as u64));
    }
    let replicas = [
        replica(&env, "replica-a", &vars),
        replica(&env, "replica-b", &vars),
    ];
    let forwarders: Vec<Daemon> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| forward(&env, h, &vars, &format!("forward-{i}")))
        .collect();
    // Producers keep writing on every host while the backlog flows.
    let producers: Vec<Daemon> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let state = h.dir.join("state").display().to_string();
            env.spawn_producer_into(
                "cards",
                &h.events("inbox"),
                &format!("cards-{i}"),
                &["--cycle-ms", "50-100", "--state-dir", &state],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for producer in producers {
        stop_producer(producer);
    }
    let all: Vec<PathBuf> = hosts
        .iter()
        .flat_map(|h| {
            let mut f = h.files("inbox");
            f.extend(h.files("done"));
            f.extend(h.files("failed"));
            f
        })
        .collect();
    assert!(
        all.len() > files.len(),
        "the producers wrote while the backlog flowed"
    );
    let expected = valid(&all);
    let host_refs: Vec<&Host> = hosts.iter().collect();
    assert!(
        settled(
            &env,
            &server,
            &host_refs,
            expected.len(),
            Duration::from_secs(90)
        ),
        "not settled: {} events of {}; replica log:\n{}",
        count(&env.config.database.url, "SELECT count(*) FROM events"),
        expected.len(),
        replicas[0].log_tail(20)
    );
    assert_loaded(&env, &host_refs, &expected);
    // Each ownerless card is in its host's failed/, with its reason, nowhere else.
    let failed: usize = hosts.iter().map(|h| h.files("failed").len()).sum();
    assert_eq!(failed, all.len() - expected.len());
    // Both replicas took part: the shared consumer spread the messages.
    for r in &replicas {
        assert!(
            r.log().contains("consuming from the broker"),
            "{}",
            r.log_tail(10)
        );
    }
    for f in forwarders {
        stop(f, "a forwarder");
    }
    for r in replicas {
        stop(r, "a replica");
    }
    // Nothing left in the stream: work-queue retention removed every acknowledged message.
    let stream = server.stream(STREAM).expect("the stream exists");
    assert_eq!(stream.state.messages, 0);
    assert_eq!(
        stream.state.last_seq as usize,
        expected.len(),
        "one message per event"
    );
}

fn stop_producer(mut producer: Daemon) {
    producer.signal(libc::SIGTERM);
    producer.exit_within(Duration::from_secs(10));
}

/// Publishes `bytes` straight to `subject` (a producer bypassing `etl forward`), waiting for
/// the broker's acknowledgement.
fn publish_raw(server: &testkit::nats::Server, subject: &str, bytes: &[u8]) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        js.publish(subject.to_owned(), bytes.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("the broker stores it");
    });
}

/// Publishes a host's whole inbox with `etl forward --drain` (the stream then holds it all).
fn forward_all(env: &Env, host: &Host, vars: &[(&'static str, String)]) {
    let vars = with(vars, &[("ETL_DATA_DIR", host.dir.display().to_string())]);
    let mut forwarder = env.spawn_etl("forward-drain", &["forward", "--drain"], &vars);
    let status = forwarder.exit_within(Duration::from_secs(60));
    assert!(status.success(), "{}", forwarder.log_tail(20));
    assert!(host.files("inbox").is_empty());
}

/// Deliveries the consumer made beyond one per message: redeliveries, by the broker's count
/// (the consumer sequence counts every delivery, the stream sequence every message).
fn redeliveries(server: &testkit::nats::Server) -> u64 {
    let consumer = server
        .consumer(STREAM, CONSUMER)
        .expect("the consumer exists");
    consumer
        .delivered
        .consumer_seq
        .saturating_sub(consumer.delivered.stream_seq)
}

#[test]
fn a_replica_killed_mid_stream_leaves_its_messages_to_the_other() {
    let Case {
        env,
        server,
        vars,
        host,
        files,
    } = Case::new(2, 200, 6_000, 7);
    forward_all(&env, &host, &vars);

    // The doomed replica SIGKILLs itself right after its 5th batch commits, before it
    // acknowledges that batch (see `etl/src/faults.rs`): the broker holds unacknowledged
    // messages of it at that moment whatever the machine's speed.
    let step = "load.committed:kill:5";
    let mut doomed = replica(
        &env,
        "replica-a",
        &with(
            &vars,
            &[
                ("ETL_BATCH_SIZE", "50".into()),
                ("FAULT_POINTS", step.into()),
            ],
        ),
    );
    let other = replica(
        &env,
        "replica-b",
        &with(&vars, &[("ETL_BATCH_SIZE", "50".into())]),
    );
    assert!(
        wait_until(Duration::from_secs(60), || count(
            &env.config.database.url,
            "SELECT count(*) FROM events"
        ) > 1_000),
        "{}",
        doomed.log_tail(20)
    );
    doomed.dies_at(step, Duration::from_secs(60));
    assert_settled_and_loaded(
        &env,
        &server,
        &host,
        &files,
        Duration::from_secs(90),
        &[&other],
    );
    assert!(
        redeliveries(&server) > 0,
        "the killed replica's unacknowledged messages were delivered again"
    );
    stop(other, "the surviving replica");
}

#[test]
fn a_database_outage_longer_than_the_ack_wait_drops_and_dead_letters_nothing() {
    let cluster = testkit::pg::Cluster::start().expect("private PostgreSQL server starts");
    testkit::pg::psql(&cluster.url(), "CREATE DATABASE etl").expect("create database");
    let url = format!("postgres://postgres@127.0.0.1:{}/etl", cluster.port());
    let mut env = Env::new();
    env.config.database.url = url.clone();
    let server = testkit::nats::Server::start();
    let vars = with(
        &broker_vars(&server, 1),
        &[("ETL_DATABASE_URL", url.clone())],
    );
    let host = Host::new(&env, "host");
    let files = common::valid_backlog(&host.events("inbox"), 100, 3_000, 9);
    let (first, rest) = files.split_at(500);
    // Half now, half during the outage.
    let parked = Parked::away(&env, rest);
    let forwarder = forward(&env, &host, &vars, "forward");
    let replica = replica(&env, "replica", &vars);
    assert!(
        wait_until(Duration::from_secs(60), || count(
            &url,
            "SELECT count(*) FROM events"
        ) == first.len() as i64),
        "{}",
        replica.log_tail(20)
    );
    cluster.stop().expect("stop the server");
    parked.deliver(rest);
    // Four ack waits and more: held messages are kept alive, never terminated.
    std::thread::sleep(Duration::from_secs(6));
    cluster.start_again().expect("restart the server");
    assert_settled_and_loaded(
        &env,
        &server,
        &host,
        &files,
        Duration::from_secs(90),
        &[&replica],
    );
    // The outage bit: batches were retried while the messages waited in the stream.
    assert!(
        replica
            .log()
            .contains("database unavailable; retrying the batches"),
        "{}",
        replica.log_tail(30)
    );
    assert_eq!(
        count(&url, "SELECT count(*) FROM rejected_events"),
        0,
        "nothing dead-lettered"
    );
    assert!(replica
        .lines_at("WARN")
        .iter()
        .all(|l| l["message"] != "rejected"));
    stop(forwarder, "the forwarder");
    stop(replica, "the replica");
}

#[test]
fn an_event_the_database_refuses_is_dead_lettered_with_its_sqlstate_and_the_rest_loads() {
    let Case {
        env,
        server,
        vars,
        host,
        files,
    } = Case::new(5, 100, 2_000, 13);
    // One card the database will refuse (a DBA's CHECK), among thousands.
    let victim = files
        .iter()
        .find(|f| f.to_string_lossy().contains("/cards/"))
        .expect("a card")
        .clone();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&victim).expect("read")).expect("json");
    let card_id = doc["payload"]["id"].as_i64().expect("id");
    let mut replica = replica(&env, "replica", &vars);
    assert!(wait_until(Duration::from_secs(30), || replica
        .log()
        .contains("consuming from the broker")));
    testkit::pg::psql(
        &env.db.url,
        &format!(
            "ALTER TABLE cards ADD CONSTRAINT no_card_{card_id} CHECK (id <> {card_id}) NOT VALID"
        ),
    )
    .expect("constraint");
    forward_all(&env, &host, &vars);
    let refused: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            let d: Value = serde_json::from_str(
                &std::fs::read_to_string(common::finished(
                    &host
                        .events("done")
                        .join(f.parent().and_then(|p| p.file_name()).expect("folder")),
                    f.file_name().expect("name"),
                ))
                .expect("done copy"),
            )
            .expect("json");
            d["metadata"]["type"] == "card" && d["payload"]["id"] == card_id
        })
        .collect();
    let loaded = files.len() - refused.len();
    assert!(
        wait_until(Duration::from_secs(60), || {
            count(
                &env.config.database.url,
                "SELECT count(*) FROM rejected_events",
            ) >= 1
                && server
                    .consumer(STREAM, CONSUMER)
                    .is_some_and(|c| c.num_pending == 0 && c.num_ack_pending == 0)
        }),
        "{}",
        replica.log_tail(30)
    );
    // Every version of the refused card is dead-lettered, with the SQLSTATE of a CHECK.
    let letters = env.query_json("SELECT id, type, code, reason->>'sqlstate' AS sqlstate, reason->>'constraint' AS c FROM rejected_events");
    let letters = letters.as_array().expect("rows");
    assert_eq!(letters.len(), refused.len(), "{letters:?}");
    for l in letters {
        assert_eq!(l["type"], "cards");
        assert_eq!(l["code"], "db_refused");
        assert_eq!(l["sqlstate"], "23514");
    }
    assert_eq!(
        count(&env.config.database.url, "SELECT count(*) FROM events"),
        loaded as i64
    );
    let warned = replica
        .lines_at("WARN")
        .into_iter()
        .filter(|l| l["message"] == "rejected" && l["code"] == "db_refused")
        .count();
    assert_eq!(
        warned,
        refused.len(),
        "one rejected WARN line per dead letter"
    );

    // The same refusal alone, while the replica idles: dead-lettered too, never nak'd for ever.
    let again = files
        .iter()
        .find(|f| refused.contains(f))
        .expect("a refused file");
    let text = std::fs::read_to_string(common::finished(
        &host.events("done").join("cards"),
        again.file_name().expect("name"),
    ))
    .expect("read");
    let mut doc: Value = serde_json::from_str(&text).expect("json");
    doc["metadata"]["event_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    publish_raw(&server, "events.cards", doc.to_string().as_bytes());
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &env.config.database.url,
            "SELECT count(*) FROM rejected_events"
        ) == refused.len() as i64 + 1),
        "{}",
        replica.log_tail(20)
    );
    replica.signal(libc::SIGTERM);
    assert!(replica.exit_within(Duration::from_secs(30)).success());
}

#[test]
fn invalid_messages_published_directly_are_dead_lettered_and_replayed_after_a_fix() {
    let env = Env::new();
    let server = testkit::nats::Server::start();
    let vars = broker_vars(&server, 5);
    let replica_a = replica(&env, "replica", &vars);
    assert!(wait_until(Duration::from_secs(30), || replica_a
        .log()
        .contains("consuming from the broker")));
    let ownerless = r#"{"payload": {"id": 77, "created_by_name": "A B", "updated_at": "2024-05-01 12:00:03",
        "created_at": "2024-05-01 11:58:40", "active": true},
        "metadata": {"type": "card", "event_at": "2024-05-01 12:00:03",
        "event_id": "0d133695-94a0-4f08-88ca-593745d25e77"}}"#;
    publish_raw(&server, "events.cards", ownerless.as_bytes());
    publish_raw(&server, "events.cards", b"{ not json");
    publish_raw(&server, "events.nonsense", b"{}");
    // Two payloads in one message: refused as a whole, never half loaded (the first payload
    // would otherwise vanish without a word).
    let twice = r#"{"metadata": {"type": "card", "event_at": "2024-05-01 12:00:03",
        "event_id": "0d133695-94a0-4f08-88ca-593745d25e78"},
        "payload": {"id": 78, "user_id": 1, "created_by_name": "A B", "updated_at": "2024-05-01 12:00:03",
        "created_at": "2024-05-01 11:58:40", "active": true},
        "payload": {"id": 79, "user_id": 1, "created_by_name": "A B", "updated_at": "2024-05-01 12:00:03",
        "created_at": "2024-05-01 11:58:40", "active": true}}"#;
    publish_raw(&server, "events.cards", twice.as_bytes());
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &env.config.database.url,
            "SELECT count(*) FROM rejected_events"
        ) == 4),
        "{}",
        replica_a.log_tail(20)
    );
    let codes = env.query_json("SELECT id, code, subject FROM rejected_events");
    let mut codes: Vec<&str> = codes
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    // The three are decoded and stored concurrently, so their rows need not follow the
    // publish order: compare them as a set.
    codes.sort_unstable();
    assert_eq!(
        codes,
        ["duplicate_key", "invalid_json", "schema", "wrong_folder"]
    );
    assert_eq!(
        count(
            &env.config.database.url,
            "SELECT count(*) FROM cards WHERE id IN (78, 79)"
        ),
        0,
        "neither payload of the message with two is loaded"
    );
    assert_eq!(
        server.stream(STREAM).expect("stream").state.messages,
        0,
        "terminated once stored"
    );

    // `etl dead-letters list` shows them, with their reasons.
    let listed = env
        .etl()
        .args(["dead-letters", "list"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(
        text.contains("\"user_id\" is a required property"),
        "{text}"
    );
    assert!(text.contains("4 dead letter(s)"), "{text}");
    assert!(
        text.contains("has the key \"payload\" more than once"),
        "{text}"
    );

    // The operator relaxes the card schema, restarts the replica, replays the schema failures.
    let schemas = env.dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).expect("mkdir");
    for name in ["users.schema.json", "cards.schema.json"] {
        std::fs::copy(env.config.schemas_dir.join(name), schemas.join(name)).expect("copy");
    }
    let strict = std::fs::read_to_string(schemas.join("cards.schema.json")).expect("schema");
    let relaxed = strict.replace(
        r#""required": ["id", "user_id", "#,
        r#""required": ["id", "#,
    );
    assert_ne!(strict, relaxed);
    std::fs::write(schemas.join("cards.schema.json"), relaxed).expect("write");
    stop(replica_a, "the replica");
    let relaxed_vars = with(&vars, &[("ETL_SCHEMAS_DIR", schemas.display().to_string())]);
    let replica_b = replica(&env, "replica-relaxed", &relaxed_vars);
    let replay = env
        .etl()
        .args(["dead-letters", "replay", "--reason", "user_id"])
        .envs(relaxed_vars.iter().map(|(k, v)| (*k, v.clone())))
        .output()
        .expect("runs");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert!(String::from_utf8_lossy(&replay.stdout).contains("replayed 1 dead letter(s)"));
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &env.config.database.url,
            "SELECT count(*) FROM cards WHERE id = 77 AND user_id IS NULL"
        ) == 1),
        "{}",
        replica_b.log_tail(20)
    );
    assert_eq!(
        count(
            &env.config.database.url,
            "SELECT count(*) FROM rejected_events"
        ),
        3,
        "the others stay"
    );
    stop(replica_b, "the replica");
}

#[test]
fn a_forwarder_killed_mid_publish_republishes_and_the_broker_drops_the_repeats() {
    let Case {
        env,
        server,
        vars,
        host,
        files,
    } = Case::new(5, 200, 8_000, 21);
    // The first forwarder SIGKILLs itself once the broker has acknowledged its 1,001st
    // publish, before that event's file is moved (see `etl/src/faults.rs`): mid-publish by
    // construction, not by how far it got before a kill from outside.
    let step = "forward.published:kill:1001";
    let mut first = forward(
        &env,
        &host,
        &with(&vars, &[("FAULT_POINTS", step.into())]),
        "forward-1",
    );
    assert!(
        wait_until(Duration::from_secs(60), || server
            .stream(STREAM)
            .is_some_and(|s| s.state.last_seq > 1_000)),
        "{}",
        first.log_tail(20)
    );
    first.dies_at(step, Duration::from_secs(60));
    let published = server.stream(STREAM).expect("stream").state.last_seq;
    assert!(
        (published as usize) < files.len(),
        "killed mid-publish: {published} of {}",
        files.len()
    );
    // The crash window made certain: files the broker had but whose move to done/ the crash
    // lost are back in the inbox, as after a kill between the acknowledgement and the rename.
    let mut lost_moves = 0;
    for kind in common::TYPES {
        for file in event_files(&host.events("done").join(kind))
            .into_iter()
            .take(25)
        {
            std::fs::rename(
                &file,
                host.events("inbox")
                    .join(kind)
                    .join(file.file_name().expect("name")),
            )
            .expect("undo the move");
            lost_moves += 1;
        }
    }
    let addr = common::free_addr();
    let second = forward(
        &env,
        &host,
        &with(&vars, &[("ETL_HTTP_ADDR", addr.clone())]),
        "forward-2",
    );
    let replica = replica(&env, "replica", &vars);
    assert_settled_and_loaded(
        &env,
        &server,
        &host,
        &files,
        Duration::from_secs(90),
        &[&replica],
    );
    // The broker's own numbers: one stored message per event, whatever was published twice.
    let stream = server.stream(STREAM).expect("stream");
    assert_eq!(
        stream.state.last_seq as usize,
        files.len(),
        "no event stored twice"
    );
    let duplicates = common::metric_total(&addr, "etl_forward_duplicates_total");
    assert!(
        duplicates >= lost_moves as f64,
        "the restarted forwarder's re-publishes were dropped as duplicates: {duplicates} of at least {lost_moves}"
    );
    stop(second, "the restarted forwarder");
    stop(replica, "the replica");
}

#[test]
fn the_broker_restarted_mid_stream_keeps_what_it_stored() {
    let Case {
        env,
        server,
        vars,
        host,
        files,
    } = Case::new(5, 100, 3_000, 23);
    let (early, late) = files.split_at(1_500);
    let parked = Parked::away(&env, late);
    let addr = common::free_addr();
    let forwarder = forward(
        &env,
        &host,
        &with(&vars, &[("ETL_HTTP_ADDR", addr.clone())]),
        "forward",
    );
    assert!(
        wait_until(Duration::from_secs(60), || host.files("inbox").is_empty()),
        "{}",
        forwarder.log_tail(20)
    );
    let stored = server.stream(STREAM).expect("stream").state.messages;
    assert_eq!(
        stored as usize,
        early.len(),
        "the stream holds the first half"
    );
    server.stop();
    // The forwarder says so: not ready while the broker is away.
    let readiness = |code: u16| {
        wait_until(Duration::from_secs(20), || {
            common::try_get(&addr, "/readyz").is_some_and(|(c, _)| c == code)
        })
    };
    assert!(readiness(503), "{:?}", common::try_get(&addr, "/readyz"));
    // Files keep arriving while the broker is down: they wait in the inbox.
    // Publishes of the late files have failed (and been retried) before the files are looked
    // at: the earlier ones are all stored, so these errors are the late files' chances to leave.
    let errors = common::metric_total(&addr, "etl_publish_errors_total");
    parked.deliver(late);
    assert!(
        wait_until(Duration::from_secs(60), || common::metric_total(
            &addr,
            "etl_publish_errors_total"
        ) >= errors + 2.0),
        "no publish was tried: {}",
        common::try_get(&addr, "/metrics").map_or(String::new(), |(_, body)| body)
    );
    assert!(
        !host.files("inbox").is_empty(),
        "nothing leaves the inbox while the broker is down"
    );
    server.start_again();
    // File storage kept the first half (the forwarder may already be adding the second).
    let kept = server.stream(STREAM).expect("the stream survives").state;
    assert!(
        kept.messages as usize >= early.len() && kept.first_seq == 1,
        "{kept:?}"
    );
    assert!(readiness(200), "{:?}", common::try_get(&addr, "/readyz"));
    let replica = replica(&env, "replica", &vars);
    assert_settled_and_loaded(
        &env,
        &server,
        &host,
        &files,
        Duration::from_secs(90),
        &[&forwarder, &replica],
    );
    stop(forwarder, "the forwarder");
    stop(replica, "the replica");
}

#[test]
fn a_full_stream_refuses_publishes_and_the_files_wait_in_the_inbox() {
    let env = Env::new();
    let server = testkit::nats::Server::start();
    let limit = 300_000;
    let vars = with(
        &broker_vars(&server, 5),
        &[("ETL_NATS_MAX_BYTES", limit.to_string())],
    );
    let host = Host::new(&env, "host");
    let files = common::valid_backlog(&host.events("inbox"), 100, 3_000, 25);
    let addr = common::free_addr();
    let forwarder = forward(
        &env,
        &host,
        &with(&vars, &[("ETL_HTTP_ADDR", addr.clone())]),
        "forward",
    );
    assert!(
        wait_until(Duration::from_secs(60), || common::metric_total(
            &addr,
            "etl_publish_errors_total"
        ) > 0.0),
        "the stream never filled: {}",
        forwarder.log_tail(20)
    );
    let stream = server.stream(STREAM).expect("stream");
    assert!(
        stream.state.bytes <= limit,
        "{} bytes stored",
        stream.state.bytes
    );
    let waiting = host.files("inbox").len();
    assert!(
        waiting > 0,
        "files wait in the inbox while the stream is full"
    );
    assert!(forwarder
        .log()
        .contains("the broker did not take a publish"));
    // A replica frees space; everything arrives, once.
    let replica = replica(&env, "replica", &vars);
    assert_settled_and_loaded(
        &env,
        &server,
        &host,
        &files,
        Duration::from_secs(120),
        &[&forwarder, &replica],
    );
    assert_eq!(
        server.stream(STREAM).expect("stream").state.last_seq as usize,
        files.len()
    );
    stop(forwarder, "the forwarder");
    stop(replica, "the replica");
}

#[test]
fn a_three_node_cluster_loses_a_node_mid_stream_and_loses_nothing() {
    let env = Env::new();
    let cluster = testkit::nats::Cluster::start(3);
    let vars = vec![
        ("ETL_NATS_URL", cluster.urls()),
        ("ETL_NATS_REPLICAS", "3".to_owned()),
        ("ETL_NATS_ACK_WAIT_SECS", "5".to_owned()),
        ("ETL_SETTLE_MS", "0".to_owned()),
        ("ETL_RESCAN_INTERVAL_SECS", "1".to_owned()),
        ("ETL_MAX_RETRY_BACKOFF_MS", "500".to_owned()),
    ];
    let host = Host::new(&env, "host");
    let files = common::valid_backlog(&host.events("inbox"), 100, 4_000, 27);
    let forwarder = forward(&env, &host, &vars, "forward");
    let replica = replica(&env, "replica", &vars);
    assert!(
        wait_until(Duration::from_secs(60), || count(
            &env.config.database.url,
            "SELECT count(*) FROM events"
        ) > 500),
        "{}",
        replica.log_tail(20)
    );
    let leader = cluster.meta_leader().unwrap_or(0);
    cluster.node(leader).kill();
    assert_settled_and_loaded(
        &env,
        &cluster,
        &host,
        &files,
        Duration::from_secs(120),
        &[&forwarder, &replica],
    );
    let stream = cluster.stream(STREAM).expect("stream");
    assert_eq!(
        stream.config.as_ref().map(|c| c.num_replicas),
        Some(3),
        "the stream is replicated on the three nodes"
    );
    stop(forwarder, "the forwarder");
    stop(replica, "the replica");
}
