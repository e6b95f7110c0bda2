//! The alerting rules rest on metrics the daemon really exports: synthetic series in
//! `deploy/prometheus/alerts_test.yml` cannot tell a misspelt name, so every `etl_*` name the
//! rules use must appear in the `/metrics` of a real `etl run` that has loaded and rejected
//! events.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{copy_samples, free_addr, http_get, wait_until, Env};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/prometheus/alerts.yml"
);

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
fn every_metric_the_alerts_use_is_exported_by_a_running_daemon() {
    let rules = std::fs::read_to_string(RULES).expect("alerts.yml");
    let used = metric_names(&rules);
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
    let all_there = wait_until(Duration::from_secs(30), || {
        exported = http_get(&addr, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let names = metric_names(&exported);
        used.iter().all(|name| names.contains(name))
    });
    let names = metric_names(&exported);
    let missing: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        all_there,
        "the rules use metrics the daemon does not export: {missing:?}\n{exported}\n{}",
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
