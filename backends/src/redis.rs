//! Feast's Redis online store (`type: redis`): one hash per entity at
//! `serialized entity key ++ project`; a field per feature named by the
//! 4-byte murmur3 of `<view>:<feature>` holding the serialized Value, and
//! `_ts:<view>` holding a serialized `google.protobuf.Timestamp`. A write
//! whose event time is older than the stored one is skipped, in one atomic
//! server-side step per hash (Feast compares in a separate read first,
//! which races); `key_ttl_seconds` sets EXPIRE on the hash.

use api::feast_config::{RedisConf, RedisType};
use api::keys::{redis_feature_field, redis_key, redis_ts_field};
use api::proto::Value;
use api::routing::RoutedView;
use prost::Message;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;

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
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(p) = &self.password {
            redis_info = redis_info.set_password(p.clone());
        }
        if let Some(u) = &self.username {
            redis_info = redis_info.set_username(u.clone());
        }
        addr.into_connection_info()
            .map(|i| i.set_redis_settings(redis_info))
            .map_err(err)
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A Redis server or cluster holding Feast's hashes.
pub struct RedisStore {
    conn: Conn,
    key_ttl_seconds: Option<u64>,
    /// Host list for messages (never the password).
    location: String,
}

fn err(e: redis::RedisError) -> BackendError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        BackendError::Unavailable(e.to_string())
    } else {
        BackendError::Query(e.to_string())
    }
}

async fn run<T: redis::FromRedisValue>(
    conn: &Conn,
    pipe: &redis::Pipeline,
) -> Result<T, BackendError> {
    run_raw(conn, pipe).await.map_err(err)
}

async fn run_raw<T: redis::FromRedisValue>(
    conn: &Conn,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<T> {
    match conn.clone() {
        Conn::Single(mut c) => pipe.query_async(&mut c).await,
        Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
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

/// Hashes per script call on a single server (one call per hash in a
/// cluster): few round trips and calls, while one call stays short.
const KEYS_PER_CALL: usize = 64;

static NEWEST_WINS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(NEWEST_WINS_LUA));

async fn cmd<T: redis::FromRedisValue>(conn: &Conn, c: &redis::Cmd) -> Result<T, BackendError> {
    async fn go<T: redis::FromRedisValue, C: ConnectionLike>(
        mut conn: C,
        c: &redis::Cmd,
    ) -> Result<T, BackendError> {
        c.query_async(&mut conn).await.map_err(err)
    }
    match conn.clone() {
        Conn::Single(c2) => go(c2, c).await,
        Conn::Cluster(c2) => go(c2, c).await,
    }
}

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
        let conn = match conf.redis_type {
            RedisType::Redis => {
                let (h, p) = &cs.nodes[0];
                let client = redis::Client::open(cs.info(h, *p)?).map_err(err)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
                    .set_response_timeout(Some(std::time::Duration::from_secs(5)))
                    .set_number_of_retries(2);
                Conn::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(err)?,
                )
            }
            RedisType::RedisCluster => {
                let nodes = cs
                    .nodes
                    .iter()
                    .map(|(h, p)| cs.info(h, *p))
                    .collect::<Result<Vec<_>, _>>()?;
                let client = redis::cluster::ClusterClient::new(nodes).map_err(err)?;
                Conn::Cluster(client.get_async_connection().await.map_err(err)?)
            }
            RedisType::RedisSentinel => {
                return Err(BackendError::Config(
                    "redis_sentinel is not supported yet; point connection_string at the master or use redis_cluster".into(),
                ));
            }
        };
        Ok(RedisStore {
            conn,
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
        let start: u64 = match cursor.as_deref() {
            None => 0,
            Some(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| BackendError::Query("bad scan cursor".into()))?,
        };
        let mut pattern = glob_escape_bytes(project.as_bytes());
        pattern.insert(0, b'*');
        let (next, found): (u64, Vec<Vec<u8>>) = cmd(
            &self.conn,
            redis::cmd("SCAN")
                .arg(start)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(limit.max(1)),
        )
        .await?;
        let keys = found
            .iter()
            .filter_map(|k| entity_key_of(k, project, view))
            .map(<[u8]>::to_vec)
            .collect();
        Ok(crate::KeyPage {
            keys,
            next: (next != 0).then(|| next.to_string().into_bytes()),
        })
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
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HMGET").arg(redis_key(k, project)).arg(&fields);
        }
        let replies: Vec<Vec<Option<Vec<u8>>>> = run(&self.conn, &pipe).await?;
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
        let ts_field = redis_ts_field(&view.name);
        let ttl = self.key_ttl_seconds.unwrap_or(0);
        let per_call = match self.conn {
            Conn::Single(_) => KEYS_PER_CALL,
            Conn::Cluster(_) => 1,
        };
        let mut pipe = redis::pipe();
        for chunk in rows.chunks(per_call) {
            // EVALSHA written out (rather than a ScriptInvocation, which
            // copies every argument once more): the hash, the keys, then
            // the arguments the script reads.
            let mut call = redis::cmd("EVALSHA");
            call.arg(NEWEST_WINS.get_hash()).arg(chunk.len());
            for row in chunk {
                call.arg(redis_key(&row.entity_key, project));
            }
            call.arg(&ts_field).arg(ttl);
            for row in chunk {
                call.arg(row.event_ts.seconds)
                    .arg(row.event_ts.nanos)
                    .arg(encode_ts(row.event_ts))
                    .arg(row.values.len());
                for (name, value) in &row.values {
                    call.arg(redis_feature_field(&view.name, name).as_slice())
                        .arg(value.encode_to_vec());
                }
            }
            pipe.add_command(call).ignore();
        }
        match run_raw::<()>(&self.conn, &pipe).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                // A server that restarted, failed over or flushed its
                // script cache: load the script (on every node of a
                // cluster) and send the batch once more. Each step is
                // conditional, so the steps that already ran stay right.
                let mut load = redis::cmd("SCRIPT");
                load.arg("LOAD").arg(NEWEST_WINS_LUA);
                cmd::<String>(&self.conn, &load).await?;
                run::<()>(&self.conn, &pipe).await
            }
            other => other.map_err(err),
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
        let pattern = format!("*{}", glob_escape(project));
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<Vec<u8>>) = cmd(&self.conn, &scan).await?;
            // MATCH `*<project>` also matches every project whose name ends
            // with this one; only exact keys of this project are touched.
            for k in keys
                .into_iter()
                .filter(|k| entity_key_of(k, project, view).is_some())
            {
                let mut hdel = redis::cmd("HDEL");
                hdel.arg(&k).arg(&fields);
                let _: i64 = cmd(&self.conn, &hdel).await?;
                let mut hlen = redis::cmd("HLEN");
                hlen.arg(&k);
                let left: i64 = cmd(&self.conn, &hlen).await?;
                if left == 0 {
                    let mut del = redis::cmd("DEL");
                    del.arg(&k);
                    let _: i64 = cmd(&self.conn, &del).await?;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
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
        let _: String = cmd(&self.conn, &redis::cmd("PING")).await?;
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

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
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
