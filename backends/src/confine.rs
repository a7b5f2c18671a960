//! Keeping paths named by an untrusted configuration inside one directory.
//!
//! A routing table is written from CRs by other teams, so a path in it
//! (a credential file, a SQLite database) must not reach outside the
//! directory the operator of the proxy gave for that purpose. [`confine`]
//! resolves `..` and symbolic links component by component, the way the
//! kernel will when the file is opened, and refuses anything that lands
//! outside the root. Components that do not exist yet (a SQLite file about
//! to be created) are taken literally: no link can hide behind them.
//!
//! Errors never carry the resolved path: the reference itself may be the
//! absolute path of someone else's secret.

use std::path::{Component, Path, PathBuf};

/// Why a path was refused. Messages name no path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfineError {
    #[error("the path is empty")]
    Empty,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the directory it must stay in cannot be resolved ({0})")]
    Root(std::io::ErrorKind),
    #[error("it resolves outside the directory it must stay in")]
    Escapes,
    #[error("it names the directory itself, not a file in it")]
    IsRoot,
    #[error("a symbolic link on its way points nowhere")]
    DanglingLink,
    #[error("a component on its way cannot be resolved ({0})")]
    Io(std::io::ErrorKind),
}

/// Resolves `path` (relative to `root`, or absolute) and returns it if it
/// stays strictly inside `root` after `..` and every existing symbolic link
/// are resolved. An empty `root` means the working directory.
///
/// What is checked is the file system as it is now; the threat is the text
/// of a configuration, not a process racing the proxy on its own disk.
pub fn confine(root: &Path, path: &Path) -> Result<PathBuf, ConfineError> {
    if path.as_os_str().is_empty() {
        return Err(ConfineError::Empty);
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(ConfineError::Nul);
    }
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    let root = std::fs::canonicalize(root).map_err(|e| ConfineError::Root(e.kind()))?;
    let mut cur = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        root.clone()
    };
    // Below a component that does not exist nothing does, so what follows
    // is resolved by text, until a `..` climbs back out of it.
    let mut exists = true;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                // `cur` is canonical (or below a missing component, which
                // `create_dir_all` would make a plain directory), so
                // dropping its last component is what `..` does. Climbing
                // out of the missing part lands on existing directories
                // again, whose links must be followed from there on.
                cur.pop();
                if !exists {
                    exists = std::fs::symlink_metadata(&cur).is_ok();
                }
            }
            Component::Normal(name) => {
                cur.push(name);
                if !exists {
                    continue;
                }
                match std::fs::symlink_metadata(&cur) {
                    Ok(meta) => {
                        if meta.file_type().is_symlink() {
                            cur = std::fs::canonicalize(&cur).map_err(|e| {
                                if e.kind() == std::io::ErrorKind::NotFound {
                                    ConfineError::DanglingLink
                                } else {
                                    ConfineError::Io(e.kind())
                                }
                            })?;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => exists = false,
                    Err(e) => return Err(ConfineError::Io(e.kind())),
                }
            }
        }
    }
    if cur == root {
        return Err(ConfineError::IsRoot);
    }
    if !cur.starts_with(&root) {
        return Err(ConfineError::Escapes);
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/secret"), "s").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/x"), "x").unwrap();
        (dir, root)
    }

    #[test]
    fn inside_paths_resolve() {
        let (_d, root) = setup();
        let real = std::fs::canonicalize(&root).unwrap();
        assert_eq!(
            confine(&root, Path::new("sub/secret")).unwrap(),
            real.join("sub/secret")
        );
        // `..` that stays inside, a file not created yet, an absolute path inside.
        assert_eq!(
            confine(&root, Path::new("sub/../sub/./secret")).unwrap(),
            real.join("sub/secret")
        );
        assert_eq!(
            confine(&root, Path::new("new/dir/online.db")).unwrap(),
            real.join("new/dir/online.db")
        );
        assert_eq!(
            confine(&root, &real.join("sub/secret")).unwrap(),
            real.join("sub/secret")
        );
    }

    #[test]
    fn dot_dot_out_is_refused() {
        let (_d, root) = setup();
        for p in [
            "../outside/x",
            "sub/../../outside/x",
            "missing/../../outside/x",
            "missing/../..",
            "..",
        ] {
            let e = confine(&root, Path::new(p)).unwrap_err();
            assert!(
                matches!(e, ConfineError::Escapes | ConfineError::IsRoot),
                "{p}: {e}"
            );
        }
        assert_eq!(
            confine(&root, Path::new(".")).unwrap_err(),
            ConfineError::IsRoot
        );
    }

    #[test]
    fn absolute_outside_is_refused() {
        let (d, root) = setup();
        for p in [
            d.path().join("outside/x"),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("/"),
        ] {
            assert_eq!(
                confine(&root, &p).unwrap_err(),
                ConfineError::Escapes,
                "{}",
                p.display()
            );
        }
        // The root's own name with a suffix is not inside it.
        let sibling = PathBuf::from(format!("{}-x/f", root.display()));
        assert_eq!(confine(&root, &sibling).unwrap_err(), ConfineError::Escapes);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_escapes_are_refused() {
        let (d, root) = setup();
        std::os::unix::fs::symlink(d.path().join("outside/x"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(d.path().join("gone"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("sub/secret", root.join("inner")).unwrap();
        assert_eq!(
            confine(&root, Path::new("link")).unwrap_err(),
            ConfineError::Escapes
        );
        // A parent directory that is a link out, even to a file not there yet.
        assert_eq!(
            confine(&root, Path::new("dirlink/new.db")).unwrap_err(),
            ConfineError::Escapes
        );
        // A link that points nowhere would be created (outside) on open.
        assert_eq!(
            confine(&root, Path::new("dangling")).unwrap_err(),
            ConfineError::DanglingLink
        );
        // `..` after a link is taken from where the link lands, as the
        // kernel does: out through it, then back in, is inside.
        assert_eq!(
            confine(&root, Path::new("dirlink/../outside/x")).unwrap_err(),
            ConfineError::Escapes
        );
        assert_eq!(
            confine(&root, Path::new("dirlink/../root/sub/secret")).unwrap(),
            std::fs::canonicalize(root.join("sub/secret")).unwrap()
        );
        // Out of a missing directory and back into the link (found by
        // fuzzing): once `missing` is created, the kernel follows `dirlink`.
        assert_eq!(
            confine(&root, Path::new("missing/../dirlink/x")).unwrap_err(),
            ConfineError::Escapes
        );
        assert_eq!(
            confine(&root, Path::new("a/b/../../dirlink/new.db")).unwrap_err(),
            ConfineError::Escapes
        );
        // A link that stays inside is fine.
        assert_eq!(
            confine(&root, Path::new("inner")).unwrap(),
            std::fs::canonicalize(root.join("sub/secret")).unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_root_behind_a_link_is_resolved_first() {
        let (d, root) = setup();
        let alias = d.path().join("alias");
        std::os::unix::fs::symlink(&root, &alias).unwrap();
        assert!(confine(&alias, Path::new("sub/secret")).is_ok());
        assert_eq!(
            confine(&alias, Path::new("../outside/x")).unwrap_err(),
            ConfineError::Escapes
        );
    }

    #[test]
    fn degenerate_inputs_are_refused() {
        let (d, root) = setup();
        assert_eq!(
            confine(&root, Path::new("")).unwrap_err(),
            ConfineError::Empty
        );
        assert_eq!(
            confine(&root, Path::new("a\0b")).unwrap_err(),
            ConfineError::Nul
        );
        assert!(matches!(
            confine(&d.path().join("missing-root"), Path::new("x")).unwrap_err(),
            ConfineError::Root(_)
        ));
    }

    #[test]
    fn messages_name_no_path() {
        let (d, root) = setup();
        let outside = d.path().join("outside/x");
        let msg = confine(&root, &outside).unwrap_err().to_string();
        assert!(!msg.contains(&*d.path().to_string_lossy()), "{msg}");
    }
}
