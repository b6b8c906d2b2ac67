//! The layering checks of issue 12: no import cycle among the top-level modules of the daemon
//! and the service crates, and crate dependencies that point one way only (the `berth` binary
//! on top; nothing else on berth-daemon, nor on berth-cli but the compose client; the services never on the daemon, the
//! CLI or the API routes).
//!
//! `cargo modules` would need rust-analyzer's crates, too heavy to build here, so the checker is
//! the project's own and deliberately small: every `.rs` file under `src/` belongs to the
//! top-level module it is in (`src/foo.rs`, `src/foo/**`); each `crate::foo…` path in it
//! (`use crate::foo::x`, grouped `use crate::{foo, bar::{x, y}}`, inline `crate::foo::f()`,
//! `$crate::foo` in macros) is an edge to `foo`, comments and string literals left out. A path
//! that climbs out of a top-level module with `super::super::…` is not followed: by the
//! project's convention other top-level modules are reached through `crate::`.
//!
//! The tests on synthetic trees show that a cycle is caught and an acyclic tree passes; the
//! test on the real tree (`real_modules_are_acyclic`) keeps the workspace that way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Replaces comments (line, doc and nested block comments) and the contents of string and
/// character literals (plain, byte, raw) with spaces, keeping newlines so that line numbers
/// stay right. Lifetimes (`'a`) are left alone.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    // Blanks c[from..to] except its newlines.
    let blank = |out: &mut String, from: usize, to: usize| {
        for ch in &c[from..to.min(c.len())] {
            out.push(if *ch == '\n' { '\n' } else { ' ' });
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            let end = (i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if at(0) == '/' && at(1) == '*' {
            let (mut depth, mut k) = (1, i + 2);
            while k < c.len() && depth > 0 {
                if c[k] == '/' && c.get(k + 1) == Some(&'*') {
                    depth += 1;
                    k += 2;
                } else if c[k] == '*' && c.get(k + 1) == Some(&'/') {
                    depth -= 1;
                    k += 2;
                } else {
                    k += 1;
                }
            }
            blank(&mut out, i, k);
            i = k;
        } else if (at(0) == 'r' || (at(0) == 'b' && at(1) == 'r'))
            && (i == 0 || !ident(c[i - 1]))
            && {
                let s = i + if at(0) == 'b' { 2 } else { 1 };
                let h = (s..c.len()).take_while(|&k| c[k] == '#').count();
                c.get(s + h) == Some(&'"')
            }
        {
            // A raw string: r"…", r#"…"#, br##"…"##.
            let s = i + if at(0) == 'b' { 2 } else { 1 };
            let hashes = (s..c.len()).take_while(|&k| c[k] == '#').count();
            let body = s + hashes + 1;
            let mut k = body;
            let end = loop {
                if k >= c.len() {
                    break c.len();
                }
                if c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')) {
                    break k + 1 + hashes;
                }
                k += 1;
            };
            out.extend(&c[i..body]);
            blank(&mut out, body, end);
            i = end;
        } else if at(0) == '"' {
            let mut k = i + 1;
            while k < c.len() && c[k] != '"' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            out.push('"');
            blank(&mut out, i + 1, k);
            out.push('"');
            i = k + 1;
        } else if at(0) == '\'' && (at(1) == '\\' || (at(1) != '\'' && at(2) == '\'')) {
            // A character literal ('x', '\n', '\'', '\u{1F600}'); a lifetime has no closing quote.
            let mut k = i + 1;
            while k < c.len() && c[k] != '\'' {
                k += if c[k] == '\\' { 2 } else { 1 };
            }
            out.push('\'');
            blank(&mut out, i + 1, k);
            out.push('\'');
            i = k + 1;
        } else {
            out.push(at(0));
            i += 1;
        }
    }
    out
}

/// The modules a piece of stripped source names through `crate::` paths, each with the
/// (1-based) line of its first mention: `crate::a::b` names `a`; `crate::{a, b::{c, d}}`
/// names `a` and `b`; `crate::{self, …}` names no module.
fn crate_refs(stripped: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = stripped.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let skip_ws = |mut k: usize| {
        while k < c.len() && c[k].is_whitespace() {
            k += 1;
        }
        k
    };
    let line_of = |k: usize| 1 + c[..k].iter().filter(|ch| **ch == '\n').count();
    let word = |k: usize| -> String { c[k..].iter().take_while(|ch| ident(**ch)).collect() };
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let is_crate = c[i..].starts_with(&['c', 'r', 'a', 't', 'e'])
            && (i == 0 || !ident(c[i - 1]))
            && !c.get(i + 5).copied().is_some_and(ident);
        if !is_crate {
            i += 1;
            continue;
        }
        let line = line_of(i);
        let k = skip_ws(i + 5);
        if !(c.get(k) == Some(&':') && c.get(k + 1) == Some(&':')) {
            i += 5;
            continue;
        }
        let k = skip_ws(k + 2);
        if c.get(k) == Some(&'{') {
            // A group: the first segment of each of its paths, nested groups included. The
            // stack says, per open brace, whether its items are heads (a group right after
            // `crate::` or in the place of a head) or the tail of a path (`a::{b, c}`).
            let mut heads: Vec<bool> = Vec::new();
            let mut expect_head = true;
            let mut j = k;
            while j < c.len() {
                match c[j] {
                    '{' => heads.push(expect_head),
                    '}' => {
                        heads.pop();
                        if heads.is_empty() {
                            break;
                        }
                        expect_head = false;
                    }
                    ',' => expect_head = heads.last().copied().unwrap_or(false),
                    ch if ident(ch) && expect_head => {
                        let w = word(j);
                        if w != "self" {
                            out.push((w.clone(), line_of(j)));
                        }
                        expect_head = false;
                        j += w.len();
                        continue;
                    }
                    ch if !ch.is_whitespace() => expect_head = false,
                    _ => {}
                }
                j += 1;
            }
            i = j;
        } else {
            let w = word(k);
            if !w.is_empty() {
                out.push((w.clone(), line));
            }
            i = k + w.len().max(1);
        }
    }
    out
}

/// The top-level module a file under `src` belongs to: `foo.rs` and `foo/**` are `foo`; the
/// crate root (`lib.rs`, `main.rs`) is `None`.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut comps = rel.components();
    let first = comps.next()?.as_os_str().to_str()?;
    if comps.next().is_some() {
        return Some(first.to_string());
    }
    let stem = first.strip_suffix(".rs")?;
    (!matches!(stem, "lib" | "main")).then(|| stem.to_string())
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// An edge between two top-level modules, with where it was first seen (`file:line`).
type Edges = BTreeMap<(String, String), String>;

/// The import edges among the top-level modules of the crate whose sources are in `src`.
fn module_edges(src: &Path) -> Edges {
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    // Files are shown from the directory of the crates (`berth-daemon/src/…`).
    let root = src.parent().and_then(Path::parent).unwrap_or(src);
    let mut edges = Edges::new();
    for f in &files {
        let Some(from) = top_module(src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (to, line) in crate_refs(&strip(&text)) {
            if to != from && modules.contains(&to) {
                let shown = f.strip_prefix(root).unwrap_or(f);
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("{}:{line}", shown.display()));
            }
        }
    }
    edges
}

/// The cycles among the edges: for every edge that lies on a cycle, the shortest cycle it is
/// on (as the modules in order, the first repeated at the end), each reported once.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a).or_default().push(b);
    }
    // The shortest path from `from` to `to` (both included), breadth first.
    let path = |from: &str, to: &str| -> Option<Vec<String>> {
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut todo = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(n) = todo.pop_front() {
            if n == to {
                let mut p = vec![to.to_string()];
                let mut cur = to;
                while let Some(b) = prev.get(cur) {
                    p.push(b.to_string());
                    cur = b;
                }
                p.reverse();
                return Some(p);
            }
            for m in next.get(n).into_iter().flatten() {
                if seen.insert(m) {
                    prev.insert(m, n);
                    todo.push_back(m);
                }
            }
        }
        None
    };
    let mut found: Vec<Vec<String>> = Vec::new();
    for (a, b) in edges.keys() {
        let Some(back) = path(b, a) else {
            continue;
        };
        let mut cycle = vec![a.clone()];
        cycle.extend(back);
        // The same cycle found from another of its edges: compare rotations.
        let ring = &cycle[..cycle.len() - 1];
        let min = (0..ring.len()).min_by_key(|&r| &ring[r]).unwrap_or(0);
        let mut norm: Vec<String> = ring[min..].iter().chain(&ring[..min]).cloned().collect();
        norm.push(norm[0].clone());
        if !found.contains(&norm) {
            found.push(norm);
        }
    }
    found
}

/// The cycles as a report: each cycle's modules, then where each of its edges is.
fn report(crate_name: &str, edges: &Edges, cycles: &[Vec<String>]) -> String {
    let mut s = String::new();
    for c in cycles {
        s.push_str(&format!("{crate_name}: cycle {}\n", c.join(" -> ")));
        for w in c.windows(2) {
            let at = edges
                .get(&(w[0].clone(), w[1].clone()))
                .map_or("?", String::as_str);
            s.push_str(&format!("    {} -> {}  ({at})\n", w[0], w[1]));
        }
    }
    s
}

/// The cycles of the crate in `dir` (its `src`), as a report; empty when there are none.
fn check_crate(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let edges = module_edges(&dir.join("src"));
    report(&name, &edges, &cycles(&edges))
}

/// The `berth-*` crates a Cargo.toml depends on, in any dependency table (normal, dev, build,
/// per target), in either form (`name = …`, `name.workspace = true`, `[dependencies.name]`).
fn berth_deps(toml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in toml.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(h) = line.strip_prefix('[') {
            let h = h.trim_end_matches(']').trim();
            let table = h.rsplit_once('.').map_or(h, |(t, _)| t);
            let is_deps = |t: &str| t.ends_with("dependencies");
            // `[dependencies.name]` names one dependency; `[dependencies]` opens a table.
            if is_deps(table) && !is_deps(h) {
                let name = h.rsplit('.').next().unwrap_or("");
                if name.starts_with("berth") {
                    out.insert(name.to_string());
                }
                in_deps = false;
            } else {
                in_deps = is_deps(h);
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let key: String = line
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '-' || *ch == '_')
            .collect();
        if key.starts_with("berth") {
            out.insert(key);
        }
    }
    out
}

/// The dependency rules broken by the crates in `crates_dir` (one line each; empty if none).
fn check_crate_deps(crates_dir: &Path) -> String {
    const SERVICES: &[&str] = &[
        "berth-network",
        "berth-volume",
        "berth-image",
        "berth-runtime",
        "berth-distribution",
        "berth-swarm",
    ];
    const ABOVE_SERVICES: &[&str] = &["berth-daemon", "berth-cli", "berth-api-routes"];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(crates_dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    let mut s = String::new();
    for d in dirs {
        let Ok(toml) = std::fs::read_to_string(d.join("Cargo.toml")) else {
            continue;
        };
        let name = d
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for dep in berth_deps(&toml) {
            let why = if dep == "berth-daemon" && name != "berth" {
                Some("only the berth binary may depend on it")
            } else if dep == "berth-cli" && !matches!(name.as_str(), "berth" | "berth-compose") {
                Some("only the berth binary and the compose client may depend on it")
            } else if name == "berth-cli" && dep == "berth-daemon" {
                Some("the CLI talks to the daemon over the API only")
            } else if SERVICES.contains(&name.as_str()) && ABOVE_SERVICES.contains(&dep.as_str()) {
                Some("a service never depends on what is above it")
            } else {
                None
            };
            if let Some(why) = why {
                s.push_str(&format!("{name} depends on {dep}: {why}\n"));
            }
        }
    }
    s
}

/// The workspace's `crates` directory.
fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A throwaway directory for a synthetic tree, removed when dropped.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let p = std::env::temp_dir().join(format!("berth-cycles-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Tree(p)
    }

    fn write(&self, rel: &str, text: &str) -> &Tree {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(refs: &[(String, usize)]) -> Vec<&str> {
    refs.iter().map(|(m, _)| m.as_str()).collect()
}

#[test]
fn comments_and_literals_are_stripped_but_lines_kept() {
    let src = "a // crate::x\n/* crate::y /* nested */ crate::z\n*/ b\n\
               \"crate::s \\\" crate::t\" r#\"crate::u \"# c '\"' crate::v 'a: &'a str\n\
               /// crate::doc\n//! crate::inner\nbr##\"crate::w\"##";
    let s = strip(src);
    assert_eq!(s.lines().count(), src.lines().count());
    assert_eq!(names(&crate_refs(&s)), ["v"]);
    assert_eq!(crate_refs(&s)[0].1, 4);
    assert!(s.contains("'a: &'a str"), "lifetimes stay: {s}");
}

#[test]
fn crate_paths_in_every_form_are_found() {
    let src = r#"
use crate::error::{Error, Result};
use crate::{config, util::{json, Query}, self, names::{self}};
use crate::{
    a::{b, c},
    {d, e::f},
};
fn g() { let _ = crate::state::Daemon::new(); crate ::  spaced::f(); }
macro_rules! m { () => { $crate::events::emit() }; }
let notcrate::x = 1; let my_crate::y = 2; crate_name::z();
pub(crate) fn h() {}
"#;
    let refs = crate_refs(&strip(src));
    assert_eq!(
        names(&refs),
        ["error", "config", "util", "names", "a", "d", "e", "state", "spaced", "events"]
    );
    let lines: Vec<usize> = refs.iter().map(|r| r.1).collect();
    assert_eq!(lines, [2, 3, 3, 3, 5, 6, 6, 8, 8, 9]);
}

#[test]
fn files_map_to_their_top_level_module() {
    let src = Path::new("/x/src");
    let top = |f: &str| top_module(src, &src.join(f));
    assert_eq!(top("lib.rs"), None);
    assert_eq!(top("main.rs"), None);
    assert_eq!(top("util.rs").as_deref(), Some("util"));
    assert_eq!(top("build/mod.rs").as_deref(), Some("build"));
    assert_eq!(top("build/files/view.rs").as_deref(), Some("build"));
}

#[test]
fn a_deliberate_cycle_is_caught_and_an_acyclic_tree_passes() {
    let t = Tree::new("cyclic");
    t.write("src/lib.rs", "mod a;\nmod b;\nmod c;\nmod leaf;\n")
        .write("src/leaf.rs", "// crate::a::f() in a comment is no edge\n")
        .write("src/a.rs", "use crate::leaf;\nuse crate::b::X;\n")
        .write("src/b/mod.rs", "mod inner;\npub struct X;\n")
        .write("src/b/inner.rs", "fn f() {\n    crate::c::g();\n}\n")
        .write("src/c.rs", "use crate::{leaf, a::{self}};\n");
    let r = check_crate(&t.0);
    assert!(r.contains("cycle a -> b -> c -> a"), "{r}");
    assert!(
        r.contains("b -> c  (") && r.contains("src/b/inner.rs:2)"),
        "{r}"
    );
    assert!(r.contains("c -> a  (") && r.contains("src/c.rs:1)"), "{r}");
    assert_eq!(r.matches(": cycle ").count(), 1, "{r}");
    assert!(!r.contains("leaf"), "{r}");

    // The same tree with the edge back cut: no cycle.
    t.write("src/c.rs", "use crate::leaf;\n// use crate::a;\n");
    assert_eq!(check_crate(&t.0), "");
}

#[test]
fn two_cycles_through_one_module_are_both_reported() {
    let t = Tree::new("two");
    t.write("src/lib.rs", "")
        .write("src/hub.rs", "use crate::x;\nuse crate::y;\n")
        .write("src/x.rs", "use crate::hub;\n")
        .write("src/y.rs", "fn f() { crate::hub::g() }\n");
    let r = check_crate(&t.0);
    assert!(r.contains("cycle hub -> x -> hub"), "{r}");
    assert!(r.contains("cycle hub -> y -> hub"), "{r}");
}

#[test]
fn crate_dependency_rules_are_checked() {
    let deps = berth_deps(
        "[package]\nname = \"berth-x\"\n[dependencies]\nberth-api.workspace = true\n\
         serde = \"1\"\nberth-image = { path = \"../berth-image\" }\n\
         [target.'cfg(unix)'.dev-dependencies]\nberth-cli = \"0.1\"\n\
         [dependencies.berth-daemon]\npath = \"x\"\n[features]\nberth-fake = []\n",
    );
    assert_eq!(
        deps.into_iter().collect::<Vec<_>>(),
        ["berth-api", "berth-cli", "berth-daemon", "berth-image"]
    );

    let t = Tree::new("crates");
    t.write(
        "berth/Cargo.toml",
        "[dependencies]\nberth-daemon.workspace = true\nberth-cli.workspace = true\n",
    )
    .write(
        "berth-cli/Cargo.toml",
        "[dependencies]\nberth-api.workspace = true\n",
    )
    .write(
        "berth-network/Cargo.toml",
        "[dependencies]\nberth-runtime.workspace = true\n",
    )
    .write(
        "berth-compose/Cargo.toml",
        "[dependencies]\nberth-cli.workspace = true\n",
    );
    assert_eq!(check_crate_deps(&t.0), "");
    t.write(
        "berth-cli/Cargo.toml",
        "[dependencies]\nberth-daemon.workspace = true\n",
    )
    .write(
        "berth-network/Cargo.toml",
        "[dev-dependencies]\nberth-api-routes.workspace = true\n",
    )
    .write(
        "berth-image/Cargo.toml",
        "[dependencies]\nberth-cli.workspace = true\n",
    )
    .write(
        "berth-compose/Cargo.toml",
        "[dependencies]\nberth-daemon.workspace = true\n",
    );
    let r = check_crate_deps(&t.0);
    assert!(r.contains("berth-compose depends on berth-daemon"), "{r}");
    assert!(r.contains("berth-cli depends on berth-daemon"), "{r}");
    assert!(
        r.contains("berth-network depends on berth-api-routes"),
        "{r}"
    );
    assert!(r.contains("berth-image depends on berth-cli"), "{r}");
}

#[test]
fn workspace_crates_depend_one_way() {
    let r = check_crate_deps(&crates_dir());
    assert!(r.is_empty(), "crate dependency rules broken:\n{r}");
}

/// The real tree: no top-level module of the daemon or a service crate reaches, through its
/// `crate::` paths, a module that reaches it back. The walk must see the daemon's edges (so
/// that a broken walk cannot pass by finding nothing).
#[test]
fn real_modules_are_acyclic() {
    let crates = crates_dir();
    let daemon = module_edges(&crates.join("berth-daemon/src"));
    assert!(
        daemon.contains_key(&("server".to_string(), "routes".to_string())),
        "the walk found no server -> routes edge in berth-daemon: {daemon:?}"
    );
    let mut r = String::new();
    for name in [
        "berth-daemon",
        "berth-network",
        "berth-volume",
        "berth-compose",
        "berth-swarm",
    ] {
        let dir = crates.join(name);
        if dir.join("src").is_dir() {
            r.push_str(&check_crate(&dir));
        }
    }
    assert!(r.is_empty(), "import cycles among top-level modules:\n{r}");
}
