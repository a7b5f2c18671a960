//! Watching the configuration's files (and the registry feed) and
//! reloading when their content changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;

use super::reload::reload;
use super::shared::Shared;
use crate::config::ConfigSource;

/// Directories to watch for `source`: each file's directory and, when the
/// file is a symlink (a Kubernetes ConfigMap mount: `f -> ..data/f`,
/// `..data -> ..<timestamp>`), the directory it currently resolves into.
fn watch_dirs(watched_files: &[PathBuf]) -> std::collections::BTreeSet<PathBuf> {
    let parent = |f: &std::path::Path| {
        if f.is_dir() {
            f.to_path_buf()
        } else {
            match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    let mut dirs = std::collections::BTreeSet::new();
    for f in watched_files {
        dirs.insert(parent(f));
        if let Ok(real) = std::fs::canonicalize(f) {
            dirs.insert(parent(&real));
        }
    }
    dirs
}

/// Watches the source's files (their directories, so renames and symlink
/// swaps are seen, and re-adds watches when a swap moves the target),
/// debounces, and reloads when the content changed. A periodic check
/// backs up missed events. The watch is supervised: should it panic, the
/// panic is counted like a panicking reload and the watch starts again.
pub fn spawn_reloader(shared: Arc<Shared>, source: ConfigSource, apply: bool, poll: Duration) {
    tokio::spawn(async move {
        loop {
            let watch = tokio::spawn(watch_and_reload(
                Arc::clone(&shared),
                source.clone(),
                apply,
                poll,
            ));
            match watch.await {
                Err(e) if e.is_panic() => {
                    shared.metrics.reload("panic");
                    tracing::error!("configuration watch panicked; restarting it");
                    tokio::time::sleep(SUPERVISOR_BACKOFF).await;
                }
                Ok(()) | Err(_) => break,
            }
        }
    });
}

/// Pause before a panicked watch starts again, so a panic that repeats
/// costs a log line a second, not a busy loop.
pub(crate) const SUPERVISOR_BACKOFF: Duration = Duration::from_secs(1);

async fn watch_and_reload(shared: Arc<Shared>, source: ConfigSource, apply: bool, poll: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watch_tx = tx.clone();
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reads (the watch's own included: inotify reports opens and
            // closes of the watched files) change nothing.
            if let Ok(event) = res
                && !event.kind.is_access()
            {
                let _ = watch_tx.send(());
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on periodic checks");
                None
            }
        };
    let ticker = tx;
    // Ends when this watch ends (its receiver is gone).
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(poll);
        loop {
            interval.tick().await;
            if ticker.send(()).is_err() {
                break;
            }
        }
    });
    let mut watched = std::collections::BTreeSet::new();
    let mut rewatch = |watcher: &mut Option<notify::RecommendedWatcher>, files: &[PathBuf]| {
        let Some(w) = watcher.as_mut() else { return };
        let wanted = watch_dirs(files);
        for d in wanted.difference(&watched) {
            if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                tracing::debug!(dir = %d.display(), error = %e, "cannot watch; relying on periodic checks");
            }
        }
        for d in watched.difference(&wanted) {
            let _ = w.unwatch(d);
        }
        watched = wanted;
    };
    // The files to watch and stamp, listed once per check (listing a
    // repo parses its feature_store.yaml and lists its view directories).
    let files = source.watched_files();
    rewatch(&mut watcher, &files);
    let mut last_stamp = ConfigSource::stamp(source.with_view_files(files));
    let mut last = fingerprint_off_runtime(&shared, &source).await;
    let mut last_registry = source.registry_generation();
    let feed = source.registry_feed().cloned();
    loop {
        // A file event or periodic check, or a registry read that changed.
        tokio::select! {
            got = rx.recv() => if got.is_none() { break },
            () = async {
                match &feed {
                    Some(f) => f.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        // Debounce: a ConfigMap update or an editor save is several events,
        // and other files of a watched directory (a SQLite database next to
        // feature_store.yaml) send theirs too.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while rx.try_recv().is_ok() {}
        let registry = source.registry_generation();
        let registry_moved = registry != last_registry;
        last_registry = registry;
        let files = source.watched_files();
        rewatch(&mut watcher, &files);
        // Files are read and hashed only when their metadata moved or they
        // were modified within the last seconds; otherwise a check costs a
        // few `stat` calls.
        let stamp = ConfigSource::stamp(source.with_view_files(files));
        let now = std::time::SystemTime::now();
        let racy = stamp
            .iter()
            .any(|(_, s)| s.is_some_and(|s| s.is_recent(now, RACY_WINDOW)));
        if stamp == last_stamp && !racy && !registry_moved {
            continue;
        }
        last_stamp = stamp;
        let fp = fingerprint_off_runtime(&shared, &source).await;
        if fp == last {
            continue;
        }
        last = fp;
        // Failures (panics included) are counted and logged by `install`.
        let _ = reload(&shared, &source, apply).await;
    }
}

/// Files modified this recently are compared by content even when their
/// size and times look unchanged (timestamps are coarser than writes).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// `ConfigSource::fingerprint` on the blocking pool: it reads every file,
/// which at 100,000 views is tens of megabytes.
async fn fingerprint_off_runtime(shared: &Shared, source: &ConfigSource) -> Option<u64> {
    shared.metrics.config_read();
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.fingerprint())
        .await
        .ok()
}
