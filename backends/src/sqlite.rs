//! Feast's SQLite online store (`type: sqlite`): table `<project>_<view>`
//! with one row per (entity key, feature), the serialized entity key as a
//! BLOB, the serialized Value as a BLOB and event/created times as epoch
//! seconds (what Feast 0.67 writes when its process runs in UTC; text
//! timestamps from older Feast versions are read too). A write replaces an
//! entity's row only when its event time, in whole seconds, is not older
//! than the stored row's (Feast itself overwrites unconditionally).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::feast_config::SqliteConf;
use api::keys::view_table_name;
use api::proto::{Val, Value};
use api::routing::RoutedView;
use prost::Message;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use crate::confine::confine;
use crate::{
    BackendError, OnlineStore, OpenContext, ReadRow, StorageObject, Timestamp, Trust, WriteRow,
};

/// Reader threads per database file.
const READERS: usize = 4;
/// Each reader's page cache in KiB (SQLite's default is 2 MiB).
const READER_CACHE_KIB: u32 = 512;
/// The writer's page cache in KiB.
const WRITER_CACHE_KIB: u32 = 16_384;
/// Bound parameters per read statement, well under SQLite's limit.
const KEYS_PER_QUERY: usize = 500;

/// Work for a connection thread; it answers through its own channel.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A SQLite database file served by its own threads, never by the async
/// runtime's workers nor its blocking pool: [`READERS`] threads with
/// read-only connections take reads from one queue (an idle reader takes
/// the next), and one thread with the read-write connection takes writes
/// and DDL in order (SQLite runs one writer at a time anyway). The
/// database is in WAL mode, so reads go on while a write commits. The
/// threads end when the store is dropped (their queues close).
pub struct SqliteStore {
    path: PathBuf,
    reads: Sender<Job>,
    writes: Sender<Job>,
    /// Tables known to have Feast's `value_text` column.
    value_text: Arc<Mutex<HashMap<String, bool>>>,
    /// Rows older than this (by event time) are swept.
    key_ttl_seconds: Option<u64>,
}

/// Runs jobs from `queue` on `conn` until the queue closes. A panicking
/// job loses only its own answer (its caller gets "worker failed").
fn serve(mut conn: Connection, queue: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let Ok(rx) = queue.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
    }
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, BackendError> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| BackendError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(query_err)?;
    Ok(conn)
}

fn spawn_threads(
    path: &Path,
    conns: Vec<Connection>,
    role: &str,
) -> Result<Sender<Job>, BackendError> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for (i, conn) in conns.into_iter().enumerate() {
        let rx = Arc::clone(&rx);
        std::thread::Builder::new()
            .name(format!("sqlite-{role}-{i}"))
            .spawn(move || serve(conn, rx))
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "cannot start a thread for {}: {e}",
                    path.display()
                ))
            })?;
    }
    Ok(tx)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn query_err(e: rusqlite::Error) -> BackendError {
    match e {
        rusqlite::Error::SqliteFailure(f, msg)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            BackendError::Unavailable(msg.unwrap_or_else(|| f.to_string()))
        }
        other => BackendError::Query(other.to_string()),
    }
}

/// Where the database of `conf` lives. A user's own repo keeps Feast's
/// semantics (relative to the repo, absolute as written); a routing table's
/// path must stay under the data directory (`ctx.base_dir`), symbolic
/// links and `..` resolved.
pub fn database_path(conf: &SqliteConf, ctx: &OpenContext) -> Result<PathBuf, BackendError> {
    match ctx.trust {
        Trust::Owner => Ok(if Path::new(&conf.path).is_absolute() {
            PathBuf::from(&conf.path)
        } else {
            ctx.base_dir.join(&conf.path)
        }),
        Trust::Confined => confine(&ctx.base_dir, Path::new(&conf.path)).map_err(|e| {
            BackendError::Config(format!(
                "conf.path: SQLite database refused: {e} (a routing table's SQLite files must stay under --data-dir)"
            ))
        }),
    }
}

/// Sets a connection's page cache; not fatal (SQLite's default stays).
fn set_cache_kib(conn: &Connection, kib: u32) {
    if let Err(e) = conn.execute_batch(&format!("PRAGMA cache_size = -{kib}")) {
        tracing::debug!(error = %e, kib, "sqlite cache_size not set");
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at [`database_path`].
    pub fn open(conf: &SqliteConf, ctx: &OpenContext) -> Result<SqliteStore, BackendError> {
        let path = database_path(conf, ctx)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                BackendError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // The read-write connection first: it creates the file and turns
        // on WAL (kept in the file; Feast's SQLite reads it as usual).
        let writer = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        // Not fatal: a database another process holds locked, or a file
        // system without shared memory, keeps its journal mode and is
        // served as before (readers then wait while a write commits).
        match writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => {}
            Ok(mode) => {
                tracing::info!(path = %path.display(), mode, "sqlite database stays out of WAL mode")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot switch the sqlite database to WAL mode")
            }
        }
        // The writer touches a key's index and table pages for every
        // feature: a larger page cache than SQLite's 2 MiB default saves
        // most of the re-reads of a big table.
        set_cache_kib(&writer, WRITER_CACHE_KIB);
        let readers = (0..READERS)
            .map(|_| {
                let conn = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                // A read touches a few leaf pages chosen by the keys, which a
                // cache rarely holds; what repays caching is the B-trees'
                // interior pages, a few hundred KiB even for large tables.
                // SQLite's 2 MiB default per reader mostly held leaves.
                set_cache_kib(&conn, READER_CACHE_KIB);
                Ok(conn)
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(SqliteStore {
            reads: spawn_threads(&path, readers, "read")?,
            writes: spawn_threads(&path, vec![writer], "write")?,
            path,
            value_text: Arc::new(Mutex::new(HashMap::new())),
            key_ttl_seconds: conf.key_ttl_seconds.filter(|t| *t > 0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a reader thread's read-only connection.
    async fn read_on<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        run_on(&self.reads, f).await
    }

    /// Runs `f` on the writer thread's read-write connection.
    async fn write_on<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        run_on(&self.writes, f).await
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

async fn run_on<T: Send + 'static>(
    queue: &Sender<Job>,
    f: impl FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let _ = tx.send(f(conn));
    });
    queue
        .send(job)
        .map_err(|_| BackendError::Unavailable("sqlite threads stopped".into()))?;
    rx.await
        .map_err(|_| BackendError::Unavailable("sqlite worker failed".into()))?
}

/// Whether `table` is absent, asked of the schema (SQLite reports a
/// missing table as a generic error; its text is not an interface).
fn table_missing(conn: &Connection, table: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n == 0)
}

fn read_ts(v: ValueRef<'_>) -> Timestamp {
    match v {
        ValueRef::Integer(i) => Timestamp::from_seconds(i),
        ValueRef::Real(f) => Timestamp {
            seconds: f.floor() as i64,
            nanos: ((f - f.floor()) * 1e9) as u32,
        },
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(api::json::parse_timestamp)
            .map(|(seconds, nanos)| Timestamp { seconds, nanos })
            .unwrap_or_default(),
        ValueRef::Null | ValueRef::Blob(_) => Timestamp::default(),
    }
}

/// A cached statement on the view's table; a missing table is named.
fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    table: &str,
    location: &str,
) -> Result<rusqlite::CachedStatement<'c>, BackendError> {
    conn.prepare_cached(sql).map_err(|e| {
        if table_missing(conn, table) {
            BackendError::MissingTable {
                table: table.to_string(),
                location: location.to_string(),
            }
        } else {
            query_err(e)
        }
    })
}

/// Python's `repr(float)`, for Feast's `value_text` column.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Feast's `value_text`: `str(v)` for scalar strings, numbers and booleans.
fn value_text(v: &Value) -> Option<String> {
    match v.val.as_ref()? {
        Val::StringVal(s) => Some(s.clone()),
        Val::Int32Val(i) => Some(i.to_string()),
        Val::Int64Val(i) => Some(i.to_string()),
        Val::FloatVal(f) => Some(python_float(f64::from(*f))),
        Val::DoubleVal(d) => Some(python_float(*d)),
        Val::BoolVal(b) => Some(if *b { "True".into() } else { "False".into() }),
        _ => None,
    }
}

#[async_trait::async_trait]
impl OnlineStore for SqliteStore {
    async fn read(
        &self,
        project: &str,
        view: &RoutedView,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Option<ReadRow>>, BackendError> {
        let table = view_table_name(project, &view.name);
        let keys = keys.to_vec();
        let features = features.to_vec();
        let location = self.location();
        self.read_on(move |conn| {
            let mut out: Vec<Option<ReadRow>> = vec![None; keys.len()];
            let mut slots: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                slots.entry(k.as_slice()).or_default().push(i);
            }
            let feature_index: HashMap<&str, usize> =
                features.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
            let unique: Vec<&[u8]> = slots.keys().copied().collect();
            for chunk in unique.chunks(KEYS_PER_QUERY) {
                let sql = format!(
                    "SELECT entity_key, feature_name, value, event_ts FROM {} WHERE entity_key IN ({})",
                    quote(&table),
                    vec!["?"; chunk.len()].join(",")
                );
                let mut stmt = prepare(conn, &sql, &table, &location)?;
                let mut rows = stmt.query(params_from_iter(chunk.iter())).map_err(query_err)?;
                while let Some(row) = rows.next().map_err(query_err)? {
                    let key = match row.get_ref(0).map_err(query_err)? {
                        ValueRef::Blob(b) => b,
                        _ => continue,
                    };
                    let Some(targets) = slots.get(key) else { continue };
                    let name = match row.get_ref(1).map_err(query_err)? {
                        ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or_default(),
                        _ => continue,
                    };
                    let ts = read_ts(row.get_ref(3).map_err(query_err)?);
                    let fi = feature_index.get(name).copied();
                    let value = match (fi, row.get_ref(2).map_err(query_err)?) {
                        (Some(_), ValueRef::Blob(b)) => Some(Value::decode(b).map_err(|e| BackendError::Corrupt {
                            feature: name.to_string(),
                            message: e.to_string(),
                        })?),
                        (Some(_), _) => Some(Value::default()),
                        (None, _) => None,
                    };
                    for &slot in targets {
                        let entry = out[slot].get_or_insert_with(|| ReadRow {
                            values: vec![None; features.len()],
                            event_ts: ts,
                        });
                        // All features of one write share a time; keep the latest.
                        entry.event_ts = entry.event_ts.max(ts);
                        if let (Some(i), Some(v)) = (fi, value.as_ref()) {
                            entry.values[i] = Some(v.clone());
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn write(
        &self,
        project: &str,
        view: &RoutedView,
        rows: Vec<WriteRow>,
    ) -> Result<(), BackendError> {
        let table = view_table_name(project, &view.name);
        let location = self.location();
        let cache = Arc::clone(&self.value_text);
        self.write_on(move |conn| {
            let known = cache.lock().ok().and_then(|c| c.get(&table).copied());
            let has_text = match known {
                Some(b) => b,
                None => {
                    let mut stmt = conn
                        .prepare(&format!("PRAGMA table_info({})", quote(&table)))
                        .map_err(query_err)?;
                    let cols: Vec<String> = stmt
                        .query_map([], |r| r.get::<_, String>(1))
                        .map_err(query_err)?
                        .collect::<Result<_, _>>()
                        .map_err(query_err)?;
                    if cols.is_empty() {
                        return Err(BackendError::MissingTable {
                            table: table.clone(),
                            location: location.clone(),
                        });
                    }
                    let has = cols.iter().any(|c| c == "value_text");
                    if let Ok(mut c) = cache.lock() {
                        c.insert(table.clone(), has);
                    }
                    has
                }
            };
            let t = quote(&table);
            // The upsert itself compares: an existing row is replaced only
            // when the write's time (whole seconds, what Feast stores) is
            // not older than the stored one, read as epoch seconds or as
            // text (older Feast versions). An equal time replaces (the
            // last write applied wins, so a retry is idempotent). A key's
            // features carry one time, so they are kept or replaced
            // together.
            let keep_newer = "WHERE excluded.event_ts >= COALESCE(CASE typeof(event_ts) \
                 WHEN 'integer' THEN event_ts WHEN 'real' THEN CAST(event_ts AS INTEGER) \
                 WHEN 'text' THEN unixepoch(event_ts) END, excluded.event_ts)";
            let sql = if has_text {
                format!(
                    "INSERT INTO {t} (entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts) \
                     VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6) ON CONFLICT(entity_key, feature_name) DO UPDATE SET \
                     value = excluded.value, value_text = excluded.value_text, vector_value = excluded.vector_value, \
                     event_ts = excluded.event_ts, created_ts = excluded.created_ts {keep_newer}"
                )
            } else {
                format!(
                    "INSERT INTO {t} (entity_key, feature_name, value, vector_value, event_ts, created_ts) \
                     VALUES (?1, ?2, ?3, NULL, ?5, ?6) ON CONFLICT(entity_key, feature_name) DO UPDATE SET \
                     value = excluded.value, vector_value = excluded.vector_value, \
                     event_ts = excluded.event_ts, created_ts = excluded.created_ts {keep_newer}"
                )
            };
            // IMMEDIATE: the batch is one write transaction from its start
            // (no lock upgrade that could fail with "busy" midway).
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(query_err)?;
            {
                let mut stmt = tx.prepare_cached(&sql).map_err(query_err)?;
                for row in &rows {
                    for (name, value) in &row.values {
                        stmt.execute(rusqlite::params![
                            row.entity_key,
                            name,
                            value.encode_to_vec(),
                            value_text(value),
                            row.event_ts.seconds,
                            row.created_ts.map(|c| c.seconds),
                        ])
                        .map_err(query_err)?;
                    }
                }
            }
            tx.commit().map_err(query_err)
        })
        .await
    }

    async fn scan_keys(
        &self,
        project: &str,
        view: &RoutedView,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<crate::KeyPage, BackendError> {
        let table = view_table_name(project, &view.name);
        let location = self.location();
        self.read_on(move |conn| {
            let sql = format!(
                "SELECT DISTINCT entity_key FROM {} WHERE entity_key > ?1 ORDER BY entity_key LIMIT ?2",
                quote(&table)
            );
            let mut stmt = prepare(conn, &sql, &table, &location)?;
            let after = cursor.unwrap_or_default();
            let keys: Vec<Vec<u8>> = stmt
                .query_map(rusqlite::params![after, limit as i64], |r| r.get::<_, Vec<u8>>(0))
                .map_err(query_err)?
                .collect::<Result<_, _>>()
                .map_err(query_err)?;
            let next = (keys.len() == limit).then(|| keys.last().cloned()).flatten();
            Ok(crate::KeyPage { keys, next })
        })
        .await
    }

    async fn sweep_expired(&self, project: &str, view: &RoutedView) -> Result<u64, BackendError> {
        let Some(ttl) = self.key_ttl_seconds else {
            return Ok(0);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let cutoff = now.saturating_sub(i64::try_from(ttl).unwrap_or(i64::MAX));
        // Feast writes event_ts as text (`YYYY-MM-DD HH:MM:SS[.ffffff]`,
        // UTC), the proxy as epoch seconds: compare each in its own form.
        let cutoff_text = api::json::format_timestamp(cutoff, 0)
            .trim_end_matches('Z')
            .replace('T', " ");
        let table = view_table_name(project, &view.name);
        self.write_on(move |conn| {
            let sql = format!(
                "DELETE FROM {} WHERE (typeof(event_ts) IN ('integer', 'real') AND event_ts < ?1) \
                 OR (typeof(event_ts) = 'text' AND event_ts < ?2)",
                quote(&table)
            );
            match conn.execute(&sql, rusqlite::params![cutoff, cutoff_text]) {
                Ok(n) => Ok(n as u64),
                Err(_) if table_missing(conn, &table) => Ok(0),
                Err(e) => Err(query_err(e)),
            }
        })
        .await
    }

    async fn create(&self, project: &str, view: &RoutedView) -> Result<(), BackendError> {
        let table = view_table_name(project, &view.name);
        let cache = Arc::clone(&self.value_text);
        self.write_on(move |conn| {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, \
                 vector_value BLOB, event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name));\n\
                 CREATE INDEX IF NOT EXISTS {i} ON {t} (entity_key);",
                t = quote(&table),
                i = quote(&format!("{table}_ek")),
            ))
            .map_err(query_err)?;
            if let Ok(mut c) = cache.lock() {
                c.remove(&table);
            }
            Ok(())
        })
        .await
    }

    async fn drop_view(
        &self,
        project: &str,
        view: &RoutedView,
        _remaining: &[&RoutedView],
    ) -> Result<(), BackendError> {
        let table = view_table_name(project, &view.name);
        let cache = Arc::clone(&self.value_text);
        self.write_on(move |conn| {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote(&table)))
                .map_err(query_err)?;
            if let Ok(mut c) = cache.lock() {
                c.remove(&table);
            }
            Ok(())
        })
        .await
    }

    fn storage_objects(&self, project: &str, view: &RoutedView) -> Vec<StorageObject> {
        vec![StorageObject {
            kind: "sqlite table",
            name: view_table_name(project, &view.name),
            location: self.location(),
        }]
    }

    async fn check(&self) -> Result<(), BackendError> {
        self.read_on(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(query_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Dtype;
    use api::routing::Feature;

    fn view() -> RoutedView {
        RoutedView {
            name: "v".into(),
            entities: vec![],
            features: vec![Feature {
                name: "a".into(),
                dtype: Dtype::Int64,
            }],
            ttl_seconds: None,
            online: true,
            tags: Default::default(),
            backend: "s".into(),
            timestamp_field: None,
            created_timestamp_column: None,
            push_source: None,
            migration: None,
        }
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(python_float(20.0), "20.0");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(1e-7), "1e-07");
        assert_eq!(python_float(f64::from(0.1f32)), "0.10000000149011612");
        assert_eq!(python_float(123456789.125), "123456789.125");
    }

    #[tokio::test]
    async fn write_read_overwrite_and_missing_table() {
        let dir = tempfile::tempdir().unwrap();
        let conf = SqliteConf {
            path: "sub/online.db".into(),
            vector_enabled: None,
            vector_len: None,
            text_search_enabled: None,
            enable_openai_compatible_store: None,
            key_ttl_seconds: None,
        };
        let ctx = OpenContext {
            base_dir: dir.path().to_path_buf(),
            secrets_dir: PathBuf::new(),
            trust: Trust::Confined,
        };
        let store = SqliteStore::open(&conf, &ctx).unwrap();
        let v = view();
        let err = store
            .read("p", &v, &[b"k".to_vec()], &["a".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::MissingTable { .. }), "{err}");
        store.create("p", &v).await.unwrap();
        store.create("p", &v).await.unwrap();
        let row = |val: i64, ts: i64| WriteRow {
            entity_key: b"k".to_vec(),
            values: vec![(
                "a".into(),
                Value {
                    val: Some(Val::Int64Val(val)),
                },
            )],
            event_ts: Timestamp::from_seconds(ts),
            created_ts: None,
        };
        store.write("p", &v, vec![row(1, 100)]).await.unwrap();
        store.write("p", &v, vec![row(2, 50)]).await.unwrap();
        let got = store
            .read(
                "p",
                &v,
                &[b"k".to_vec(), b"missing".to_vec(), b"k".to_vec()],
                &["a".into(), "b".into()],
            )
            .await
            .unwrap();
        let hit = got[0].as_ref().unwrap();
        assert_eq!(
            hit.values[0],
            Some(Value {
                val: Some(Val::Int64Val(1))
            }),
            "the newest event wins (Feast would keep the last write)"
        );
        assert_eq!(hit.values[1], None);
        assert_eq!(hit.event_ts, Timestamp::from_seconds(100));
        assert!(got[1].is_none());
        assert_eq!(got[2], got[0]);
        // A row stored with a text time (older Feast versions, Python's
        // default adapter) is compared as the time it spells.
        let t = view_table_name("p", &v.name);
        store
            .write_on(move |c| {
                c.execute(
                    &format!(
                        "UPDATE {} SET event_ts = '2024-05-01 12:00:00.5'",
                        quote(&t)
                    ),
                    [],
                )
                .map_err(query_err)
            })
            .await
            .unwrap();
        let at = |h: i64, m: i64| 1_714_521_600 + h * 3600 + m * 60;
        store.write("p", &v, vec![row(3, at(11, 0))]).await.unwrap();
        let a = |got: Vec<Option<ReadRow>>| got[0].as_ref().unwrap().values[0].clone();
        let (keys, names) = (vec![b"k".to_vec()], vec!["a".to_string()]);
        let read = || store.read("p", &v, &keys, &names);
        assert_eq!(
            a(read().await.unwrap()),
            Some(Value {
                val: Some(Val::Int64Val(1))
            })
        );
        store.write("p", &v, vec![row(4, at(12, 0))]).await.unwrap();
        assert_eq!(
            a(read().await.unwrap()),
            Some(Value {
                val: Some(Val::Int64Val(4))
            })
        );
        store.drop_view("p", &v, &[]).await.unwrap();
        store.drop_view("p", &v, &[]).await.unwrap();
        assert!(
            store
                .read("p", &v, &[b"k".to_vec()], &["a".into()])
                .await
                .is_err()
        );
    }

    fn conf(path: &str) -> SqliteConf {
        SqliteConf {
            path: path.into(),
            vector_enabled: None,
            vector_len: None,
            text_search_enabled: None,
            enable_openai_compatible_store: None,
            key_ttl_seconds: None,
        }
    }

    /// Every file and directory under `dir`, relative.
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
                if p.is_dir() && !p.is_symlink() {
                    todo.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn routing_table_paths_stay_in_the_data_dir() {
        let top = tempfile::tempdir().unwrap();
        let data = top.path().join("data");
        let outside = top.path().join("outside");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, data.join("escape")).unwrap();
        let ctx = OpenContext {
            base_dir: data.clone(),
            secrets_dir: PathBuf::new(),
            trust: Trust::Confined,
        };
        let before = tree(top.path());
        let outside_abs = outside.join("abs.db");
        for path in [
            "../outside.db".to_string(),
            "../outside/new/dir/x.db".to_string(),
            "sub/../../outside.db".to_string(),
            outside_abs.to_string_lossy().into_owned(),
            "/tmp/hos-never-created/outside.db".to_string(),
            #[cfg(unix)]
            "escape/x.db".to_string(),
            #[cfg(unix)]
            "escape/new/x.db".to_string(),
        ] {
            let err = SqliteStore::open(&conf(&path), &ctx)
                .err()
                .unwrap_or_else(|| panic!("{path}: opened"));
            let msg = err.to_string();
            assert!(matches!(err, BackendError::Config(_)), "{path}: {msg}");
            assert!(
                msg.contains("conf.path") && msg.contains("--data-dir"),
                "{msg}"
            );
        }
        assert_eq!(tree(top.path()), before, "something was created");
        assert!(!Path::new("/tmp/hos-never-created").exists());
        // Inside: created under the data dir, directories included.
        let store = SqliteStore::open(&conf("teams/a/online.db"), &ctx).unwrap();
        assert!(
            store
                .path()
                .starts_with(std::fs::canonicalize(&data).unwrap())
        );
        assert!(data.join("teams/a/online.db").exists());
    }

    #[test]
    fn a_users_repo_keeps_feast_semantics() {
        let top = tempfile::tempdir().unwrap();
        let repo = top.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let ctx = OpenContext {
            base_dir: repo.clone(),
            secrets_dir: PathBuf::new(),
            trust: Trust::Owner,
        };
        let store = SqliteStore::open(&conf("../beside.db"), &ctx).unwrap();
        assert_eq!(store.path(), repo.join("../beside.db"));
        assert!(top.path().join("beside.db").exists());
    }
}
