//! Feast's Redis online store (`type: redis`): one hash per entity at
//! `serialized entity key ++ project`; a field per feature named by the
//! 4-byte murmur3 of `<view>:<feature>` holding the serialized Value, and
//! `_ts:<view>` holding a serialized `google.protobuf.Timestamp`. A write
//! whose event time is older than the stored one is skipped, atomically
//! (Feast compares in a separate read first, which races): `WATCH` and
//! `MULTI`/`EXEC` on a single server, a Lua step per hash otherwise;
//! `key_ttl_seconds` sets EXPIRE on the hash.

use api::feast_config::{RedisConf, RedisType};
use api::keys::{redis_feature_field, redis_key, redis_ts_field};
use api::proto::Value;
use api::routing::RoutedView;
use prost::Message;
use std::sync::Arc;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use crate::{BackendError, OnlineStore, ReadRow, StorageObject, Timestamp, WriteRow};

/// Parsed Feast `connection_string`: `host:port[,host:port...][,password=..][,ssl=true][,db=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub nodes: Vec<(String, u16)>,
    pub password: Option<String>,
    pub username: Option<String>,
    pub ssl: bool,
    pub db: i64,
}

impl ConnectionString {
    pub fn parse(s: &str) -> Result<ConnectionString, BackendError> {
        let mut cs = ConnectionString {
            nodes: Vec::new(),
            password: None,
            username: None,
            ssl: false,
            db: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = part.split_once('=') {
                match k.trim() {
                    "password" => cs.password = Some(v.to_string()),
                    "username" => cs.username = Some(v.to_string()),
                    "ssl" => cs.ssl = v.eq_ignore_ascii_case("true"),
                    "db" => {
                        cs.db = v.parse().map_err(|_| {
                            BackendError::Config(format!("redis connection_string: bad db `{v}`"))
                        })?
                    }
                    // Other redis-py options have no counterpart here.
                    other => tracing::debug!(option = other, "ignoring redis connection option"),
                }
            } else {
                let (host, port) = part.rsplit_once(':').unwrap_or((part, "6379"));
                let port = port.parse().map_err(|_| {
                    BackendError::Config(format!("redis connection_string: bad port in `{part}`"))
                })?;
                cs.nodes.push((host.to_string(), port));
            }
        }
        if cs.nodes.is_empty() {
            return Err(BackendError::Config(
                "redis connection_string names no host".into(),
            ));
        }
        Ok(cs)
    }

    fn info(&self, host: &str, port: u16) -> Result<redis::ConnectionInfo, BackendError> {
        use redis::IntoConnectionInfo;
        let addr = if self.ssl {
            redis::ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host.to_string(), port)
        };
        addr.into_connection_info()
            .map(|i| i.set_redis_settings(self.redis_settings()))
            .map_err(err)
    }

    /// Database, password and username of the data nodes.
    fn redis_settings(&self) -> redis::RedisConnectionInfo {
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(p) = &self.password {
            redis_info = redis_info.set_password(p.clone());
        }
        if let Some(u) = &self.username {
            redis_info = redis_info.set_username(u.clone());
        }
        redis_info
    }
}

/// Where a store's commands go.
enum Target {
    /// One server (`redis_type: redis`).
    Server(Arc<Server>),
    /// The master of a Sentinel-monitored group, found again after a
    /// failover (`redis_type: redis_sentinel`).
    Sentinel(Arc<Sentinel>),
    /// Redis Cluster (`redis_type: redis_cluster`): the cluster client
    /// follows MOVED/ASK and slot changes itself.
    Cluster(ClusterConnection),
}

/// One server: the managed shared connection (reconnects by itself) and
/// the dedicated connections of `WATCH`/`MULTI` writes.
struct Server {
    manager: ConnectionManager,
    tx: TxPool,
    /// `host:port`, for messages.
    addr: String,
}

impl Server {
    async fn connect(client: redis::Client) -> Result<Server, BackendError> {
        let addr = client.get_connection_info().addr().to_string();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let tx = TxPool {
            client: client.clone(),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT)),
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(TX_CONNECTIONS)),
        };
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(Server { manager, tx, addr })
    }

    /// Sends `pipe`; once more after the server dropped the connection
    /// (restart, idle timeout, CLIENT KILL), over the reconnected manager.
    /// Everything sent here is a read or a conditional write, so sending
    /// it again is safe.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut c = self.manager.clone();
        match pipe.query_async(&mut c).await {
            Err(e) if e.is_connection_dropped() => pipe.query_async(&mut c).await,
            other => other,
        }
    }
}

/// The Sentinel view of a master: the sentinels, asked again when the
/// current master stops answering as one, and the server in use.
struct Sentinel {
    client: tokio::sync::Mutex<SentinelClient>,
    current: ArcSwap<Server>,
    master: String,
}

impl Sentinel {
    /// After `failed` stopped serving as master: asks the sentinels for the
    /// master again and connects to it. Concurrent callers share one
    /// lookup: whoever comes second finds `current` already replaced.
    async fn refresh(&self, failed: &Arc<Server>) -> Result<Arc<Server>, BackendError> {
        let mut client = self.client.lock().await;
        let current = self.current.load_full();
        if !Arc::ptr_eq(&current, failed) {
            return Ok(current);
        }
        let found = client.async_get_client().await.map_err(err)?;
        self.switch(&current, found).await
    }

    /// Asks the sentinels which server is the master and switches to it if
    /// it is not the one in use: run every [`SENTINEL_POLL`], so writes
    /// move to a promoted replica within that time even while the old
    /// master still accepts them (writes it acknowledges after the
    /// promotion are lost when it is demoted, as with any Redis client).
    async fn poll(&self) {
        let mut client = self.client.lock().await;
        let current = self.current.load_full();
        match client.async_get_client().await {
            Ok(found) if found.get_connection_info().addr().to_string() != current.addr => {
                if let Err(e) = self.switch(&current, found).await {
                    tracing::warn!(master = %self.master, error = %e, "redis sentinel: cannot reach the new master yet");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(master = %self.master, error = %e, "redis sentinel: no master named");
            }
        }
    }

    async fn switch(
        &self,
        from: &Arc<Server>,
        to: redis::Client,
    ) -> Result<Arc<Server>, BackendError> {
        let server = Arc::new(Server::connect(to).await?);
        tracing::warn!(
            master = %self.master,
            from = %from.addr,
            to = %server.addr,
            "redis sentinel: switching to the master the sentinels name"
        );
        self.current.store(Arc::clone(&server));
        Ok(server)
    }
}

/// How often a Sentinel target asks the sentinels for the master.
const SENTINEL_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Commands in flight at once per write or read on a cluster.
const CLUSTER_IN_FLIGHT: usize = 64;

/// The masters of a cluster as `(host, port)`, ordered, from `CLUSTER SLOTS`
/// (each entry: first slot, last slot, then the master's host and port).
async fn cluster_masters(c: &ClusterConnection) -> Result<Vec<(String, u16)>, BackendError> {
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let ranges: Vec<Vec<redis::Value>> = slots.query_async(&mut c.clone()).await.map_err(err)?;
    let mut masters: Vec<(String, u16)> = ranges
        .into_iter()
        .filter_map(|r| {
            let redis::Value::Array(node) = r.into_iter().nth(2)? else {
                return None;
            };
            let mut node = node.into_iter();
            let host = match node.next()? {
                redis::Value::BulkString(b) => String::from_utf8(b).ok()?,
                redis::Value::SimpleString(s) => s,
                _ => return None,
            };
            let redis::Value::Int(port) = node.next()? else {
                return None;
            };
            Some((host, u16::try_from(port).ok()?))
        })
        .collect();
    masters.sort();
    masters.dedup();
    if masters.is_empty() {
        return Err(BackendError::Query("CLUSTER SLOTS named no master".into()));
    }
    Ok(masters)
}

/// Whether an error means the server is no longer (reachable as) the
/// master: the Sentinel target then looks the master up again.
fn master_lost(e: &redis::RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.code() == Some("READONLY")
        || e.code() == Some("MASTERDOWN")
        // `min-replicas-to-write` on a master cut off from its replicas
        || e.code() == Some("NOREPLICAS")
}

/// Dedicated connections for `WATCH`/`MULTI` writes on a single server.
/// The shared multiplexed connection cannot carry them: another task's
/// commands could land between `WATCH` and `EXEC`. At most
/// [`TX_CONNECTIONS`] are open; a write that finds none free takes the
/// script path instead of waiting.
struct TxPool {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    idle: std::sync::Mutex<Vec<MultiplexedConnection>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Open dedicated write connections per Redis server (per backend).
const TX_CONNECTIONS: usize = 16;

/// Keys per `WATCH`/`MULTI` transaction; larger writes run several in turn.
const TX_KEYS: usize = 1_000;

/// Transactions tried per chunk before a contended chunk takes the script.
const TX_ATTEMPTS: usize = 2;

/// A checked-out dedicated connection; returned with [`TxPool::put`] only
/// when its state is clean (no `WATCH` or `MULTI` pending).
struct TxConn {
    conn: MultiplexedConnection,
    /// Taken from the pool rather than opened for this write.
    reused: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl TxPool {
    async fn take(&self) -> Result<Option<TxConn>, redis::RedisError> {
        let Ok(permit) = std::sync::Arc::clone(&self.permits).try_acquire_owned() else {
            return Ok(None);
        };
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let reused = idle.is_some();
        let conn = match idle {
            Some(c) => c,
            None => {
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?
            }
        };
        Ok(Some(TxConn {
            conn,
            reused,
            _permit: permit,
        }))
    }

    fn put(&self, c: TxConn) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(c.conn);
        }
    }
}

/// A Redis server, Sentinel-monitored master or cluster holding Feast's
/// hashes.
pub struct RedisStore {
    target: Target,
    key_ttl_seconds: Option<u64>,
    /// Host list for messages (never the password).
    location: String,
}

/// Connect and response timeout of every Redis connection.
const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn err(e: redis::RedisError) -> BackendError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        BackendError::Unavailable(e.to_string())
    } else {
        BackendError::Query(e.to_string())
    }
}

/// The server-side step of a write, for one or more entity hashes (in a
/// cluster one per call, so it routes by its one key): for each hash,
/// compare the stored `_ts:<view>` (a serialized
/// `google.protobuf.Timestamp`, decoded here) with the row's event time;
/// when the stored one is newer leave the hash alone, otherwise set every
/// feature field and `_ts:<view>` in one HSET, and the hash's EXPIRE when
/// `key_ttl_seconds` is set. Atomic: no other command runs between a
/// comparison and its HSET.
///
/// KEYS: the hashes. ARGV[1] the `_ts:<view>` field; ARGV[2] EXPIRE
/// seconds (0: none); then per key: seconds, nanoseconds, the serialized
/// Timestamp, the number of fields n, and n field, value pairs.
/// Returns how many hashes were written.
const NEWEST_WINS_LUA: &str = r#"
local function varint(s, i)
  local v, m = 0, 1
  while i <= #s do
    local b = string.byte(s, i)
    i = i + 1
    v = v + (b % 128) * m
    if b < 128 then return v, i end
    m = m * 128
  end
  return nil, i
end
local function decode(s)
  local secs, nanos, i = 0, 0, 1
  while i <= #s do
    local tag = string.byte(s, i)
    local v
    v, i = varint(s, i + 1)
    if v == nil then return nil end
    if tag == 8 then secs = v elseif tag == 16 then nanos = v else return nil end
  end
  -- a negative int64 is a 10-byte varint: older than any valid time
  if secs >= 9223372036854775807 then secs = -1 end
  return secs, nanos
end
local ttl = tonumber(ARGV[2])
local p = 3
local written = 0
for k = 1, #KEYS do
  local ws, wn, ts, n = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), ARGV[p + 2], tonumber(ARGV[p + 3])
  local first, last = p + 4, p + 3 + 2 * n
  p = last + 1
  local stored = redis.call('HGET', KEYS[k], ARGV[1])
  local newer = false
  if stored then
    local s, ns = decode(stored)
    newer = s ~= nil and (s > ws or (s == ws and ns > wn))
  end
  if not newer then
    if n <= 3000 then
      redis.call('HSET', KEYS[k], ARGV[1], ts, unpack(ARGV, first, last))
    else
      redis.call('HSET', KEYS[k], ARGV[1], ts)
      for i = first, last, 2000 do
        redis.call('HSET', KEYS[k], unpack(ARGV, i, math.min(i + 1999, last)))
      end
    end
    if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
    written = written + 1
  end
end
return written
"#;

/// What every path of one write shares: the `_ts:<view>` field, the
/// EXPIRE seconds, and the hashed field names of the first row's features
/// (rows of one write almost always name the same features in the same
/// order, so each name is hashed once per write, not once per row).
struct Write<'a> {
    view: &'a str,
    ts_field: String,
    ttl: u64,
    first: Vec<(&'a str, [u8; 4])>,
}

impl<'a> Write<'a> {
    fn new(view: &'a RoutedView, rows: &'a [WriteRow], ttl: u64) -> Write<'a> {
        let first = rows
            .first()
            .map(|r| {
                r.values
                    .iter()
                    .map(|(n, _)| (n.as_str(), redis_feature_field(&view.name, n)))
                    .collect()
            })
            .unwrap_or_default();
        Write {
            view: &view.name,
            ts_field: redis_ts_field(&view.name),
            ttl,
            first,
        }
    }

    /// Appends the row's `field, value` pairs to `c`.
    fn fields(&self, c: &mut redis::Cmd, row: &WriteRow) {
        for (i, (name, value)) in row.values.iter().enumerate() {
            match self.first.get(i) {
                Some((n, field)) if *n == name.as_str() => c.arg(field.as_slice()),
                _ => c.arg(redis_feature_field(self.view, name).as_slice()),
            };
            c.arg(value.encode_to_vec());
        }
    }
}

/// Whether a stored `_ts:<view>` is later than `ts`. A value that does not
/// decode, or holds `i64::MAX` seconds (what a negative int64 decodes to
/// in the script's doubles), counts as older, as in [`NEWEST_WINS_LUA`].
fn stored_is_newer(stored: &[u8], ts: Timestamp) -> bool {
    decode_ts(stored).is_some_and(|s| s.seconds != i64::MAX && s > ts)
}

/// The transaction path of a write on a single server, for up to
/// [`TX_KEYS`] distinct hashes: on a dedicated connection, `WATCH` the
/// hashes and read their `_ts:<view>` (one round trip); then in one
/// `MULTI`/`EXEC` set the rows whose stored time is not later (a second
/// round trip; nothing is sent when every row is older). Redis runs the
/// `HSET`s natively, which costs its one thread less than passing every
/// value through the script. If another client changes a watched hash
/// first, `EXEC` applies nothing and the chunk is tried again, then left
/// to the script.
///
/// `Ok(true)`: the chunk is settled. `Ok(false)`: the caller runs the
/// script (no free dedicated connection, contention, or a pooled
/// connection the server has closed).
async fn watched(
    pool: &TxPool,
    w: &Write<'_>,
    rows: &[WriteRow],
    keys: &[Vec<u8>],
) -> Result<bool, BackendError> {
    let mut c = match pool.take().await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(false),
        // The script path reports it (or, on a Sentinel target, finds the
        // new master).
        Err(e) => {
            tracing::debug!(error = %e, "no dedicated redis write connection");
            return Ok(false);
        }
    };
    for _ in 0..TX_ATTEMPTS {
        match transact(&mut c.conn, w, rows, keys).await {
            Ok(true) => {
                pool.put(c);
                return Ok(true);
            }
            Ok(false) => continue,
            // A connection that waited in the pool may have been closed by
            // the server (timeout, restart), or the server is a replica now
            // (a Sentinel failover): drop it; the script path's managed
            // connection reconnects, or finds the new master.
            Err(e) if (c.reused && master_lost(&e)) || e.code() == Some("READONLY") => {
                tracing::debug!(error = %e, "dropping a closed redis write connection");
                return Ok(false);
            }
            // The connection's state (a pending WATCH) is unknown: drop it.
            Err(e) => return Err(err(e)),
        }
    }
    tracing::debug!(
        keys = keys.len(),
        "redis write contended; taking the script"
    );
    pool.put(c);
    Ok(false)
}

/// One `WATCH`, read, `MULTI`/`EXEC` round; `Ok(false)` when `EXEC` was
/// aborted by a change to a watched hash. Leaves no `WATCH` pending.
async fn transact(
    conn: &mut MultiplexedConnection,
    w: &Write<'_>,
    rows: &[WriteRow],
    keys: &[Vec<u8>],
) -> redis::RedisResult<bool> {
    let mut read = redis::pipe();
    read.cmd("WATCH").arg(keys).ignore();
    for k in keys {
        read.cmd("HGET").arg(k).arg(&w.ts_field);
    }
    let stored: Vec<Option<Vec<u8>>> = read.query_async(conn).await?;
    let mut tx = redis::pipe();
    tx.atomic();
    let mut writes = 0;
    for ((row, key), stored) in rows.iter().zip(keys).zip(&stored) {
        if stored
            .as_deref()
            .is_some_and(|s| stored_is_newer(s, row.event_ts))
        {
            continue;
        }
        writes += 1;
        let mut hset = redis::cmd("HSET");
        hset.arg(key).arg(&w.ts_field).arg(encode_ts(row.event_ts));
        w.fields(&mut hset, row);
        tx.add_command(hset).ignore();
        if w.ttl > 0 {
            tx.cmd("EXPIRE").arg(key).arg(w.ttl).ignore();
        }
    }
    if writes == 0 {
        let _: () = redis::cmd("UNWATCH").query_async(conn).await?;
        return Ok(true);
    }
    let done: Option<()> = tx.query_async(conn).await?;
    Ok(done.is_some())
}

/// Hashes per script call on a single server (one call per hash in a
/// cluster): few round trips and calls, while one call stays short.
const KEYS_PER_CALL: usize = 64;

static NEWEST_WINS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(NEWEST_WINS_LUA));

fn decode_ts(bytes: &[u8]) -> Option<Timestamp> {
    let ts = prost_types::Timestamp::decode(bytes).ok()?;
    Some(Timestamp {
        seconds: ts.seconds,
        nanos: u32::try_from(ts.nanos).unwrap_or(0),
    })
}

fn encode_ts(ts: Timestamp) -> Vec<u8> {
    prost_types::Timestamp {
        seconds: ts.seconds,
        nanos: i32::try_from(ts.nanos).unwrap_or(0),
    }
    .encode_to_vec()
}

impl RedisStore {
    /// Sends `pipe` to the store's server, master or cluster. On a
    /// Sentinel target an answer that says the master is gone (dropped
    /// connection, READONLY after a failover) makes it ask the sentinels
    /// and send once more to the master they name.
    async fn run_raw<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        match &self.target {
            Target::Server(s) => s.query(pipe).await,
            Target::Cluster(c) => pipe.query_async(&mut c.clone()).await,
            Target::Sentinel(sentinel) => {
                let server = sentinel.current.load_full();
                match server.query(pipe).await {
                    Err(e) if master_lost(&e) => match sentinel.refresh(&server).await {
                        Ok(server) => server.query(pipe).await,
                        Err(_) => Err(e),
                    },
                    other => other,
                }
            }
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, BackendError> {
        self.run_raw(pipe).await.map_err(err)
    }

    /// Commands whose replies are all wanted, in order: one pipeline on a
    /// server, and in a cluster each command on its own, up to
    /// [`CLUSTER_IN_FLIGHT`] at once (a cluster pipeline must stay within
    /// one slot; these name one key each, in any slot).
    async fn run_each_raw<T: redis::FromRedisValue>(
        &self,
        cmds: impl Iterator<Item = redis::Cmd>,
    ) -> redis::RedisResult<Vec<T>> {
        use futures::{StreamExt, TryStreamExt};
        match &self.target {
            Target::Cluster(c) => {
                futures::stream::iter(cmds)
                    .map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async::<T>(&mut c).await }
                    })
                    .buffered(CLUSTER_IN_FLIGHT)
                    .try_collect()
                    .await
            }
            _ => {
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c);
                }
                self.run_raw(&pipe).await
            }
        }
    }

    async fn run_each<T: redis::FromRedisValue>(
        &self,
        cmds: impl Iterator<Item = redis::Cmd>,
    ) -> Result<Vec<T>, BackendError> {
        self.run_each_raw(cmds).await.map_err(err)
    }

    /// One page of `SCAN MATCH pattern` over the whole keyspace: the keys
    /// found and the cursor of the next page. On a server the cursor is
    /// SCAN's; in a cluster it is `<master>:<cursor>`, walking the masters
    /// (ordered by address) one after the other. A cluster whose masters
    /// change during a walk may repeat or skip keys of the moved slots;
    /// the operator's backfill verifies what it copied.
    async fn scan_page(
        &self,
        cursor: Option<&[u8]>,
        pattern: &[u8],
        count: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), BackendError> {
        let bad = || BackendError::Query("bad scan cursor".into());
        let text = cursor
            .map(|b| std::str::from_utf8(b).map_err(|_| bad()))
            .transpose()?;
        let mut scan = redis::cmd("SCAN");
        let Target::Cluster(c) = &self.target else {
            let start: u64 = match text {
                None => 0,
                Some(t) => t.parse().map_err(|_| bad())?,
            };
            scan.arg(start)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count);
            let (next, keys): (u64, Vec<Vec<u8>>) = self.cmd(&scan).await?;
            return Ok((keys, (next != 0).then(|| next.to_string().into_bytes())));
        };
        let (node, start): (usize, u64) = match text {
            None => (0, 0),
            Some(t) => {
                let (n, c) = t.split_once(':').ok_or_else(bad)?;
                (n.parse().map_err(|_| bad())?, c.parse().map_err(|_| bad())?)
            }
        };
        let masters = cluster_masters(c).await?;
        let Some((host, port)) = masters.get(node) else {
            return Ok((Vec::new(), None));
        };
        scan.arg(start)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        });
        let reply = c.clone().route_command(scan, routing).await.map_err(err)?;
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::FromRedisValue::from_redis_value(reply)
            .map_err(|e| BackendError::Query(format!("SCAN reply: {e}")))?;
        let next = if next != 0 {
            Some(format!("{node}:{next}"))
        } else {
            (node + 1 < masters.len()).then(|| format!("{}:0", node + 1))
        };
        Ok((keys, next.map(String::into_bytes)))
    }

    /// One command, sent as [`RedisStore::run`] sends a pipeline.
    /// In a cluster the command goes as a command, which the cluster
    /// client routes by its kind (`SCRIPT LOAD` to every master).
    async fn cmd<T: redis::FromRedisValue>(&self, c: &redis::Cmd) -> Result<T, BackendError> {
        if let Target::Cluster(cluster) = &self.target {
            return c.query_async(&mut cluster.clone()).await.map_err(err);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(c.clone());
        let (v,): (T,) = self.run(&pipe).await?;
        Ok(v)
    }

    /// The server `WATCH`/`MULTI` writes go to: none in a cluster.
    fn server(&self) -> Option<Arc<Server>> {
        match &self.target {
            Target::Server(s) => Some(Arc::clone(s)),
            Target::Sentinel(sentinel) => Some(sentinel.current.load_full()),
            Target::Cluster(_) => None,
        }
    }

    /// The script path of a write: [`NEWEST_WINS_LUA`] over the shared
    /// connection, [`KEYS_PER_CALL`] hashes per call (one in a cluster),
    /// all calls in one pipeline.
    async fn scripted(
        &self,
        w: &Write<'_>,
        rows: &[WriteRow],
        keys: &[Vec<u8>],
    ) -> Result<(), BackendError> {
        let per_call = match self.target {
            Target::Cluster(_) => 1,
            _ => KEYS_PER_CALL,
        };
        let mut calls = Vec::with_capacity(rows.len().div_ceil(per_call));
        for (rows, keys) in rows.chunks(per_call).zip(keys.chunks(per_call)) {
            // EVALSHA written out (rather than a ScriptInvocation, which
            // copies every argument once more): the hash, the keys, then
            // the arguments the script reads.
            let mut call = redis::cmd("EVALSHA");
            call.arg(NEWEST_WINS.get_hash()).arg(keys.len()).arg(keys);
            call.arg(&w.ts_field).arg(w.ttl);
            for row in rows {
                call.arg(row.event_ts.seconds)
                    .arg(row.event_ts.nanos)
                    .arg(encode_ts(row.event_ts))
                    .arg(row.values.len());
                w.fields(&mut call, row);
            }
            calls.push(call);
        }
        let mut loads = 0;
        loop {
            match self
                .run_each_raw::<redis::Value>(calls.iter().cloned())
                .await
            {
                // A server that restarted, failed over or flushed its script
                // cache (a replica resynchronising drops it too): load the
                // script (on every master of a cluster) and send the batch
                // once more; twice, for a failover in between. Each step is
                // conditional, so the steps that already ran stay right.
                Err(e) if e.code() == Some("NOSCRIPT") && loads < 2 => {
                    loads += 1;
                    let mut load = redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(NEWEST_WINS_LUA);
                    self.cmd::<redis::Value>(&load).await?;
                }
                other => return other.map(drop).map_err(err),
            }
        }
    }

    pub async fn open(
        conf: &RedisConf,
        ctx: &crate::OpenContext,
    ) -> Result<RedisStore, BackendError> {
        let mut cs = ConnectionString::parse(&conf.connection_string)?;
        if let Some(p) = &conf.password {
            cs.password = Some(crate::credentials::resolve(p, "conf.password", ctx)?);
        }
        let location = cs
            .nodes
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let target = match conf.redis_type {
            RedisType::Redis => {
                let (h, p) = &cs.nodes[0];
                let client = redis::Client::open(cs.info(h, *p)?).map_err(err)?;
                Target::Server(Arc::new(Server::connect(client).await?))
            }
            RedisType::RedisCluster => {
                let nodes = cs
                    .nodes
                    .iter()
                    .map(|(h, p)| cs.info(h, *p))
                    .collect::<Result<Vec<_>, _>>()?;
                let client = redis::cluster::ClusterClient::new(nodes).map_err(err)?;
                Target::Cluster(client.get_async_connection().await.map_err(err)?)
            }
            RedisType::RedisSentinel => {
                // As Feast (redis-py's `Sentinel(hosts, **options)`): the
                // hosts are the sentinels, reached without the options;
                // password, username, db and ssl apply to the master.
                let sentinels: Vec<redis::ConnectionInfo> = cs
                    .nodes
                    .iter()
                    .map(|(h, p)| {
                        use redis::IntoConnectionInfo;
                        redis::ConnectionAddr::Tcp(h.clone(), *p)
                            .into_connection_info()
                            .map_err(err)
                    })
                    .collect::<Result<_, _>>()?;
                let mut node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(cs.redis_settings());
                if cs.ssl {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let mut client = SentinelClient::build(
                    sentinels,
                    conf.sentinel_master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(err)?;
                let found = client.async_get_client().await.map_err(err)?;
                let server = Server::connect(found).await?;
                tracing::info!(master = %conf.sentinel_master, addr = %server.addr, "redis sentinel: master found");
                let sentinel = Arc::new(Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    current: ArcSwap::from_pointee(server),
                    master: conf.sentinel_master.clone(),
                });
                // Polls for as long as the store lives.
                let watched = Arc::downgrade(&sentinel);
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(SENTINEL_POLL).await;
                        let Some(sentinel) = watched.upgrade() else {
                            break;
                        };
                        sentinel.poll().await;
                    }
                });
                Target::Sentinel(sentinel)
            }
        };
        Ok(RedisStore {
            target,
            key_ttl_seconds: conf.key_ttl_seconds,
            location,
        })
    }
}

#[async_trait::async_trait]
impl OnlineStore for RedisStore {
    async fn scan_keys(
        &self,
        project: &str,
        view: &RoutedView,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<crate::KeyPage, BackendError> {
        // Keys are `<entity key><project>`; SCAN's cursor resumes the walk.
        // MATCH only narrows the walk (`*b` also matches project `ab`);
        // `entity_key_of` decides. Entities without this view's fields come
        // back from `read` as missing, so the page needs no per-view filter.
        let mut pattern = glob_escape_bytes(project.as_bytes());
        pattern.insert(0, b'*');
        let (found, next) = self
            .scan_page(cursor.as_deref(), &pattern, limit.max(1))
            .await?;
        let keys = found
            .iter()
            .filter_map(|k| entity_key_of(k, project, view))
            .map(<[u8]>::to_vec)
            .collect();
        Ok(crate::KeyPage { keys, next })
    }

    async fn read(
        &self,
        project: &str,
        view: &RoutedView,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Option<ReadRow>>, BackendError> {
        let fields: Vec<Vec<u8>> = features
            .iter()
            .map(|f| redis_feature_field(&view.name, f).to_vec())
            .chain(std::iter::once(redis_ts_field(&view.name).into_bytes()))
            .collect();
        let cmds: Vec<redis::Cmd> = keys
            .iter()
            .map(|k| {
                let mut c = redis::cmd("HMGET");
                c.arg(redis_key(k, project)).arg(&fields);
                c
            })
            .collect();
        let replies: Vec<Vec<Option<Vec<u8>>>> = self.run_each(cmds.into_iter()).await?;
        replies
            .into_iter()
            .map(|mut cells| {
                let ts = cells.pop().flatten();
                if ts.is_none() && cells.iter().all(Option::is_none) {
                    return Ok(None);
                }
                let values = cells
                    .into_iter()
                    .zip(features)
                    .map(|(cell, f)| {
                        cell.map(|b| {
                            Value::decode(b.as_slice()).map_err(|e| BackendError::Corrupt {
                                feature: f.clone(),
                                message: e.to_string(),
                            })
                        })
                        .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(ReadRow {
                    values,
                    event_ts: ts.as_deref().and_then(decode_ts).unwrap_or_default(),
                }))
            })
            .collect()
    }

    async fn write(
        &self,
        project: &str,
        view: &RoutedView,
        rows: Vec<WriteRow>,
    ) -> Result<(), BackendError> {
        if rows.is_empty() {
            return Ok(());
        }
        let w = Write::new(view, &rows, self.key_ttl_seconds.unwrap_or(0));
        let keys: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| redis_key(&r.entity_key, project))
            .collect();
        // A batch naming a key twice is ordered by the script, which
        // compares each row with the one before it.
        let distinct = {
            let mut seen = std::collections::HashSet::with_capacity(keys.len());
            keys.iter().all(|k| seen.insert(k.as_slice()))
        };
        match self.server() {
            Some(server) if distinct => {
                for (rows, keys) in rows.chunks(TX_KEYS).zip(keys.chunks(TX_KEYS)) {
                    if !watched(&server.tx, &w, rows, keys).await? {
                        self.scripted(&w, rows, keys).await?;
                    }
                }
                Ok(())
            }
            _ => self.scripted(&w, &rows, &keys).await,
        }
    }

    async fn create(&self, _project: &str, _view: &RoutedView) -> Result<(), BackendError> {
        // Hashes appear with the first write; nothing to provision.
        Ok(())
    }

    async fn drop_view(
        &self,
        project: &str,
        view: &RoutedView,
        _remaining: &[&RoutedView],
    ) -> Result<(), BackendError> {
        let mut fields: Vec<Vec<u8>> = view
            .features
            .iter()
            .map(|f| redis_feature_field(&view.name, &f.name).to_vec())
            .collect();
        fields.push(redis_ts_field(&view.name).into_bytes());
        let mut pattern = glob_escape_bytes(project.as_bytes());
        pattern.insert(0, b'*');
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let (keys, next) = self.scan_page(cursor.as_deref(), &pattern, 1000).await?;
            // MATCH `*<project>` also matches every project whose name ends
            // with this one; only exact keys of this project are touched.
            for k in keys
                .into_iter()
                .filter(|k| entity_key_of(k, project, view).is_some())
            {
                let mut hdel = redis::cmd("HDEL");
                hdel.arg(&k).arg(&fields);
                let _: i64 = self.cmd(&hdel).await?;
                let mut hlen = redis::cmd("HLEN");
                hlen.arg(&k);
                let left: i64 = self.cmd(&hlen).await?;
                if left == 0 {
                    let mut del = redis::cmd("DEL");
                    del.arg(&k);
                    let _: i64 = self.cmd(&del).await?;
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        Ok(())
    }

    fn storage_objects(&self, project: &str, view: &RoutedView) -> Vec<StorageObject> {
        vec![StorageObject {
            kind: "redis hash fields",
            name: format!(
                "{}:* and _ts:{} in hashes keyed *{project}",
                view.name, view.name
            ),
            location: self.location.clone(),
        }]
    }

    async fn check(&self) -> Result<(), BackendError> {
        let _: String = self.cmd(&redis::cmd("PING")).await?;
        Ok(())
    }
}

/// The entity key part of a Redis key of `project`: the key must be exactly
/// a well-formed serialized entity key followed by exactly the project's
/// bytes. v3 keys are recognised by their own structure; legacy v2 keys
/// (no lengths) by the view's join keys.
fn entity_key_of<'k>(key: &'k [u8], project: &str, view: &RoutedView) -> Option<&'k [u8]> {
    let entity = key.strip_suffix(project.as_bytes())?;
    if api::entity_key::v3_prefix_len(entity) == Some(entity.len()) {
        return Some(entity);
    }
    let join_keys: Vec<&str> = view.join_keys().map(|j| j.name.as_str()).collect();
    (!join_keys.is_empty()
        && api::entity_key::v2_prefix_len(entity, &join_keys) == Some(entity.len()))
    .then_some(entity)
}

fn glob_escape_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_feast_connection_strings() {
        let cs = ConnectionString::parse("redis1:6380,redis2:6381,password=s3cret,ssl=true,db=2")
            .unwrap();
        assert_eq!(
            cs.nodes,
            vec![("redis1".into(), 6380), ("redis2".into(), 6381)]
        );
        assert_eq!(cs.password.as_deref(), Some("s3cret"));
        assert!(cs.ssl);
        assert_eq!(cs.db, 2);
        assert_eq!(
            ConnectionString::parse("localhost").unwrap().nodes,
            vec![("localhost".into(), 6379)]
        );
        assert!(ConnectionString::parse("h:port").is_err());
        assert!(ConnectionString::parse("password=x").is_err());
    }

    #[test]
    fn timestamp_round_trip() {
        let ts = Timestamp {
            seconds: 1714566896,
            nanos: 5,
        };
        assert_eq!(decode_ts(&encode_ts(ts)), Some(ts));
    }
}
