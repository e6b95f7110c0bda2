//! The docs' examples, run: every shell, SQL, Python and TOML block that a reader would copy
//! from the Markdown files in [`DOCS`] runs against a real `etl` daemon and PostgreSQL, in a
//! scratch copy of the project, so an example that has stopped being true fails here.
//!
//! What a block's info string (the words after its opening fence) means:
//! - `sh`, `sql`, `python`, `toml`: run (`bash -eo pipefail`, `psql -v ON_ERROR_STOP=1` on the
//!   warehouse, `python3`), or for TOML: `toml file=<path>` must hold the same data as that file
//!   of the repository, and `toml config` is written to `etl.toml` and loaded by the real binary
//!   (`etl --config etl.toml status`).
//! - `… skip: <reason>`: not run here, and why (it starts the whole stack, needs Docker or a
//!   secret mount, follows a log for ever, runs the test suite itself). The harness prints each
//!   one; skipped blocks must stay a minority.
//! - `sh background`: a server the next blocks talk to (`etl serve`); started, waited for until
//!   its address answers, and stopped after the file's last block.
//! - `text output` right after a block: that block's expected standard output, compared after
//!   normalising times, dates, UUIDs and runs of spaces.
//!
//! Blocks in other languages (`json` shapes, `mermaid` drawings, unlabelled text) are shown,
//! not run.
//!
//! The reader's setting is the one `./rerun.sh` gives natively: the project folder as the
//! working directory (`data/`, `schemas/`, `types/`, `db/migrations/` in it), the reference
//! samples drained by a running `etl run`, `etl` on the `PATH` and at `target/release/etl`, and
//! `ETL_DATABASE_URL` exported. Three addresses the docs name are this harness's own instead
//! (and are exported as `ETL_HTTP_ADDR` and `ETL_SERVE_ADDR`, where a reader has the defaults):
//! the warehouse URL `postgres://postgres@127.0.0.1:54329/dwh`, the daemon's `127.0.0.1:9187`
//! and the read API's `localhost:8080` (each a free port here, so the test never collides with
//! a running stack).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{files_in, wait_until, Env};

/// The Markdown files whose examples are run: the README and every page of the book
/// (`docs/src/`) that has a block to run or skip. Each file gets a fresh project, so a page's
/// blocks may depend on its earlier blocks (an `sh background` server, then `curl`), never on
/// another page's.
const DOCS: &[&str] = &[
    "README.md",
    "docs/src/guide/start.md",
    "docs/src/guide/add-a-type.md",
    "docs/src/guide/fix-and-replay.md",
    "docs/src/guide/operate.md",
    "docs/src/guide/scale-out.md",
    "docs/src/guide/http-apis.md",
    "docs/src/guide/lake.md",
    "docs/src/guide/read-api.md",
    "docs/src/reference/commands.md",
    "docs/src/deployment.md",
];

/// The longest any one example may take; one that runs longer has hung.
const BLOCK_LIMIT: Duration = Duration::from_secs(120);

/// One fenced block.
#[derive(Debug)]
struct Block {
    /// The line of its opening fence (1-based), for messages.
    line: usize,
    lang: String,
    /// The rest of the info string after the language.
    attrs: String,
    body: String,
    /// The `text output` block right after it, if any.
    expected: Option<String>,
}

/// The fenced blocks of a Markdown text, with each `output` block attached to the block before.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut open: Option<(usize, String, String, usize, Vec<String>)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let info = info.trim();
                    let (lang, attrs) = info.split_once(' ').unwrap_or((info, ""));
                    open = Some((
                        i + 1,
                        lang.to_owned(),
                        attrs.trim().to_owned(),
                        indent,
                        vec![],
                    ));
                }
            }
            Some((_, _, _, fence_indent, lines)) => {
                if trimmed.starts_with("```") {
                    let Some((line, lang, attrs, _, lines)) = open.take() else {
                        unreachable!()
                    };
                    let body = lines.join("\n") + "\n";
                    if lang == "text" && attrs == "output" {
                        let previous = blocks.last_mut().filter(|b| b.expected.is_none());
                        let previous = previous.unwrap_or_else(|| {
                            panic!("line {line}: an output block with no block before it")
                        });
                        previous.expected = Some(body);
                    } else {
                        blocks.push(Block {
                            line,
                            lang,
                            attrs,
                            body,
                            expected: None,
                        });
                    }
                } else {
                    // A block inside a list item is indented with it.
                    let cut = line.len() - line.trim_start().len();
                    lines.push(line[cut.min(*fence_indent)..].to_owned());
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    blocks
}

/// `text` with what differs from run to run replaced: times, dates, UUIDs, space runs.
fn normalised(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = Vec::new();
        for word in line.split_whitespace() {
            words.push(normalised_word(word));
        }
        out.push(words.join(" "));
    }
    out.join("\n").trim().to_owned()
}

fn normalised_word(word: &str) -> String {
    let bytes = word.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &word[i..];
        let digits_at = |s: &str, positions: &[usize]| {
            positions
                .iter()
                .all(|&p| s.as_bytes().get(p).is_some_and(u8::is_ascii_digit))
        };
        let is_uuid = rest.len() >= 36
            && rest.is_char_boundary(36)
            && uuid::Uuid::parse_str(&rest[..36]).is_ok();
        if is_uuid {
            out.push_str("<uuid>");
            i += 36;
        } else if rest.len() >= 10
            && digits_at(rest, &[0, 1, 2, 3, 5, 6, 8, 9])
            && rest.as_bytes()[4] == b'-'
            && rest.as_bytes()[7] == b'-'
        {
            out.push_str("<date>");
            i += 10;
        } else if rest.len() >= 8
            && digits_at(rest, &[0, 1, 3, 4, 6, 7])
            && rest.as_bytes()[2] == b':'
            && rest.as_bytes()[5] == b':'
        {
            out.push_str("<time>");
            i += 8;
            // Fractions and zones belong to the time.
            while i < bytes.len() && (bytes[i].is_ascii_digit() || b".Z+:".contains(&bytes[i])) {
                i += 1;
            }
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// The project as a reader has it after `./rerun.sh`, and the servers the examples talk to.
struct Reader {
    env: Env,
    /// The project folder: the working directory of every example.
    root: PathBuf,
    /// `etl` for the `PATH`.
    bin: PathBuf,
    daemon_addr: String,
    serve_addr: String,
    daemon: Child,
    /// Servers started by `background` blocks, stopped after each file.
    background: Vec<(usize, Child)>,
}

impl Reader {
    fn new() -> Reader {
        let env = Env::new();
        let root = env.dir.path().to_path_buf();
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        for folder in ["schemas", "types", "db/migrations"] {
            copy_dir(&repo.join(folder), &root.join(folder));
        }
        common::copy_samples(&env);
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::create_dir_all(root.join("target/release")).expect("mkdir target");
        for link in [bin.join("etl"), root.join("target/release/etl")] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_etl"), link).expect("link etl");
        }
        let daemon_addr = common::free_addr();
        let serve_addr = common::free_addr();
        let mut reader = Reader {
            env,
            root,
            bin,
            daemon_addr,
            serve_addr,
            daemon: Command::new("true").spawn().expect("placeholder"),
            background: Vec::new(),
        };
        let log = std::fs::File::create(reader.root.join("daemon.stdout")).expect("log");
        reader.daemon = reader
            .command("etl")
            .args(["run"])
            .env("ETL_HTTP_ADDR", &reader.daemon_addr)
            .env("ETL_SETTLE_MS", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etl run starts");
        let drained = wait_until(Duration::from_secs(120), || {
            files_in(&reader.env, "inbox").is_empty()
                && common::try_get(&reader.daemon_addr, "/readyz").is_some_and(|(c, _)| c == 200)
        });
        assert!(drained, "the daemon did not drain the samples");
        reader
    }

    /// A command as the reader's shell runs it: in the project folder, `etl` on the `PATH`,
    /// `ETL_DATABASE_URL` exported.
    fn command(&self, program: &str) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("PATH", path)
            .env("ETL_DATABASE_URL", &self.env.db.url)
            .env("ETL_SERVE_ADDR", &self.serve_addr)
            .env("ETL_HTTP_ADDR", &self.daemon_addr)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            // The test's own settings are not the reader's.
            let ours = ["ETL_DATABASE_URL", "ETL_SERVE_ADDR", "ETL_HTTP_ADDR"];
            if key.starts_with("ETL_") && !ours.contains(&key.as_str()) {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// The docs' addresses made this harness's.
    fn localised(&self, text: &str) -> String {
        text.replace("postgres://postgres@127.0.0.1:54329/dwh", &self.env.db.url)
            .replace("127.0.0.1:9187", &self.daemon_addr)
            .replace("localhost:8080", &self.serve_addr)
    }

    /// Runs one block; `Err` says why it failed.
    fn run(&mut self, block: &Block) -> Result<(), String> {
        let body = self.localised(&block.body);
        let output = match (block.lang.as_str(), block.attrs.as_str()) {
            ("sh", "background") => return self.start_background(block.line, &body),
            ("sh", "") => self
                .command("bash")
                .args(["-eo", "pipefail", "-c", &body])
                .bounded_output(),
            ("sql", "") => self
                .command("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    &self.env.db.url,
                    "-c",
                    &body,
                ])
                .bounded_output(),
            ("python", "") => self.command("python3").args(["-c", &body]).bounded_output(),
            ("toml", attrs) if attrs.starts_with("file=") => {
                return same_toml(&body, &self.root.join(&attrs["file=".len()..]))
            }
            ("toml", "config") => {
                std::fs::write(self.root.join("etl.toml"), &body).map_err(|e| e.to_string())?;
                let output = self
                    .command("etl")
                    .args(["--config", "etl.toml", "status"])
                    .env("CRM_API_KEY", "a-key-for-the-docs-test")
                    .bounded_output();
                let _ = std::fs::remove_file(self.root.join("etl.toml"));
                output
            }
            (lang, attrs) => {
                return Err(format!(
                    "unknown info string `{lang} {attrs}` (see etl/tests/integration/docs.rs for the forms)"
                ))
            }
        };
        let output = output.map_err(|e| format!("cannot start: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        if let Some(expected) = &block.expected {
            let (want, got) = (normalised(&self.localised(expected)), normalised(&stdout));
            if want != got {
                return Err(format!("expected output:\n{want}\nbut got:\n{got}"));
            }
        }
        Ok(())
    }

    fn start_background(&mut self, line: usize, body: &str) -> Result<(), String> {
        let log = std::fs::File::create(self.root.join(format!("background-{line}.log")))
            .map_err(|e| e.to_string())?;
        let child = self
            .command("bash")
            .args(["-c", &format!("exec {}", body.trim())])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.background.push((line, child));
        let addr = self.serve_addr.clone();
        if wait_until(Duration::from_secs(60), || {
            std::net::TcpStream::connect(&addr).is_ok()
        }) {
            Ok(())
        } else {
            Err(format!("nothing answered on {addr}"))
        }
    }

    fn stop_background(&mut self) {
        for (_, mut child) in self.background.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop_background();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Runs a block's command with [`BLOCK_LIMIT`] as a bound (a hung example fails, not the suite).
trait Bounded {
    fn bounded_output(&mut self) -> std::io::Result<std::process::Output>;
}

impl Bounded for Command {
    fn bounded_output(&mut self) -> std::io::Result<std::process::Output> {
        let dir = tempfile::tempdir()?;
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut child = self
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()?;
        let mut status = None;
        wait_until(BLOCK_LIMIT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = match status {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "still running after {BLOCK_LIMIT:?}"
                )));
            }
        };
        Ok(std::process::Output {
            status,
            stdout: std::fs::read(out)?,
            stderr: std::fs::read(err)?,
        })
    }
}

fn same_toml(block: &str, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let shown: toml::Table = toml::from_str(block).map_err(|e| format!("the block: {e}"))?;
    let real: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    if shown == real {
        Ok(())
    } else {
        Err(format!(
            "the block differs from {}:\n{shown:#?}\nvs\n{real:#?}",
            file.display()
        ))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

/// The languages whose blocks are examples to run.
const RUN: &[&str] = &["sh", "sql", "python", "toml"];

#[test]
fn every_example_in_the_docs_runs_and_shows_what_it_says() {
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for doc in DOCS {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(doc);
        let markdown = std::fs::read_to_string(&path).expect("the doc exists");
        // A fresh project per file: one file's examples cannot break the next one's.
        let mut reader = Reader::new();
        for block in blocks(&markdown) {
            if !RUN.contains(&block.lang.as_str()) {
                continue;
            }
            if let Some(reason) = block.attrs.strip_prefix("skip:") {
                println!(
                    "skipped {doc}:{} ({}): {}",
                    block.line,
                    block.lang,
                    reason.trim()
                );
                skipped += 1;
                continue;
            }
            ran += 1;
            match reader.run(&block) {
                Ok(()) => println!("ran     {doc}:{} ({})", block.line, block.lang),
                Err(why) => {
                    println!("FAILED  {doc}:{} ({})", block.line, block.lang);
                    failures.push(format!("{doc}:{}:\n{}\n{why}", block.line, block.body));
                }
            }
        }
        reader.stop_background();
    }
    println!("{ran} examples ran, {skipped} skipped");
    assert!(
        failures.is_empty(),
        "{} example(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        skipped < ran,
        "skipped blocks must stay a minority ({skipped} skipped, {ran} ran)"
    );
}

#[test]
fn blocks_and_their_outputs_are_read_as_a_reader_sees_them() {
    let markdown = "text\n\n```sh\necho hi\n```\n\n```text output\nhi\n```\n\n- item:\n\n  ```sql skip: needs a stack\n  SELECT 1;\n  ```\n";
    let found = blocks(markdown);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].body, "echo hi\n");
    assert_eq!(found[0].expected.as_deref(), Some("hi\n"));
    assert_eq!(found[1].lang, "sql");
    assert_eq!(found[1].attrs, "skip: needs a stack");
    assert_eq!(found[1].body, "SELECT 1;\n");
    assert_eq!(
        normalised("at 2026-12-05T21:22:29.123Z id 0d133695-94a0-4f08-88ca-593745d25e77   x"),
        "at <date>T<time> id <uuid> x"
    );
}

/// A book page with an example to run that is missing from [`DOCS`] would never be run.
#[test]
fn every_book_page_with_examples_is_in_the_list() {
    fn pages(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read docs/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pages(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut found = Vec::new();
    pages(&repo.join("docs/src"), &mut found);
    assert!(!found.is_empty(), "no book under docs/src");
    for page in found {
        let markdown = std::fs::read_to_string(&page).expect("read a page");
        let runs = blocks(&markdown)
            .iter()
            .any(|b| RUN.contains(&b.lang.as_str()));
        let name = page
            .strip_prefix(repo)
            .expect("under the repository")
            .to_string_lossy()
            .into_owned();
        assert!(
            !runs || DOCS.contains(&name.as_str()),
            "{name} has examples to run: add it to DOCS in etl/tests/integration/docs.rs"
        );
    }
}
