//! TLS to PostgreSQL, start-up errors that no retry can fix, and secrets: against a private
//! cluster serving TLS with a certificate made by the test (for `localhost` only) and demanding
//! a password (scram-sha-256, over TLS only) from every role but `postgres`.
//!
//! Each case runs the real `etl` binary, as an operator would, with a bound on its run time: a
//! fatal error must end the process (exit status 2, one ERROR line), never retry for ever.

use crate::common;

use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use etl::config::Config;
use testkit::pg::{psql, Cluster, Options, TestCa};

/// The role's password: distinctive, so that finding it in any output is never a coincidence.
const PASSWORD: &str = "Pw-7f3c1e9a-Secret";
const WRONG_PASSWORD: &str = "Wrong-4b2d8e6c-Pass";
const ROLE: &str = "etl_app";
/// How long a fatal start-up may take (the connect timeout is 5 s).
const LIMIT: Duration = Duration::from_secs(60);

/// The TLS + password cluster, started once for all tests of this file, and the PEM of the CA
/// that signed its certificate and of an unrelated CA.
struct Secure {
    cluster: Cluster,
    ca_pem: String,
    other_ca_pem: String,
}

fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let ca = TestCa::new("etl test CA").expect("CA");
        let other = TestCa::new("unrelated CA").expect("other CA");
        let options = Options {
            tls: Some(ca.server_cert(&["localhost"]).expect("server cert")),
            password_auth: true,
        };
        let cluster = Cluster::start_with(&options).expect("TLS cluster starts");
        psql(
            &cluster.url(),
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"),
        )
        .expect("create role");
        Secure {
            cluster,
            ca_pem: ca.pem(),
            other_ca_pem: other.pem(),
        }
    })
}

/// One test's data folder, CA files and database (owned by the role) on the secure cluster.
struct Case {
    dir: tempfile::TempDir,
    config: Config,
    db: String,
}

impl Case {
    fn new() -> Case {
        let secure = secure();
        let db = format!("t_{}", uuid::Uuid::new_v4().simple());
        psql(
            &secure.cluster.url(),
            &format!("CREATE DATABASE {db} OWNER {ROLE}"),
        )
        .expect("create database");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), &secure.ca_pem).expect("write CA");
        std::fs::write(dir.path().join("other-ca.pem"), &secure.other_ca_pem).expect("write CA");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            schemas_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas")),
            types_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../types")),
            ..Config::default()
        };
        config.database.migrations_dir =
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../db/migrations"));
        let catalog = etl::catalog::Catalog::load(&config).expect("the shipped types");
        etl::source::inbox::files::ensure_layout(&config, &catalog).expect("layout");
        Case { dir, config, db }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// URL of this case's database as the role, with `password` (if any), through `host`.
    fn url(&self, password: Option<&str>, host: &str, params: &str) -> String {
        let auth = match password {
            Some(p) => format!("{ROLE}:{p}"),
            None => ROLE.to_owned(),
        };
        let port = secure().cluster.port();
        format!("postgres://{auth}@{host}:{port}/{}?{params}", self.db)
    }

    fn ca(&self) -> String {
        format!("sslrootcert={}", self.path("ca.pem").display())
    }

    fn other_ca(&self) -> String {
        format!("sslrootcert={}", self.path("other-ca.pem").display())
    }

    /// `etl <args>` with `url` as `ETL_DATABASE_URL` (none if empty) and this case's folders.
    fn etl(&self, url: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl"));
        if !url.is_empty() {
            cmd.env("ETL_DATABASE_URL", url);
        }
        cmd.env("ETL_DATA_DIR", &self.config.data_dir)
            .env("ETL_SCHEMAS_DIR", &self.config.schemas_dir)
            .env("ETL_TYPES_DIR", &self.config.types_dir)
            .env("ETL_MIGRATIONS_DIR", &self.config.database.migrations_dir)
            .env("ETL_HTTP_ADDR", "")
            .env("ETL_SETTLE_MS", "100")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(args)
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, url: &str, args: &[&str]) -> Ran {
        run_bounded(self.etl(url, args), &self.dir.path().join("out"))
    }

    /// Five valid user events, five valid card events, and one broken file (whose reason file
    /// the daemon writes).
    fn fill_inbox(&self) {
        for i in 1..=5 {
            let user = serde_json::json!({
                "metadata": {"type": "user", "event_at": "2026-01-02 03:04:05", "event_id": uuid::Uuid::new_v4()},
                "payload": {"id": i, "name": "Ann", "address": "1 Road", "job": "Pilot", "score": 0.5},
            });
            let card = serde_json::json!({
                "metadata": {"type": "card", "event_at": "2026-01-02 03:04:05", "event_id": uuid::Uuid::new_v4()},
                "payload": {"id": i, "user_id": i, "created_by_name": "Ann", "created_at": "2026-01-01 00:00:00",
                            "updated_at": "2026-01-02 03:04:05", "active": true},
            });
            for (kind, event) in [("users", user), ("cards", card)] {
                let path = self.config.inbox(kind).join(format!("{i}.json"));
                std::fs::write(path, event.to_string()).expect("write event");
            }
        }
        std::fs::write(
            self.config.inbox("users").join("broken.json"),
            "{\"metadata\": ",
        )
        .expect("write broken file");
    }
}

/// What a bounded run printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn error_lines(&self) -> Vec<String> {
        self.all()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Exit status 2 with exactly one ERROR line, which contains every one of `words`.
    fn assert_fatal(&self, words: &[&str]) {
        assert_eq!(self.code, Some(2), "{}", self.all());
        let errors = self.error_lines();
        assert_eq!(errors.len(), 1, "one ERROR line expected:\n{}", self.all());
        for word in words {
            assert!(
                errors[0].contains(word),
                "{word:?} not in the ERROR line: {}",
                errors[0]
            );
        }
    }

    fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "{}", self.all());
    }
}

/// Runs `cmd` to completion within [`LIMIT`], output captured in files under `dir` (a pipe
/// could fill up and block a chatty child).
fn run_bounded(mut cmd: Command, dir: &Path) -> Ran {
    std::fs::create_dir_all(dir).expect("output dir");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let (out_path, err_path) = (dir.join(format!("{n}.out")), dir.join(format!("{n}.err")));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("etl starts");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "etl did not exit within {LIMIT:?}:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Every file under `dir`, recursively, as text (the log, reason files, captured output).
fn all_text_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(all_text_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn require_encrypts_without_checking_the_certificate() {
    // The client knows no CA at all: to it the server's certificate is as good as self-signed.
    // The role may log in over TLS only (hostssl), so success proves the connection was TLS.
    let case = Case::new();
    let url = case.url(Some(PASSWORD), "localhost", "sslmode=require");
    case.run(&url, &["migrate"]).assert_ok();
}

#[test]
fn verify_full_with_the_right_ca_connects() {
    let case = Case::new();
    let url = case.url(
        Some(PASSWORD),
        "localhost",
        &format!("sslmode=verify-full&{}", case.ca()),
    );
    case.run(&url, &["migrate"]).assert_ok();
    case.fill_inbox();
    case.run(&url, &["run", "--drain"]).assert_ok();
    assert_eq!(common::count(&case.config.done("users")), 5);
    assert_eq!(common::count(&case.config.done("cards")), 5);
}

#[test]
fn verify_full_with_a_wrong_ca_is_fatal() {
    let case = Case::new();
    let url = case.url(
        Some(PASSWORD),
        "localhost",
        &format!("sslmode=verify-full&{}", case.other_ca()),
    );
    case.run(&url, &["migrate"])
        .assert_fatal(&["not signed by a trusted CA", "sslrootcert"]);
}

#[test]
fn verify_full_with_a_wrong_host_name_is_fatal() {
    // The certificate names `localhost` only.
    let case = Case::new();
    let url = case.url(
        Some(PASSWORD),
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", case.ca()),
    );
    case.run(&url, &["migrate"])
        .assert_fatal(&["does not name the host", "verify-ca"]);
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let case = Case::new();
    let right = case.url(
        Some(PASSWORD),
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", case.ca()),
    );
    case.run(&right, &["migrate"]).assert_ok();
    let wrong = case.url(
        Some(PASSWORD),
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", case.other_ca()),
    );
    case.run(&wrong, &["migrate"])
        .assert_fatal(&["not signed by a trusted CA"]);
}

#[test]
fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
    let case = Case::new();
    let url = case.url(
        Some(PASSWORD),
        "127.0.0.1",
        &format!("sslmode=require&{}", case.other_ca()),
    );
    case.run(&url, &["migrate"])
        .assert_fatal(&["not signed by a trusted CA"]);
}

#[test]
fn a_server_without_tls_refuses_require() {
    let db = testkit::pg::fresh_db();
    let case = Case::new();
    let url = format!("{}?sslmode=require", db.url);
    case.run(&url, &["migrate"])
        .assert_fatal(&["does not accept TLS", "sslmode"]);
}

#[test]
fn a_server_demanding_tls_refuses_sslmode_disable() {
    let case = Case::new();
    let url = case.url(Some(PASSWORD), "localhost", "sslmode=disable");
    case.run(&url, &["migrate"])
        .assert_fatal(&["no pg_hba.conf entry", "sslmode"]);
}

// ---------------------------------------------------------------------------------------------
// Fatal start-up errors
// ---------------------------------------------------------------------------------------------

#[test]
fn a_wrong_password_is_said_once_in_run_migrate_and_status() {
    let case = Case::new();
    case.fill_inbox();
    let url = case.url(Some(WRONG_PASSWORD), "localhost", "sslmode=require");
    for args in [&["run"][..], &["run", "--drain"], &["migrate"], &["status"]] {
        let ran = case.run(&url, args);
        ran.assert_fatal(&["password authentication failed", "fix the password"]);
        assert!(
            !ran.all().contains(WRONG_PASSWORD),
            "{args:?}: {}",
            ran.all()
        );
    }
    // Nothing was touched: the files wait in the inbox.
    assert_eq!(common::count(&case.config.inbox("users")), 6);
}

#[test]
fn no_password_at_all_is_fatal() {
    let case = Case::new();
    let url = case.url(None, "localhost", "sslmode=require");
    case.run(&url, &["migrate"])
        .assert_fatal(&["asks for a password", "database_password_file"]);
}

#[test]
fn an_unknown_database_is_fatal() {
    let case = Case::new();
    let port = secure().cluster.port();
    let url = format!("postgres://{ROLE}:{PASSWORD}@localhost:{port}/no_such_db?sslmode=require");
    for args in [&["migrate"][..], &["run", "--drain"], &["status"]] {
        case.run(&url, args)
            .assert_fatal(&["no_such_db", "does not exist"]);
    }
}

#[test]
fn a_missing_config_file_is_fatal() {
    let case = Case::new();
    let url = case.url(Some(PASSWORD), "localhost", "sslmode=require");
    for args in [&["migrate"][..], &["run", "--drain"], &["status"]] {
        let mut all = vec!["--config", "/no/such.toml"];
        all.extend_from_slice(args);
        case.run(&url, &all)
            .assert_fatal(&["/no/such.toml", "--config"]);
    }
    // The default file may be absent (this case's folder has none).
    case.run(&url, &["migrate"]).assert_ok();
}

#[test]
fn status_with_nothing_listening_fails() {
    let case = Case::new();
    // Nothing listens there: a port that was free a moment ago.
    let port = testkit::ports::free_port();
    let url = format!("postgres://{ROLE}:{PASSWORD}@127.0.0.1:{port}/db");
    let ran = case.run(&url, &["status"]);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stdout.contains("warehouse unreachable"),
        "{}",
        ran.all()
    );
    assert_eq!(ran.error_lines().len(), 1, "{}", ran.all());
    assert!(!ran.all().contains(PASSWORD), "{}", ran.all());
}

#[test]
fn an_invalid_sslrootcert_is_fatal() {
    let case = Case::new();
    let url = case.url(
        Some(PASSWORD),
        "localhost",
        "sslmode=verify-full&sslrootcert=/no/such/ca.pem",
    );
    case.run(&url, &["migrate"])
        .assert_fatal(&["sslrootcert", "/no/such/ca.pem"]);
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

#[test]
fn the_url_and_the_password_can_come_from_files() {
    let case = Case::new();
    // The URL from ETL_DATABASE_URL_FILE, without a password...
    let url_file = case.path("url.secret");
    let url = case.url(
        None,
        "localhost",
        &format!("sslmode=verify-full&{}", case.ca()),
    );
    std::fs::write(&url_file, format!("{url}\n")).expect("write URL file");
    // ...and the password from the file `database_password_file` names, in a config file.
    let password_file = case.path("password.secret");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write password file");
    let config_file = case.path("etl.toml");
    std::fs::write(
        &config_file,
        format!(
            "database_password_file = {:?}\n",
            password_file.display().to_string()
        ),
    )
    .expect("write config");
    case.fill_inbox();
    for args in [&["migrate"][..], &["run", "--drain"], &["status"]] {
        let mut cmd = case.etl("", args);
        cmd.env("ETL_DATABASE_URL_FILE", &url_file);
        let ran = run_bounded(cmd, &case.path("out"));
        ran.assert_ok();
        assert!(!ran.all().contains(PASSWORD), "{}", ran.all());
    }
    assert_eq!(common::count(&case.config.done("users")), 5);

    // A wrong password in the file is as fatal as in the URL.
    std::fs::write(&password_file, WRONG_PASSWORD).expect("write password file");
    let mut cmd = case.etl("", &["migrate"]);
    cmd.env("ETL_DATABASE_URL_FILE", &url_file);
    run_bounded(cmd, &case.path("out")).assert_fatal(&["password authentication failed"]);

    // A secret file that is missing is named, and fatal.
    let mut cmd = case.etl("", &["migrate"]);
    cmd.env("ETL_DATABASE_URL_FILE", case.path("missing.secret"));
    run_bounded(cmd, &case.path("out")).assert_fatal(&["database_url_file", "missing.secret"]);
}

#[test]
fn a_password_is_never_printed() {
    let case = Case::new();
    case.fill_inbox();
    let right = case.url(Some(PASSWORD), "localhost", "sslmode=require");
    let wrong = case.url(Some(WRONG_PASSWORD), "localhost", "sslmode=require");
    // Debug logging too: whatever the libraries log must not carry it either.
    for (url, args) in [
        (&wrong, &["run", "--drain"][..]),
        (&wrong, &["migrate"]),
        (&wrong, &["status"]),
        (&right, &["migrate"]),
        (&right, &["run", "--drain"]),
        (&right, &["status"]),
    ] {
        let mut cmd = case.etl(url, args);
        cmd.env("RUST_LOG", "debug");
        run_bounded(cmd, &case.path("out"));
    }
    // The right password did its work: the valid files are loaded, the broken one rejected.
    assert_eq!(common::count(&case.config.done("users")), 5);
    let failed = case.config.failed("users");
    assert!(common::finished(&failed, "broken.json").exists());

    // Everything the runs wrote: captured stdout/stderr, data/logs/etl.log*, reason files.
    let texts = all_text_under(case.dir.path());
    assert!(texts
        .iter()
        .any(|(p, _)| p.to_string_lossy().contains("etl.log")));
    assert!(texts
        .iter()
        .any(|(p, _)| p.to_string_lossy().ends_with(".error.json")));
    for (path, text) in &texts {
        if path.extension().is_some_and(|e| e == "pem") {
            continue;
        }
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(
                !text.contains(secret),
                "{} contains the password:\n{text}",
                path.display()
            );
        }
    }
    // The redacted URL is what is shown.
    let status = texts
        .iter()
        .find(|(_, t)| t.contains("warehouse postgres://"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    assert!(
        status.contains(&format!("{ROLE}:***@localhost")),
        "{status}"
    );
}
