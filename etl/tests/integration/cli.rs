//! The command line as an operator meets it: every command and argument of every `--help` has
//! a description, and the top-level help says what the tool does with each of its sources;
//! listings have a header row; and a start on an already migrated warehouse logs no server
//! NOTICE about the migrations table.

use crate::common;

use std::process::Output;

use common::*;

/// `etl <path…> --help`, which must succeed.
fn help(path: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(path)
        .arg("--help")
        .output()
        .expect("etl runs");
    assert!(out.status.success(), "etl {path:?} --help: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// One entry of a help page's `Commands:`, `Arguments:` or `Options:` section.
#[derive(Debug)]
struct Entry {
    section: String,
    spec: String,
    description: String,
}

/// A description without what clap adds by itself (`[default: …]`, `[possible values: …]`): an
/// argument with only those has no description.
fn own_words(text: &str) -> String {
    let mut rest = text.to_owned();
    for tag in ["[default: ", "[possible values: ", "[env: ", "[aliases: "] {
        while let Some(start) = rest.find(tag) {
            let end = rest[start..]
                .find(']')
                .map_or(rest.len(), |e| start + e + 1);
            rest.replace_range(start..end, "");
        }
    }
    rest.trim().to_owned()
}

/// The entries of a clap help page, in either layout: the description on the entry's own line
/// after two spaces or more, or (long help) on the lines below it, indented further. A long
/// help's "Possible values:" list describes the values, not the argument, and is left out.
fn entries(page: &str) -> Vec<Entry> {
    let mut found: Vec<Entry> = Vec::new();
    let mut section = String::new();
    let mut in_values = false;
    for line in page.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 0 && !text.is_empty() {
            // A section title ("Options:") or the page's own text.
            section = text.strip_suffix(':').unwrap_or("").to_owned();
            continue;
        }
        if !["Commands", "Arguments", "Options"].contains(&section.as_str()) || text.is_empty() {
            continue;
        }
        let is_entry = if section == "Commands" {
            indent == 2
        } else {
            (2..=6).contains(&indent) && text.starts_with(['-', '<', '['])
        };
        if is_entry {
            in_values = false;
            let (spec, description) = text.split_once("  ").unwrap_or((text, ""));
            found.push(Entry {
                section: section.clone(),
                spec: spec.trim().to_owned(),
                description: own_words(description),
            });
        } else if text == "Possible values:" {
            in_values = true;
        } else if let Some(last) = found.last_mut() {
            // A continuation, or a long help's description below its entry.
            let words = own_words(text);
            if in_values || words.is_empty() {
                continue;
            }
            if !last.description.is_empty() {
                last.description.push(' ');
            }
            last.description.push_str(&words);
        }
    }
    found
}

#[test]
fn every_command_and_argument_has_a_description_and_the_help_names_every_source() {
    // What the tool does: the text above the usage line, not the commands' descriptions.
    let top = help(&[]);
    let about = top.split("Usage:").next().unwrap_or_default();
    for source in ["files", "JetStream", "HTTP API"] {
        assert!(
            about.contains(source),
            "the top-level help does not say what etl does with {source}:\n{top}"
        );
    }

    let mut pages = vec![Vec::<String>::new()];
    let mut seen = 0;
    let mut undescribed = Vec::new();
    while let Some(path) = pages.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let page = help(&args);
        let found = entries(&page);
        assert!(
            found.iter().any(|e| e.section == "Options"),
            "no options parsed from etl {args:?} --help:\n{page}"
        );
        for entry in found {
            seen += 1;
            if entry.description.is_empty() {
                undescribed.push(format!(
                    "etl {} --help: {} `{}`",
                    path.join(" "),
                    entry.section,
                    entry.spec
                ));
            }
            if entry.section == "Commands" && entry.spec != "help" {
                let mut sub = path.clone();
                sub.push(entry.spec.clone());
                pages.push(sub);
            }
        }
    }
    assert!(
        seen > 40,
        "only {seen} entries parsed: the parser is broken"
    );
    assert!(
        undescribed.is_empty(),
        "without a description:\n{}",
        undescribed.join("\n")
    );
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A broker dead letter of `type_name` stored as the daemon stores one (`event_id` is SQL: a
/// quoted literal or `NULL`).
fn store_dead_letter(env: &Env, type_name: &str, event_id: &str, code: &str, reason: &str) {
    let reason = reason.replace('\'', "''");
    testkit::pg::psql(
        &env.db.url,
        &format!(
            "INSERT INTO rejected_events (source, origin, subject, type, event_id, code, reason, bytes)
             VALUES ('jetstream', 'nats://broker:4222', 'events.{type_name}', '{type_name}', {event_id},
                     '{code}', jsonb_build_object('reason', '{reason}'), '\\x7b7d'::bytea)"
        ),
    )
    .expect("a dead letter");
}

#[test]
fn listings_have_a_header_row() {
    let env = Env::new();
    stdout_of(&env.run_etl(&["migrate"]));
    store_dead_letter(
        &env,
        "cards",
        "'e-1'",
        "schema",
        "\"user_id\" is a required property",
    );

    // `etl dead-letters list`: a header naming the tab-separated columns, then one row each,
    // then the count.
    let listed = stdout_of(&env.run_etl(&["dead-letters", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines.first().map(|l| l.split('\t').collect::<Vec<_>>()),
        Some(vec![
            "id",
            "rejected_at",
            "source",
            "type",
            "event_id",
            "code",
            "reason"
        ]),
        "{listed}"
    );
    assert_eq!(lines.len(), 3, "{listed}");
    assert_eq!(lines[1].split('\t').count(), 7, "{listed}");
    assert!(
        lines[1].ends_with("\tcards\te-1\tschema\t\"user_id\" is a required property"),
        "{listed}"
    );
    assert_eq!(lines[2], "1 dead letter(s)", "{listed}");

    // `etl status`: each table has its header row before its rows.
    let status = stdout_of(&env.run_etl(&["status"]));
    let lines: Vec<Vec<&str>> = status
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let files = lines
        .iter()
        .position(|w| w.first() == Some(&"files"))
        .unwrap_or_else(|| panic!("no header row of the files table:\n{status}"));
    assert_eq!(lines[files][1..3], ["inbox", "failed"], "{status}");
    for kind in TYPES {
        let row = lines.iter().position(|w| w.first() == Some(&kind));
        assert!(row.is_some_and(|r| r > files), "{kind}:\n{status}");
    }
    let tables = lines
        .iter()
        .position(|w| *w == ["table", "rows"])
        .unwrap_or_else(|| panic!("no header row of the rows table:\n{status}"));
    assert!(
        lines[tables + 1..]
            .iter()
            .any(|w| w.first() == Some(&"cards") && w.len() == 2),
        "{status}"
    );
}

#[test]
fn a_start_on_a_migrated_warehouse_logs_no_notice_about_the_migrations_table() {
    let env = Env::new();
    let mut logged = String::new();
    for _ in 0..2 {
        let out = env.run_etl(&["run", "--drain"]);
        logged.push_str(&String::from_utf8_lossy(&out.stdout));
        logged.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{logged}");
    }
    for entry in std::fs::read_dir(env.config.data_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            logged.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    assert!(
        logged.matches("pipeline started").count() >= 2,
        "the test does not see both starts' lines:\n{logged}"
    );
    let notices: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("NOTICE") || l.contains("already exists"))
        .collect();
    assert!(notices.is_empty(), "{}", notices.join("\n"));
}

/// An unknown `--type` exits 2 naming the declared types, in every command that takes one;
/// `dead-letters` also takes a type its rows hold (broker messages of an undeclared type are
/// dead-lettered under the type their subject names).
#[test]
fn an_unknown_type_exits_2_with_the_declared_names_in_every_command() {
    let env = Env::new();
    stdout_of(&env.run_etl(&["migrate"]));
    store_dead_letter(&env, "nonsense", "NULL", "wrong_folder", "no such type");
    let lake = env.dir.path().join("lake");
    let lake = lake.to_str().expect("UTF-8 path");
    for args in [
        vec!["replay", "--type", "widgets"],
        vec![
            "export", "--format", "parquet", "--to", lake, "--type", "widgets",
        ],
        vec!["dead-letters", "list", "--type", "widgets"],
        vec!["dead-letters", "replay", "--type", "widgets"],
    ] {
        let out = env.run_etl(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "etl {args:?}: {stderr}");
        assert!(
            stderr.contains("--type widgets: no such event type")
                && stderr.contains("users")
                && stderr.contains("cards"),
            "etl {args:?}: {stderr}"
        );
    }
    // The dead letters' own type is accepted, and lists its row.
    let listed = stdout_of(&env.run_etl(&["dead-letters", "list", "--type", "nonsense"]));
    assert!(listed.contains("\tnonsense\t"), "{listed}");
    assert!(listed.contains("1 dead letter(s)"), "{listed}");
    let unknown = env.run_etl(&["dead-letters", "list", "--type", "widgets"]);
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("held by dead letters: nonsense"),
        "{unknown:?}"
    );
}
