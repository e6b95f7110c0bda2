//! Tests of the harness itself, against real `nats-server` processes: a [`testkit::nats::Server`]
//! and a 3-node [`testkit::nats::Cluster`].
//!
//! Streams are created and messages published over the raw NATS text protocol (see [`Conn`]):
//! the crate deliberately has no client dependency, and the few commands needed here are simple
//! enough to speak directly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::nats::{Cluster, Options, Server};

/// A bare NATS connection speaking the text protocol: `CONNECT`, `SUB`, `PUB`, `UNSUB`, `PING`
/// and reading `MSG`s. Enough to call the JetStream API (request/reply) and publish.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    /// The first line the server sent: `INFO {...}`.
    info: String,
    next_sid: u64,
}

impl Conn {
    /// Connects to the first URL of a (comma-separated) server list.
    fn connect(urls: &str) -> Conn {
        let first = urls.split(',').next().unwrap_or(urls);
        let addr = first.trim_start_matches("nats://");
        let writer =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        writer
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let reader = BufReader::new(writer.try_clone().expect("cloning the socket"));
        let mut conn = Conn {
            writer,
            reader,
            info: String::new(),
            next_sid: 1,
        };
        conn.info = conn.line();
        assert!(conn.info.starts_with("INFO "), "{}", conn.info);
        // No headers: JetStream then answers with plain JSON, never with status headers.
        conn.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\nPING\r\n");
        let pong = conn.line();
        assert_eq!(pong, "PONG", "CONNECT refused");
        conn
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .expect("writing to nats-server");
    }

    /// The next protocol line, without `\r\n`.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("reading from nats-server");
        assert!(!line.is_empty(), "nats-server closed the connection");
        line.trim_end().to_string()
    }

    /// Publishes `payload` to `subject` with reply subject `reply`.
    fn publish(&mut self, subject: &str, reply: &str, payload: &[u8]) {
        let head = format!("PUB {subject} {reply} {}\r\n", payload.len());
        self.send(head.as_bytes());
        self.send(payload);
        self.send(b"\r\n");
    }

    /// Sends `payload` to `subject` and returns the payloads of the first `n` replies, each with
    /// the reply subject it came with (JetStream's ack subject, for pulled messages).
    fn request_n(&mut self, subject: &str, payload: &[u8], n: usize) -> Vec<(String, Vec<u8>)> {
        let sid = self.next_sid;
        self.next_sid += 1;
        let inbox = format!("_INBOX.natstest.{sid}");
        self.send(format!("SUB {inbox} {sid}\r\n").as_bytes());
        self.publish(subject, &inbox, payload);
        let mut replies = Vec::new();
        while replies.len() < n {
            let line = self.line();
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["PING"] => self.send(b"PONG\r\n"),
                ["MSG", _subject, msg_sid, rest @ ..] => {
                    let (reply, len) = match rest {
                        [len] => ("", *len),
                        [reply, len] => (*reply, *len),
                        _ => panic!("bad MSG line: {line}"),
                    };
                    let len: usize = len.parse().expect("MSG length");
                    let mut body = vec![0; len + 2];
                    self.reader
                        .read_exact(&mut body)
                        .expect("reading a payload");
                    body.truncate(len);
                    if *msg_sid == sid.to_string() {
                        replies.push((reply.to_string(), body));
                    }
                }
                ["+OK"] | ["PONG"] => {}
                [first, ..] if *first == "INFO" => {}
                _ => panic!("unexpected from nats-server: {line}"),
            }
        }
        self.send(format!("UNSUB {sid}\r\n").as_bytes());
        replies
    }

    /// A request with one JSON reply.
    fn request(&mut self, subject: &str, payload: &str) -> serde_json::Value {
        let mut replies = self.request_n(subject, payload.as_bytes(), 1);
        let (_, body) = replies.remove(0);
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("reply to {subject} is not JSON ({e}): {body:?}"))
    }

    /// A JetStream API request that must succeed.
    fn js_api(&mut self, subject: &str, payload: &str) -> serde_json::Value {
        let reply = self.request(subject, payload);
        assert!(reply.get("error").is_none(), "{subject}: {reply}");
        reply
    }

    /// Creates stream `name` on `subjects`, file storage, `replicas` copies.
    fn create_stream(&mut self, name: &str, subjects: &str, replicas: usize) {
        let body = serde_json::json!({
            "name": name, "subjects": [subjects], "storage": "file", "num_replicas": replicas
        });
        self.js_api(&format!("$JS.API.STREAM.CREATE.{name}"), &body.to_string());
    }

    /// Publishes to a stream and waits for JetStream's acknowledgement (it is stored).
    fn js_publish(&mut self, subject: &str, payload: &str) -> u64 {
        let ack = self.request(subject, payload);
        assert!(ack.get("error").is_none(), "publishing to {subject}: {ack}");
        ack["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq in {ack}"))
    }
}

#[test]
fn server_starts_and_answers_healthz() {
    let server = Server::start();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.monitor_url().starts_with("http://127.0.0.1:"));
    assert!(server.is_running());
    assert!(server.is_healthy());
    let jsz = server.jsz();
    assert!(
        jsz.meta_cluster.is_none(),
        "a standalone server has no meta group"
    );
    let config = jsz.config.expect("JetStream config in /jsz");
    assert!(
        config
            .store_dir
            .starts_with(&server.store_dir().display().to_string()),
        "{} not in {}",
        config.store_dir,
        server.store_dir().display()
    );
    assert!(server.stream("nope").is_none());
    assert!(server.consumer("nope", "nope").is_none());
    assert!(
        server.log_tail(5).contains("Server is ready"),
        "{}",
        server.log_tail(5)
    );
    let conn = Conn::connect(&server.url());
    assert!(conn.info.contains("\"jetstream\":true"), "{}", conn.info);
}

#[test]
fn options_are_applied() {
    let options = Options {
        max_payload: Some(2 * 1024 * 1024),
        store_max_bytes: Some(64 * 1024 * 1024),
    };
    let server = Server::start_with(&options);
    let conn = Conn::connect(&server.url());
    assert!(
        conn.info.contains("\"max_payload\":2097152"),
        "{}",
        conn.info
    );
    let config = server.jsz().config.expect("JetStream config in /jsz");
    assert_eq!(config.max_storage, 64 * 1024 * 1024);
}

#[test]
fn stop_and_start_again_keep_port_and_store() {
    let server = Server::start();
    let url = server.url();
    let mut conn = Conn::connect(&url);
    conn.create_stream("KEPT", "kept.>", 1);
    for i in 1..=3 {
        assert_eq!(conn.js_publish("kept.a", &format!("message {i}")), i);
    }
    drop(conn);

    server.stop();
    assert!(!server.is_running());
    assert!(!server.is_healthy());
    assert!(
        TcpStream::connect(url.trim_start_matches("nats://")).is_err(),
        "still listening after stop"
    );
    server.start_again();
    assert_eq!(server.url(), url, "restarted on another port");
    let state = server
        .stream("KEPT")
        .expect("stream KEPT after restart")
        .state;
    assert_eq!((state.messages, state.first_seq, state.last_seq), (3, 1, 3));

    // A crash loses nothing that was acknowledged either: publishes are acked once written.
    let mut conn = Conn::connect(&url);
    assert_eq!(conn.js_publish("kept.b", "message 4"), 4);
    drop(conn);
    server.kill();
    assert!(!server.is_running());
    server.start_again();
    let state = server.stream("KEPT").expect("stream KEPT after kill").state;
    assert_eq!(
        (state.messages, state.last_seq, state.num_subjects),
        (4, 4, 2)
    );
    assert!(
        server.log_tail(200).contains("Server Exiting"),
        "the log spans restarts"
    );
}

#[test]
fn stream_and_consumer_state() {
    let server = Server::start();
    let mut conn = Conn::connect(&server.url());
    conn.create_stream("ORDERS", "orders.>", 1);
    for i in 1..=5 {
        conn.js_publish("orders.new", &format!("order {i}"));
    }
    conn.js_api("$JS.API.STREAM.MSG.DELETE.ORDERS", r#"{"seq":3}"#);
    let consumer = r#"{"stream_name":"ORDERS","config":{"durable_name":"worker",
        "ack_policy":"explicit","max_deliver":5}}"#;
    conn.js_api("$JS.API.CONSUMER.DURABLE.CREATE.ORDERS.worker", consumer);
    // Pull two messages, acknowledge the first.
    let pulled = conn.request_n(
        "$JS.API.CONSUMER.MSG.NEXT.ORDERS.worker",
        br#"{"batch":2}"#,
        2,
    );
    assert_eq!(pulled[0].1, b"order 1");
    assert_eq!(pulled[1].1, b"order 2");
    conn.publish(&pulled[0].0, "", b"+ACK");
    conn.send(b"PING\r\n");
    assert_eq!(conn.line(), "PONG");

    let stream = server.stream("ORDERS").expect("stream ORDERS");
    assert_eq!(stream.state.messages, 4);
    assert_eq!((stream.state.first_seq, stream.state.last_seq), (1, 5));
    assert_eq!(stream.state.num_deleted, 1);
    assert_eq!(stream.state.consumer_count, 1);
    let config = stream.config.as_ref().expect("stream config");
    assert_eq!(config.subjects, ["orders.>"]);
    assert_eq!(config.storage, "file");
    assert_eq!(
        stream.cluster.as_ref().and_then(|c| c.leader.as_deref()),
        Some(server.name())
    );

    // The ack is processed asynchronously; wait for it to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let worker = loop {
        let worker = server
            .consumer("ORDERS", "worker")
            .expect("consumer worker");
        if worker.ack_floor.stream_seq == 1 || Instant::now() > deadline {
            break worker;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(worker.delivered.stream_seq, 2);
    assert_eq!(worker.ack_floor.stream_seq, 1);
    assert_eq!(worker.num_ack_pending, 1);
    assert_eq!(worker.num_pending, 2, "4 and 5; 3 is deleted");
    assert_eq!(worker.num_redelivered, 0);
    let config = worker.config.expect("consumer config");
    assert_eq!(config.ack_policy, "explicit");
    assert_eq!(config.max_deliver, 5);
    assert!(server.consumer("ORDERS", "nobody").is_none());
}

#[tokio::test]
async fn works_inside_tokio() {
    let server = Server::start();
    assert!(server.is_healthy());
    server.stop();
    server.start_again();
    assert!(server.is_healthy());
}

#[test]
fn cluster_elects_a_meta_leader_and_survives_losing_a_node() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.name(), format!("node{i}"));
        assert!(node.is_healthy(), "{} unhealthy", node.name());
        let meta = node.jsz().meta_cluster.expect("meta_cluster in /jsz");
        assert_eq!(meta.cluster_size, 3);
    }
    let leader = cluster.meta_leader().expect("a meta leader");

    let mut conn = Conn::connect(&urls);
    conn.create_stream("REPL", "repl.>", 3);
    for i in 1..=3 {
        assert_eq!(conn.js_publish("repl.x", "x"), i);
    }
    drop(conn);
    let stream = cluster.stream("REPL").expect("stream REPL");
    assert_eq!(stream.state.messages, 3);
    let stream_cluster = stream.cluster.expect("stream cluster info");
    assert_eq!(stream_cluster.replicas.len(), 2, "{stream_cluster:?}");

    // Lose the meta leader: the other two elect a new one and stay healthy.
    cluster.node(leader).kill();
    cluster.wait_healthy();
    let new_leader = cluster.meta_leader().expect("a new meta leader");
    assert_ne!(new_leader, leader);
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.is_healthy(), i != leader, "{}", node.name());
    }
    // The survivors still serve the stream, and take writes (2 of 3 is a majority).
    let survivor = cluster.node(new_leader);
    let mut conn = Conn::connect(&survivor.url());
    assert_eq!(conn.js_publish("repl.x", "x"), 4);
    drop(conn);
    assert_eq!(
        cluster.stream("REPL").expect("stream REPL").state.messages,
        4
    );

    // The node comes back on its ports, catches up, and the cluster is whole again.
    let port = cluster.node(leader).port();
    cluster.node(leader).start_again();
    assert_eq!(cluster.node(leader).port(), port);
    cluster.wait_healthy();
    assert!(cluster.nodes().iter().all(Server::is_healthy));
    // Healthy does not mean that a follower has applied every write yet: 2.9.10 reports a
    // rejoined node healthy about a second before its stream shows what it missed.
    let rejoined = cluster.node(leader);
    let started = Instant::now();
    while rejoined.stream("REPL").map(|s| s.state.messages) != Some(4) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{} did not catch up: {:?}",
            rejoined.name(),
            rejoined.stream("REPL").map(|s| s.state)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cluster_node_stop_and_start_again() {
    let cluster = Cluster::start(3);
    let node = cluster.node(2);
    let url = node.url();
    node.stop();
    assert!(!node.is_running());
    cluster.wait_healthy();
    assert!(cluster.node(0).is_healthy() && cluster.node(1).is_healthy());
    node.start_again();
    assert_eq!(node.url(), url);
    cluster.wait_healthy();
    assert!(node.is_healthy());
}
