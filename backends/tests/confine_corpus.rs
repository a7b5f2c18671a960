//! Replays the checked-in corpus of the `routing_table_paths` fuzz target
//! (`fuzz/corpus/routing_table_paths/`) without libFuzzer: every line of
//! every input is confined to a root holding links out of it, and whatever
//! is accepted must lie inside; routing tables in it go through
//! `backends::validate` with a routing table's trust.

use std::path::{Path, PathBuf};

use api::RoutingTable;
use backends::confine::confine;
use backends::{OpenContext, Trust};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/routing_table_paths");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
            )
        })
        .collect();
    files.sort();
    assert!(files.iter().any(|(n, _)| n.starts_with("seed-")));
    files
}

#[test]
fn routing_table_paths_corpus() {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("data");
    let outside = top.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("token"), "x").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.join("token"), root.join("tok")).unwrap();
        std::os::unix::fs::symlink(top.path().join("missing"), root.join("dangling")).unwrap();
    }
    let real = std::fs::canonicalize(&root).unwrap();
    let ctx = OpenContext {
        base_dir: root.clone(),
        secrets_dir: root.clone(),
        trust: Trust::Confined,
    };
    let mut refused = 0;
    for (name, text) in corpus() {
        if let Ok(table) = RoutingTable::parse(&name, &text) {
            for b in &table.backends {
                // The seed table names only paths and hosts that are refused.
                assert!(
                    backends::validate(b, &ctx).is_err(),
                    "{name}: {} accepted",
                    b.name
                );
            }
            continue;
        }
        for line in text.lines() {
            match confine(&root, Path::new(line)) {
                Ok(p) => assert!(
                    p.starts_with(&real) && p != real,
                    "{name}: {line:?} -> {p:?}"
                ),
                Err(_) => refused += 1,
            }
        }
    }
    assert!(refused > 0, "the seeds hold paths that must be refused");
}
