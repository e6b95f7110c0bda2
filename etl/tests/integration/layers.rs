//! The crates' import structure, checked: which source file imports which (`use crate::…`,
//! `super::…`, `self::…` and inline `crate::…` paths), and the circles in that graph. Within
//! one crate the compiler allows a module to import one that imports it back; this test is the
//! repository's own check that such circles only shrink.
//!
//! Today's circles are listed in [`KNOWN_CIRCLES`] (issue 30 removes them). A new circle, or a
//! known one that grew, fails the test with the edges that close it; a circle that is gone
//! fails it too, so the list is kept exact and the progress shows in the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The circles that exist today, each as its sorted files (relative to `etl/src`): none. The
/// 21-file circle across modules measured on 2026-12-05 (the event, the decoder, the catalog,
/// the configuration, the loader, the lake, the pipeline and the HTTP endpoints), the two small
/// ones, and the parent/child circles of `catalog/` and `lake/` are gone; keep it so.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// The `src` folder of the workspace's crate `name` (`etl`, `etl-core`).
fn src_of(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

/// Every `.rs` file under `dir`, relative to `root`.
fn sources(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root).expect("under src").to_path_buf());
        }
    }
}

/// The module path of a file: `source/inbox/mod.rs` → `[source, inbox]`, `lib.rs` → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of(path: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for len in (0..=path.len()).rev() {
        let prefix = &path[..len];
        if prefix.is_empty() {
            return Some(PathBuf::from("lib.rs"));
        }
        let joined: PathBuf = prefix.iter().collect();
        for candidate in [joined.with_extension("rs"), joined.join("mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// A `crate::`, `self::` or `super::` path (or a path relative to `here`, as `pub use` trees
/// in a module are) made absolute, without the leading `crate`.
fn absolute_path(here: &[String], mut segments: Vec<String>) -> Vec<String> {
    match segments.first().map(String::as_str) {
        Some("crate") => segments.split_off(1),
        Some("self") => [here.to_vec(), segments.split_off(1)].concat(),
        Some("super") => {
            let mut base = here.to_vec();
            while segments.first().map(String::as_str) == Some("super") {
                segments.remove(0);
                base.pop();
            }
            [base, segments].concat()
        }
        _ => [here.to_vec(), segments].concat(),
    }
}

/// The file that defines what `path` names, following re-exports (a few levels at most).
fn through_reexports(
    path: &[String],
    files: &BTreeSet<PathBuf>,
    reexports: &BTreeMap<PathBuf, BTreeMap<String, Vec<String>>>,
    depth: usize,
) -> Option<PathBuf> {
    let file = file_of(path, files)?;
    if depth < 5 {
        let module = module_of(&file);
        if path.len() > module.len() && path[..module.len()] == module[..] {
            let item = &path[module.len()];
            if let Some(target) = reexports.get(&file).and_then(|items| items.get(item)) {
                if target.as_slice() != path {
                    return through_reexports(target, files, reexports, depth + 1);
                }
            }
        }
    }
    Some(file)
}

/// The source text without comments (doc links name paths that are not imports) and without
/// the `#[cfg(test)]` module at the end of a file (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_owned()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// Every path a file's code names that starts at `crate`, `super` or `self`.
fn paths_in(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    // `use` statements (at the start of a line), whose trees can group paths in braces.
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim_start();
        if statement.is_none() {
            let rest = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|start| trimmed.strip_prefix(start));
            let Some(rest) = rest else { continue };
            statement = Some(String::new());
            if let Some(s) = statement.as_mut() {
                s.push_str(rest);
            }
        } else if let Some(s) = statement.as_mut() {
            s.push(' ');
            s.push_str(trimmed);
        }
        if let Some(s) = statement.take_if(|s| s.contains(';')) {
            let tree = s[..s.find(';').unwrap_or(s.len())].to_owned();
            let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
            paths.extend(expand(&tree));
        }
    }
    // Inline paths: `crate::a::b`, `super::x`.
    for start in ["crate::", "super::", "self::"] {
        paths.extend(inline_paths(code, start));
    }
    paths
}

/// Every path in `code` that starts with `start` (`crate::`, `http::`) at a word boundary.
fn inline_paths(code: &str, start: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(start) {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let path = tail[..end].trim_end_matches(':');
        // `super::{a, b}` is a use tree, read with the `use` statements; alone, `super` names
        // nothing.
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            && path.contains("::")
        {
            paths.push(path.to_owned());
        }
        rest = &rest[at + start.len()..];
    }
    paths
}

/// The file-level import graph of one crate's `src` folder (paths into other crates, such as
/// `etl_core::…` from `etl`, are not edges: the compiler already forbids circles between crates).
fn graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    sources(src, src, &mut files);
    let known: BTreeSet<PathBuf> = files.iter().cloned().collect();
    // What each file re-exports (`pub use x::Item;`): item → its absolute path. A path to an
    // item a module only re-exports leads to the file that defines it, so a module's `mod.rs`
    // listing its children's items is not an import of them by everyone who names the item.
    let mut reexports: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(src.join(file)).expect("read source");
        let here = module_of(file);
        let mut items = BTreeMap::new();
        for line in code_of(&text).lines() {
            let Some(tree) = line.trim_start().strip_prefix("pub use ") else {
                continue;
            };
            let tree = tree.trim_end_matches(';');
            for path in expand(tree) {
                let segments: Vec<String> = path.split("::").map(str::to_owned).collect();
                let absolute = absolute_path(&here, segments);
                if let Some(item) = absolute.last() {
                    items.insert(item.clone(), absolute.clone());
                }
            }
        }
        reexports.insert(file.clone(), items);
    }
    let mut edges = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(src.join(file)).expect("read source");
        let here = module_of(file);
        let mut targets = BTreeSet::new();
        let code = code_of(&text);
        // Paths that start at a child module (`http::HttpConfig` beside `pub mod http;`).
        let children: Vec<String> = code
            .lines()
            .filter_map(|line| {
                let line = line.trim_start().trim_start_matches("pub ");
                let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
                Some(name.trim().to_owned())
            })
            .collect();
        let mut paths = paths_in(&code);
        for child in &children {
            let found = inline_paths(&code, &format!("{child}::"));
            paths.extend(found.into_iter().map(|path| format!("self::{path}")));
        }
        for path in paths {
            let segments: Vec<String> = path.split("::").map(str::to_owned).collect();
            if !matches!(segments[0].as_str(), "crate" | "self" | "super") {
                continue;
            }
            let absolute = absolute_path(&here, segments);
            if let Some(target) = through_reexports(&absolute, &known, &reexports, 0) {
                // A parent module declaring or re-exporting its children, or a file naming
                // itself, is not an import between rooms.
                if target != *file && target != Path::new("lib.rs") {
                    targets.insert(target);
                }
            }
        }
        edges.insert(file.clone(), targets);
    }
    edges
}

/// The strongly connected components with more than one file (Tarjan's algorithm).
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct State<'g> {
        graph: &'g BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'g Path, usize>,
        low: BTreeMap<&'g Path, usize>,
        stack: Vec<&'g Path>,
        on_stack: BTreeSet<&'g Path>,
        found: Vec<Vec<PathBuf>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g Path) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_path();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_path_buf());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_path()) {
            visit(&mut state, v);
        }
    }
    state.found.sort();
    state.found
}

#[test]
fn the_import_circles_are_exactly_the_known_ones() {
    // The reader must see the files and their imports, or no circle could ever be found: each
    // crate's least number of each.
    for (krate, least_files, least_edges) in [("etl", 60, 150), ("etl-core", 12, 20)] {
        let src = src_of(krate);
        let graph = graph(&src);
        assert!(
            graph.len() > least_files,
            "{krate}: only {} files read",
            graph.len()
        );
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        assert!(edges > least_edges, "{krate}: only {edges} imports read");
        check_circles(krate, &graph);
    }
}

/// The core's dependencies name no database, broker, HTTP or runtime crate: that is what keeps
/// it free of I/O, whatever a later change imports.
#[test]
fn the_core_depends_on_no_database_broker_or_http_crate() {
    let manifest = std::fs::read_to_string(src_of("etl-core").join("../Cargo.toml"))
        .expect("read etl-core/Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("etl-core/Cargo.toml parses");
    let mut names: Vec<&String> = Vec::new();
    for table in ["dependencies", "build-dependencies"] {
        if let Some(deps) = manifest.get(table).and_then(toml::Value::as_table) {
            names.extend(deps.keys());
        }
    }
    assert!(names.iter().any(|n| *n == "serde_json"), "read {names:?}");
    const FORBIDDEN: &[&str] = &[
        "tokio",
        "tokio-postgres",
        "deadpool-postgres",
        "postgres",
        "async-nats",
        "axum",
        "reqwest",
        "hyper",
        "notify",
        "parquet",
        "etl",
    ];
    let found: Vec<&&String> = names
        .iter()
        .filter(|n| FORBIDDEN.contains(&n.as_str()) || n.starts_with("tokio"))
        .collect();
    assert!(
        found.is_empty(),
        "etl-core depends on {found:?}: move that code up into etl"
    );
}

fn check_circles(krate: &str, graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) {
    let found = circles(graph);
    let described: Vec<String> = found
        .iter()
        .map(|circle| {
            let members: BTreeSet<&PathBuf> = circle.iter().collect();
            let edges: Vec<String> = circle
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| members.contains(to))
                        .map(move |to| format!("    {} -> {}", from.display(), to.display()))
                })
                .collect();
            format!("{} files:\n{}", circle.len(), edges.join("\n"))
        })
        .collect();
    let as_names: Vec<Vec<String>> = found
        .iter()
        .map(|c| c.iter().map(|p| p.display().to_string()).collect())
        .collect();
    let known: Vec<Vec<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    assert_eq!(
        as_names,
        known,
        "{krate}: the import circles changed; today's, with the edges that close them:\n{}",
        described.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_uses_and_relative_paths() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}, self}"),
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a"
        ]
    );
    let code = code_of("use super::x::Y;\n// crate::not::this\nfn f() { crate::z::w(); }\n");
    let paths = paths_in(&code);
    assert!(paths.contains(&"super::x::Y".to_owned()), "{paths:?}");
    assert!(paths.contains(&"crate::z::w".to_owned()), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("not")), "{paths:?}");
    let mut graph = BTreeMap::new();
    graph.insert(
        PathBuf::from("a.rs"),
        BTreeSet::from([PathBuf::from("b.rs")]),
    );
    graph.insert(
        PathBuf::from("b.rs"),
        BTreeSet::from([PathBuf::from("a.rs")]),
    );
    graph.insert(
        PathBuf::from("c.rs"),
        BTreeSet::from([PathBuf::from("a.rs")]),
    );
    assert_eq!(
        circles(&graph),
        [vec![PathBuf::from("a.rs"), PathBuf::from("b.rs")]]
    );
}
