//! Tests of the harness itself, against the shared server (`DATABASE_URL` or
//! a throwaway cluster) and a private [`testkit::pg::Cluster`].

use testkit::pg::{fresh_db, psql, server_url, Cluster};

/// Number of databases called `name` on the shared server.
fn db_count(name: &str) -> String {
    let sql = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
    psql(&server_url(), &sql).expect("querying pg_database")
}

#[test]
fn fresh_db_can_be_queried() {
    let db = fresh_db();
    assert_eq!(psql(&db.url, "SELECT 1").expect("select 1"), "1");
    let current = psql(&db.url, "SELECT current_database()").expect("current_database()");
    assert_eq!(current, db.name);
}

#[test]
fn fresh_dbs_are_distinct() {
    let (a, b) = (fresh_db(), fresh_db());
    assert_ne!(a.name, b.name);
    assert_ne!(a.url, b.url);
    psql(&a.url, "CREATE TABLE only_in_a (id int)").expect("create table");
    let sql = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'";
    assert_eq!(psql(&a.url, sql).expect("query a"), "1");
    assert_eq!(psql(&b.url, sql).expect("query b"), "0");
}

#[test]
fn dropping_removes_the_database() {
    let db = fresh_db();
    let name = db.name.clone();
    assert_eq!(db_count(&name), "1");
    drop(db);
    assert_eq!(db_count(&name), "0");
}

#[test]
fn dropping_disconnects_open_sessions() {
    let db = fresh_db();
    let name = db.name.clone();
    // A client still connected must not keep the database alive.
    let mut session = std::process::Command::new("psql")
        .args(["-X", "-q", "-d", &db.url, "-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning psql");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'");
    while psql(&server_url(), &sql).expect("pg_stat_activity") == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "session never showed up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(db);
    assert_eq!(db_count(&name), "0");
    let _ = session.kill();
    let _ = session.wait();
}

#[tokio::test]
async fn fresh_db_works_inside_tokio() {
    let db = fresh_db();
    assert_eq!(psql(&db.url, "SELECT 2").expect("select 2"), "2");
}

#[test]
fn cluster_restarts_on_same_port_with_data() {
    let cluster = Cluster::start().expect("starting a private cluster");
    let port = cluster.port();
    let url = cluster.url();
    assert!(url.contains(&format!(":{port}/")), "{url}");
    psql(
        &url,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')",
    )
    .expect("setup");

    cluster.stop().expect("stop");
    assert!(psql(&url, "SELECT 1").is_err(), "server should be down");

    cluster.start_again().expect("start again");
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.url(), url);
    assert_eq!(
        psql(&url, "SELECT v FROM kept").expect("query after restart"),
        "hello"
    );
}

#[test]
fn psql_reports_sql_errors() {
    let db = fresh_db();
    let err = psql(&db.url, "SELECT * FROM no_such_table").expect_err("should fail");
    assert!(format!("{err:#}").contains("no_such_table"), "{err:#}");
}

#[test]
fn cluster_with_tls_and_passwords() {
    let ca = testkit::pg::TestCa::new("pgtest CA").expect("CA");
    let options = testkit::pg::Options {
        tls: Some(ca.server_cert(&["localhost"]).expect("server cert")),
        password_auth: true,
    };
    let cluster = Cluster::start_with(&options).expect("cluster starts");
    // `postgres` is still trusted, so the test can set the cluster up.
    psql(&cluster.url(), "CREATE ROLE app LOGIN PASSWORD 'right'").expect("create role");
    let port = cluster.port();
    let url = |password: &str, sslmode: &str| {
        format!("postgres://app:{password}@127.0.0.1:{port}/postgres?sslmode={sslmode}")
    };
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql(&url("right", "require"), ssl).expect("TLS login"), "t");
    let wrong = psql(&url("wrong", "require"), "SELECT 1").expect_err("wrong password");
    assert!(
        format!("{wrong:#}").contains("password authentication failed"),
        "{wrong:#}"
    );
    let plain = psql(&url("right", "disable"), "SELECT 1").expect_err("no TLS, no entry");
    assert!(
        format!("{plain:#}").contains("no pg_hba.conf entry"),
        "{plain:#}"
    );
}
