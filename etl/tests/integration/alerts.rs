//! The alerting rules and the dashboard rest on metrics the daemon really exports: synthetic series in
//! `deploy/prometheus/alerts_test.yml` cannot tell a misspelt name, so every `etl_*` name the
//! rules use must appear in the `/metrics` of a real `etl run` that has loaded and rejected
//! events.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{copy_samples, free_addr, try_get, wait_until, Env};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/alerts.yml"
);
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/etl.json");

/// The queries of the Grafana dashboard's panels (Grafana itself has no Debian package: the
/// dashboard is checked statically).
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(DASHBOARD).expect("etl.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut queries = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("each panel has targets");
        assert!(!targets.is_empty(), "a panel without a query: {panel}");
        for target in targets {
            let expr = target["expr"].as_str().expect("a target's expr");
            queries.push(expr.to_owned());
        }
    }
    queries
}

/// Every `etl_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("etl_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exported_by_a_running_daemon() {
    let rules = std::fs::read_to_string(RULES).expect("alerts.yml");
    let mut used = metric_names(&rules);
    for query in dashboard_queries() {
        used.extend(metric_names(&query));
    }
    assert!(used.len() >= 5, "the rules name too few metrics: {used:?}");

    let env = Env::new();
    copy_samples(&env);
    let addr = free_addr();
    let mut etl = env.spawn_etl(
        "run",
        &["run"],
        &[
            ("ETL_HTTP_ADDR", addr.clone()),
            ("ETL_PROGRESS_INTERVAL_SECS", "1".into()),
        ],
    );
    let mut exported = String::new();
    // Every name, and the reachability gauge at 1: it is refreshed every 5 s, and its first
    // ping may lose the race with the start-up's own connections on a loaded machine.
    let all_there = wait_until(Duration::from_secs(30), || {
        exported = try_get(&addr, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let names = metric_names(&exported);
        used.iter().all(|name| names.contains(name))
            && exported.lines().any(|l| l.trim() == "etl_database_up 1")
    });
    let names = metric_names(&exported);
    let missing: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        all_there,
        "the rules or the dashboard use metrics the daemon does not export: {missing:?}\n{exported}\n{}",
        etl.log_tail(20)
    );
    // The reachability gauge says the database answers.
    assert!(
        exported.lines().any(|l| l.trim() == "etl_database_up 1"),
        "{exported}"
    );
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(30)).success());
}

/// A loopback endpoint recording the JSON bodies posted to it.
struct Receiver {
    posted: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!(
            "http://{}/hook/secret-token",
            listener.local_addr().expect("addr")
        );
        let sink = posted.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().route(
                "/hook/secret-token",
                axum::routing::post(move |body: String| {
                    let sink = sink.clone();
                    async move {
                        if let Ok(value) = serde_json::from_str(&body) {
                            sink.lock().expect("posted").push(value);
                        }
                        "ok"
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            posted,
            url,
            _runtime: runtime,
        }
    }

    fn posted(&self) -> Vec<serde_json::Value> {
        self.posted.lock().expect("posted").clone()
    }
}

/// Holds `port` (of a stopped server) and closes every connection made to it, until `n` were
/// made or `limit` passed; returns how many were made. The port is free again afterwards.
fn probes_seen(port: u16, n: usize, limit: Duration) -> usize {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the server's port");
    listener.set_nonblocking(true).expect("nonblocking");
    let mut seen = 0;
    wait_until(limit, || {
        while let Ok((connection, _)) = listener.accept() {
            drop(connection);
            seen += 1;
        }
        seen >= n
    });
    seen
}

/// For teams without Prometheus: the webhook gets one summary of the rejections (counted by
/// type and code, with examples) and, once the database has been down past the threshold, one
/// firing alert, then one resolved alert when it is back; its URL (a credential) is never
/// logged.
#[test]
fn the_webhook_summarises_rejections_and_reports_a_database_outage_once() {
    let receiver = Receiver::start();
    let cluster = testkit::pg::Cluster::start().expect("private PostgreSQL server starts");
    testkit::pg::psql(&cluster.url(), "CREATE DATABASE etl").expect("create database");
    let env = Env::new();
    let url = format!("postgres://postgres@127.0.0.1:{}/etl", cluster.port());
    copy_samples(&env);
    let ownerless = common::ownerless_cards(&common::event_files(&env.inbox("cards")));
    assert!(ownerless > 0, "the samples hold ownerless cards");
    let mut etl = env.spawn_etl(
        "run",
        &["run"],
        &[
            ("ETL_DATABASE_URL", url),
            ("ETL_ALERT_WEBHOOK_URL", receiver.url.clone()),
            ("ETL_ALERT_DATABASE_DOWN_SECS", "2".into()),
            ("ETL_ALERT_REJECTIONS_INTERVAL_SECS", "1".into()),
        ],
    );
    let alerts = |name: &str| -> Vec<serde_json::Value> {
        receiver
            .posted()
            .into_iter()
            .filter(|p| p["alert"] == name)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !alerts("rejections").is_empty()),
        "no rejection summary: {:?}\n{}",
        receiver.posted(),
        etl.log_tail(20)
    );
    // Every rejection is in a summary, once, with its type and code.
    assert!(wait_until(Duration::from_secs(10), || {
        alerts("rejections")
            .iter()
            .map(|p| p["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == ownerless as u64
    }));
    let summary = &alerts("rejections")[0];
    assert_eq!(summary["by"][0]["type"], "cards", "{summary}");
    assert_eq!(summary["by"][0]["code"], "schema", "{summary}");
    assert!(
        summary["examples"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("user_id"),
        "{summary}"
    );
    assert!(alerts("database_unreachable").is_empty());

    cluster.stop().expect("stop the server");
    assert!(
        wait_until(Duration::from_secs(30), || !alerts("database_unreachable")
            .is_empty()),
        "no database alert: {:?}\n{}",
        receiver.posted(),
        etl.log_tail(20)
    );
    let fired = &alerts("database_unreachable")[0];
    assert_eq!(fired["status"], "firing", "{fired}");
    assert!(fired["down_for_secs"].as_u64().unwrap_or(0) >= 2, "{fired}");
    // One alert per outage, not one per probe: two more probes have seen the database down.
    // Each probe connects to the server's port, which a listener of the test now holds: it
    // counts the attempts and closes them, as a server that is not there would fail them.
    assert!(
        probes_seen(cluster.port(), 2, Duration::from_secs(30)) >= 2,
        "the probe stopped: {}",
        etl.log_tail(20)
    );
    assert_eq!(alerts("database_unreachable").len(), 1);

    cluster.start_again().expect("restart the server");
    assert!(
        wait_until(Duration::from_secs(30), || alerts("database_unreachable")
            .len()
            == 2),
        "no resolved alert: {:?}",
        receiver.posted()
    );
    assert_eq!(alerts("database_unreachable")[1]["status"], "resolved");
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(30)).success());
    assert!(
        !etl.log().contains("secret-token"),
        "the webhook URL was logged"
    );
}
