//! The proxy's modules form layers: no module uses, directly or through
//! others, a module that uses it back. Checked on the source: a module
//! "uses" another when its code (comments aside) names `crate::other` or,
//! inside a directory module such as `state/`, `super::sibling`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source without `//` comments (doc comments included: their links
/// are not uses). String literals in this crate hold no `//` followed by
/// a module path, so a line-wise cut is enough.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    strip_comments(&text)
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that follow `prefix` in `code`: `prefix::name` and each
/// first-level name of `prefix::{a, b::c, ...}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pat = format!("{prefix}::");
    let mut rest = code;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            let mut word = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if depth == 0 && item_start && (c.is_alphanumeric() || c == '_') => {
                        word.push(c)
                    }
                    _ if !word.is_empty() => {
                        out.insert(std::mem::take(&mut word));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !word.is_empty() {
                out.insert(word);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Each module of `dir` (a file `m.rs` or a directory `m/`) and the
/// modules of `dir` it uses through `prefix` (`crate` or `super`).
/// `skip` names files that only declare and re-export (lib.rs, mod.rs).
fn graph(dir: &Path, prefix: &str, skip: &[&str]) -> Graph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if path.is_dir() || (path.extension().is_some_and(|e| e == "rs") && !skip.contains(&name)) {
            modules.insert(name.to_string());
        }
    }
    let mut g = Graph::new();
    for m in &modules {
        let files = if dir.join(m).is_dir() {
            rust_files(&dir.join(m))
        } else {
            vec![dir.join(format!("{m}.rs"))]
        };
        let uses = g.entry(m.clone()).or_default();
        for f in files {
            for used in names_after(&code_of(&f), prefix) {
                if &used != m && modules.contains(&used) {
                    uses.insert(used);
                }
            }
        }
    }
    g
}

/// A cycle of `g` as the path that closes it, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_proxy_modules_have_no_cycle() {
    let g = graph(&src(), "crate", &["lib", "main"]);
    // The check sees the uses it must: features reads the snapshot.
    assert!(g["features"].contains("state"), "{g:?}");
    assert!(
        g["server"].contains("grpc") || g["grpc"].contains("server"),
        "{g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_state_modules_have_no_cycle() {
    let g = graph(&src().join("state"), "super", &["mod"]);
    assert!(g["reload"].contains("snapshot"), "{g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle in state/: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    if let Some(c) = g.get_mut("c") {
        c.clear();
    }
    assert_eq!(find_cycle(&g), None);
    let code = "use crate::{config::{A, B}, state::Snapshot};\nlet x = crate::metrics::M; // crate::auth\nfoo::crate::grpc";
    let names = names_after(&strip_comments(code), "crate");
    assert_eq!(
        names,
        ["config", "metrics", "state"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
