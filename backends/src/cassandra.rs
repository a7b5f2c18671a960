//! Feast's Cassandra/ScyllaDB online store (`type: cassandra`): table
//! `"<keyspace>"."<project>_<view>"` with `entity_key TEXT` (hex of the
//! serialized key), `feature_name TEXT` (clustering column), `value BLOB`
//! (serialized Value) and `event_ts`/`created_ts TIMESTAMP` (milliseconds).
//! Statements are prepared once per table; reads are one single-partition
//! query per entity (token-aware routing) with bounded concurrency.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use api::feast_config::CassandraConf;
use api::keys::{cassandra_entity_key, cassandra_table_name};
use api::proto::Value;
use api::routing::RoutedView;
use futures::StreamExt;
use prost::Message;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::cluster::metadata::Strategy;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::frame::types::Consistency;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::{BackendError, OnlineStore, ReadRow, StorageObject, Timestamp, WriteRow};

/// A Cassandra or ScyllaDB cluster (one keyspace of it).
pub struct CassandraStore {
    session: Session,
    keyspace: String,
    table_name_format_version: u32,
    key_ttl_seconds: Option<u64>,
    read_concurrency: usize,
    write_concurrency: usize,
    read_consistency: Option<Consistency>,
    write_consistency: Option<Consistency>,
    /// `load_balancing.local_dc`: where `LOCAL_*` levels count replicas.
    local_dc: Option<String>,
    prepared: Mutex<HashMap<(String, &'static str), PreparedStatement>>,
    hosts: String,
}

fn consistency(name: &str) -> Result<Consistency, BackendError> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => {
            return Err(BackendError::Config(format!(
                "unknown Cassandra consistency level `{other}`"
            )));
        }
    })
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Whether one attempt failed for the cluster's or the connection's sake
/// (worth another node or a later try), not for the request's.
fn attempt_unavailable(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::ReadFailure { .. }
                | DbError::WriteFailure { .. }
                | DbError::TruncateError
                | DbError::ServerError
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

fn prepare_unavailable(e: &PrepareError) -> bool {
    match e {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_unavailable(first_attempt),
        _ => false,
    }
}

/// A failed prepare by the driver's typed error, as [`execution_error`].
fn prepare_error(e: PrepareError) -> BackendError {
    if prepare_unavailable(&e) {
        BackendError::Unavailable(e.to_string())
    } else {
        BackendError::Query(e.to_string())
    }
}

/// The server refused the statement as invalid (as Cassandra does a table
/// that does not exist; whether it exists is then asked of the schema).
fn attempt_invalid(e: &RequestAttemptError) -> bool {
    matches!(e, RequestAttemptError::DbError(DbError::Invalid, _))
}

/// A request's failure by the driver's typed error: `Unavailable` when
/// the cluster, a node or a connection failed (counted by the circuit,
/// answered 503), `Query` when the request itself was refused.
fn execution_error(e: ExecutionError) -> BackendError {
    let unavailable = match &e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::UseKeyspaceError(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::LastAttemptError(a) => attempt_unavailable(a),
        ExecutionError::PrepareError(p) => prepare_unavailable(p),
        _ => false,
    };
    if unavailable {
        BackendError::Unavailable(e.to_string())
    } else {
        BackendError::Query(e.to_string())
    }
}

/// `e` with `what` (the statement's purpose) before its message.
fn in_context(e: BackendError, what: &str) -> BackendError {
    match e {
        BackendError::Unavailable(m) => BackendError::Unavailable(format!("{what}: {m}")),
        BackendError::Query(m) => BackendError::Query(format!("{what}: {m}")),
        other => other,
    }
}

/// A result that is not the rows it should be (a protocol or type error).
fn result_error(e: impl std::fmt::Display) -> BackendError {
    BackendError::Query(e.to_string())
}

impl CassandraStore {
    pub async fn open(
        conf: &CassandraConf,
        ctx: &crate::OpenContext,
    ) -> Result<CassandraStore, BackendError> {
        if conf.secure_bundle_path.is_some() {
            return Err(BackendError::Config(
                "secure_bundle_path (Astra DB) is not supported; give `hosts`".into(),
            ));
        }
        let hosts = conf
            .hosts
            .clone()
            .unwrap_or_else(|| vec!["127.0.0.1".into()]);
        let port = conf.port.unwrap_or(9042);
        if let Some(v) = conf.protocol_version.filter(|v| *v != 4) {
            tracing::warn!(
                protocol_version = v,
                "the scylla driver speaks CQL protocol v4; ignoring protocol_version"
            );
        }
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(lb) = &conf.load_balancing {
            policy = policy.prefer_datacenter(lb.local_dc.clone());
        }
        let mut profile = ExecutionProfile::builder().load_balancing_policy(policy.build());
        if let Some(t) = conf.request_timeout.filter(|t| *t > 0.0) {
            // A timeout too large for a Duration (`.inf`, `1e20`) means none.
            profile = profile.request_timeout(Duration::try_from_secs_f64(t).ok());
        }
        let nodes: Vec<String> = hosts
            .iter()
            .map(|h| {
                if h.contains(':') {
                    h.clone()
                } else {
                    format!("{h}:{port}")
                }
            })
            .collect();
        let mut builder = SessionBuilder::new()
            .known_nodes(&nodes)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.build().into_handle());
        let username = conf
            .username
            .as_ref()
            .map(|c| crate::credentials::resolve(c, "conf.username", ctx))
            .transpose()?;
        let password = conf
            .password
            .as_ref()
            .map(|c| crate::credentials::resolve(c, "conf.password", ctx))
            .transpose()?;
        if let (Some(u), Some(p)) = (username, password) {
            builder = builder.user(u, p);
        }
        let session = builder.build().await.map_err(|e| {
            BackendError::Unavailable(format!("cannot connect to {}: {e}", nodes.join(",")))
        })?;
        Ok(CassandraStore {
            session,
            keyspace: conf.keyspace.clone(),
            table_name_format_version: conf.table_name_format_version,
            key_ttl_seconds: conf.key_ttl_seconds,
            read_concurrency: conf.read_concurrency.max(1) as usize,
            write_concurrency: conf.write_concurrency.max(1) as usize,
            read_consistency: conf
                .read_consistency
                .as_deref()
                .map(consistency)
                .transpose()?,
            write_consistency: conf
                .write_consistency
                .as_deref()
                .map(consistency)
                .transpose()?,
            local_dc: conf.load_balancing.as_ref().map(|lb| lb.local_dc.clone()),
            prepared: Mutex::new(HashMap::new()),
            hosts: nodes.join(","),
        })
    }

    fn table(&self, project: &str, view: &RoutedView) -> Result<String, BackendError> {
        cassandra_table_name(project, &view.name, self.table_name_format_version)
            .map_err(|e| BackendError::Config(format!("feature view `{}`: {e}", view.name)))
    }

    fn fq(&self, table: &str) -> String {
        format!("{}.{}", quote(&self.keyspace), quote(table))
    }

    /// Whether `table` exists in the keyspace, asked of the schema tables
    /// (the server's refusal of a statement does not say why in a typed
    /// way).
    async fn table_exists(&self, table: &str) -> Result<bool, BackendError> {
        let res = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
                (self.keyspace.as_str(), table),
            )
            .await
            .map_err(execution_error)?;
        let rows = res.into_rows_result().map_err(result_error)?;
        Ok(rows.rows_num() > 0)
    }

    async fn statement(
        &self,
        table: &str,
        op: &'static str,
    ) -> Result<PreparedStatement, BackendError> {
        let key = (table.to_string(), op);
        if let Some(p) = self.prepared.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        let fq = self.fq(table);
        let cql = match op {
            "select" => {
                format!("SELECT feature_name, value, event_ts FROM {fq} WHERE entity_key = ?")
            }
            _ => match self.key_ttl_seconds {
                Some(ttl) => format!(
                    "INSERT INTO {fq} (feature_name, value, entity_key, event_ts) VALUES (?, ?, ?, ?) USING TTL {ttl}"
                ),
                None => format!(
                    "INSERT INTO {fq} (feature_name, value, entity_key, event_ts) VALUES (?, ?, ?, ?)"
                ),
            },
        };
        // A refusal as invalid with the table present in the schema means
        // the table is being created (another process's `apply`): the
        // server lists it in system_schema a moment before its statements
        // can use it. The statement is prepared again a few times, 50 ms
        // apart and doubling (1.55 s in all), before the refusal stands.
        let mut wait = std::time::Duration::from_millis(50);
        let mut retries_left = 5;
        let mut prepared = loop {
            let e = match self.session.prepare(cql.as_str()).await {
                Ok(p) => break p,
                Err(e) => e,
            };
            let invalid = matches!(
                &e,
                PrepareError::AllAttemptsFailed { first_attempt } if attempt_invalid(first_attempt)
            );
            if invalid {
                if !self.table_exists(table).await? {
                    return Err(BackendError::MissingTable {
                        table: table.to_string(),
                        location: format!("keyspace {} on {}", self.keyspace, self.hosts),
                    });
                }
                if retries_left > 0 {
                    retries_left -= 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    continue;
                }
            }
            return Err(prepare_error(e));
        };
        let level = if op == "select" {
            self.read_consistency
        } else {
            self.write_consistency
        };
        if let Some(c) = level {
            prepared.set_consistency(c);
        }
        // Reads, and writes stamped with their event time, give the same
        // result when replayed: the driver may retry them on another node
        // when the one it asked fails mid-request (a node shutting down
        // resets its connections).
        prepared.set_is_idempotent(true);
        if let Ok(mut m) = self.prepared.lock() {
            m.insert(key, prepared.clone());
        }
        Ok(prepared)
    }

    fn forget(&self, table: &str) {
        if let Ok(mut m) = self.prepared.lock() {
            m.retain(|(t, _), _| t != table);
        }
    }
}

/// A row's Cassandra write timestamp: its event time in microseconds
/// (validated event times, 1970..=9999, fit an i64 many times over).
fn write_timestamp_micros(ts: Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(ts.nanos / 1_000))
}

#[async_trait::async_trait]
impl OnlineStore for CassandraStore {
    async fn scan_keys(
        &self,
        project: &str,
        view: &RoutedView,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<crate::KeyPage, BackendError> {
        let table = self.table(project, view)?;
        // Partitions in token order; the cursor is the last token seen.
        let after = match cursor.as_deref() {
            Some(b) if b.len() == 8 => {
                let mut t = [0u8; 8];
                t.copy_from_slice(b);
                i64::from_be_bytes(t)
            }
            Some(_) => return Err(BackendError::Query("bad scan cursor".into())),
            None => i64::MIN,
        };
        let cql = format!(
            "SELECT DISTINCT entity_key, token(entity_key) FROM {} WHERE token(entity_key) > ? LIMIT {}",
            self.fq(&table),
            limit.max(1)
        );
        let res = self
            .session
            .query_unpaged(cql, (after,))
            .await
            .map_err(execution_error)?;
        let rows = res.into_rows_result().map_err(result_error)?;
        let mut keys = Vec::new();
        let mut last = None;
        for row in rows
            .rows::<(String, i64)>()
            .map_err(|e| BackendError::Query(e.to_string()))?
        {
            let (hex_key, token) = row.map_err(|e| BackendError::Query(e.to_string()))?;
            let key = hex::decode(&hex_key).map_err(|e| BackendError::Corrupt {
                feature: "entity_key".into(),
                message: e.to_string(),
            })?;
            keys.push(key);
            last = Some(token);
        }
        let next = if keys.len() >= limit.max(1) {
            last.map(|t| t.to_be_bytes().to_vec())
        } else {
            None
        };
        Ok(crate::KeyPage { keys, next })
    }

    async fn read(
        &self,
        project: &str,
        view: &RoutedView,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Option<ReadRow>>, BackendError> {
        let table = self.table(project, view)?;
        let stmt = self.statement(&table, "select").await?;
        let index: HashMap<&str, usize> = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        let hex_keys: Vec<(usize, String)> = keys
            .iter()
            .map(|k| cassandra_entity_key(k))
            .enumerate()
            .collect();
        let reads = futures::stream::iter(hex_keys)
            .map(|(i, k)| {
                let stmt = &stmt;
                let index = &index;
                async move {
                    let res = self
                        .session
                        .execute_unpaged(stmt, (k,))
                        .await
                        .map_err(execution_error)?;
                    let rows = res.into_rows_result().map_err(result_error)?;
                    let mut out: Option<ReadRow> = None;
                    for row in rows
                        .rows::<(String, Option<Vec<u8>>, Option<CqlTimestamp>)>()
                        .map_err(result_error)?
                    {
                        let (name, value, ts) = row.map_err(result_error)?;
                        let Some(&fi) = index.get(name.as_str()) else {
                            continue;
                        };
                        let value = match value {
                            Some(b) => {
                                Value::decode(b.as_slice()).map_err(|e| BackendError::Corrupt {
                                    feature: name.clone(),
                                    message: e.to_string(),
                                })?
                            }
                            None => Value::default(),
                        };
                        let ts = ts
                            .map(|t| Timestamp {
                                seconds: t.0.div_euclid(1000),
                                nanos: (t.0.rem_euclid(1000) * 1_000_000) as u32,
                            })
                            .unwrap_or_default();
                        let entry = out.get_or_insert_with(|| ReadRow {
                            values: vec![None; features.len()],
                            event_ts: ts,
                        });
                        entry.event_ts = entry.event_ts.max(ts);
                        entry.values[fi] = Some(value);
                    }
                    Ok::<_, BackendError>((i, out))
                }
            })
            .buffer_unordered(self.read_concurrency);
        let results: Vec<Result<(usize, Option<ReadRow>), BackendError>> = reads.collect().await;
        let mut out = vec![None; keys.len()];
        for r in results {
            let (i, row) = r?;
            out[i] = row;
        }
        Ok(out)
    }

    async fn write(
        &self,
        project: &str,
        view: &RoutedView,
        rows: Vec<WriteRow>,
    ) -> Result<(), BackendError> {
        let table = self.table(project, view)?;
        let stmt = self.statement(&table, "insert").await?;
        // One single-partition UNLOGGED batch per entity key: Cassandra
        // applies it atomically and in isolation, so a reader never sees
        // half of a write. Its write timestamp is the event time in
        // microseconds: Cassandra's own last-write-wins then keeps the row
        // with the newest event, whatever the arrival order.
        let mut templates: HashMap<usize, Batch> = HashMap::new();
        let mut batches = Vec::with_capacity(rows.len());
        for r in &rows {
            if r.values.is_empty() {
                continue;
            }
            let template = templates.entry(r.values.len()).or_insert_with(|| {
                let mut b = Batch::new(BatchType::Unlogged);
                for _ in 0..r.values.len() {
                    b.append_statement(stmt.clone());
                }
                if let Some(c) = self.write_consistency {
                    b.set_consistency(c);
                }
                // Stamped with the event time below: a replay changes nothing.
                b.set_is_idempotent(true);
                b
            });
            let mut batch = template.clone();
            batch.set_timestamp(Some(write_timestamp_micros(r.event_ts)));
            let key = cassandra_entity_key(&r.entity_key);
            let ts =
                CqlTimestamp(r.event_ts.seconds * 1000 + i64::from(r.event_ts.nanos / 1_000_000));
            let values: Vec<(String, Vec<u8>, String, CqlTimestamp)> = r
                .values
                .iter()
                .map(|(name, v)| (name.clone(), v.encode_to_vec(), key.clone(), ts))
                .collect();
            batches.push((batch, values));
        }
        let results: Vec<Result<(), BackendError>> = futures::stream::iter(batches)
            .map(|(batch, values)| async move {
                self.session
                    .batch(&batch, values)
                    .await
                    .map(|_| ())
                    .map_err(execution_error)
            })
            .buffer_unordered(self.write_concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Asked of the schema tables, not by reading: a table another
    /// process is creating is listed there before statements can use it.
    async fn storage_exists(&self, project: &str, view: &RoutedView) -> Result<bool, BackendError> {
        self.table_exists(&self.table(project, view)?).await
    }

    async fn create(&self, project: &str, view: &RoutedView) -> Result<(), BackendError> {
        let table = self.table(project, view)?;
        let cql = format!(
            "CREATE TABLE IF NOT EXISTS {} (entity_key TEXT, feature_name TEXT, value BLOB, event_ts TIMESTAMP, \
             created_ts TIMESTAMP, PRIMARY KEY ((entity_key), feature_name)) WITH CLUSTERING ORDER BY (feature_name ASC)",
            self.fq(&table)
        );
        self.session.query_unpaged(cql, ()).await.map_err(|e| {
            in_context(execution_error(e), &format!("creating {}", self.fq(&table)))
        })?;
        self.forget(&table);
        Ok(())
    }

    async fn drop_view(
        &self,
        project: &str,
        view: &RoutedView,
        _remaining: &[&RoutedView],
    ) -> Result<(), BackendError> {
        let table = self.table(project, view)?;
        self.session
            .query_unpaged(format!("DROP TABLE IF EXISTS {}", self.fq(&table)), ())
            .await
            .map_err(|e| {
                in_context(execution_error(e), &format!("dropping {}", self.fq(&table)))
            })?;
        self.forget(&table);
        Ok(())
    }

    fn storage_objects(&self, project: &str, view: &RoutedView) -> Vec<StorageObject> {
        let name = self
            .table(project, view)
            .unwrap_or_else(|e| format!("<invalid: {e}>"));
        vec![StorageObject {
            kind: "cassandra table",
            name,
            location: format!("keyspace {} on {}", self.keyspace, self.hosts),
        }]
    }

    /// Some node answers, and enough nodes are connected for reads and
    /// writes at their consistency levels (a node answering a local query
    /// is not enough: with 2 of 3 replicas gone every QUORUM request fails).
    /// A necessary condition only: with more nodes than replicas, the
    /// replicas of some keys may still be the ones down.
    async fn check(&self) -> Result<(), BackendError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let state = self.session.get_cluster_state();
        // No keyspace yet (provisioning creates it): nothing to count.
        let Some(keyspace) = state.get_keyspace(&self.keyspace) else {
            return Ok(());
        };
        let connected = |dc: Option<&str>| {
            state
                .get_nodes_info()
                .iter()
                .filter(|n| dc.is_none_or(|dc| n.datacenter.as_deref() == Some(dc)))
                .filter(|n| n.is_connected())
                .count()
        };
        for (op, level) in [
            ("reads", self.read_consistency.unwrap_or_default()),
            ("writes", self.write_consistency.unwrap_or_default()),
        ] {
            let Some(need) = replicas_needed(level, &keyspace.strategy, self.local_dc.as_deref())
            else {
                continue;
            };
            let up = connected(need.datacenter.as_deref());
            if up < need.replicas {
                let place = need
                    .datacenter
                    .map(|dc| format!(" in datacenter `{dc}`"))
                    .unwrap_or_default();
                return Err(BackendError::Unavailable(format!(
                    "{up} node(s){place} connected; {op} at {level:?} need {} replica(s) of keyspace `{}`",
                    need.replicas, self.keyspace
                )));
            }
        }
        Ok(())
    }
}

/// How many replicas a request at some consistency level needs, and where.
#[derive(Debug, PartialEq, Eq)]
struct ReplicasNeeded {
    replicas: usize,
    /// Counted in this datacenter only (`LOCAL_*` levels with a local DC).
    datacenter: Option<String>,
}

/// The replicas a request at `level` needs in a keyspace replicated by
/// `strategy` (Cassandra's rules: a quorum is a majority of the replication
/// factor, over every datacenter or the local one). `None` when the
/// strategy is one the driver does not describe.
fn replicas_needed(
    level: Consistency,
    strategy: &Strategy,
    local_dc: Option<&str>,
) -> Option<ReplicasNeeded> {
    let (total, local) = match strategy {
        Strategy::SimpleStrategy { replication_factor } => {
            (*replication_factor, *replication_factor)
        }
        Strategy::NetworkTopologyStrategy {
            datacenter_repfactors,
        } => {
            let total = datacenter_repfactors.values().sum();
            let local = local_dc
                .and_then(|dc| datacenter_repfactors.get(dc).copied())
                .unwrap_or(total);
            (total, local)
        }
        Strategy::LocalStrategy => (1, 1),
        _ => return None,
    };
    let everywhere = |replicas: usize| ReplicasNeeded {
        replicas,
        datacenter: None,
    };
    let here = |replicas: usize| ReplicasNeeded {
        replicas,
        datacenter: local_dc.map(str::to_string),
    };
    Some(match level {
        Consistency::Any | Consistency::One => everywhere(1),
        Consistency::Two => everywhere(2),
        Consistency::Three => everywhere(3),
        Consistency::Quorum | Consistency::Serial => everywhere(total / 2 + 1),
        Consistency::All => everywhere(total),
        Consistency::LocalOne => here(1),
        // EACH_QUORUM needs a quorum in every datacenter: the local one is
        // the one this proxy sees.
        Consistency::LocalQuorum | Consistency::LocalSerial | Consistency::EachQuorum => {
            here(local / 2 + 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(replicas: usize, dc: Option<&str>) -> Option<ReplicasNeeded> {
        Some(ReplicasNeeded {
            replicas,
            datacenter: dc.map(str::to_string),
        })
    }

    #[test]
    fn replicas_needed_follow_cassandras_rules() {
        let rf3 = Strategy::SimpleStrategy {
            replication_factor: 3,
        };
        assert_eq!(
            replicas_needed(Consistency::Quorum, &rf3, None),
            need(2, None)
        );
        assert_eq!(
            replicas_needed(Consistency::LocalQuorum, &rf3, None),
            need(2, None)
        );
        assert_eq!(replicas_needed(Consistency::One, &rf3, None), need(1, None));
        assert_eq!(replicas_needed(Consistency::All, &rf3, None), need(3, None));
        let rf1 = Strategy::SimpleStrategy {
            replication_factor: 1,
        };
        assert_eq!(
            replicas_needed(Consistency::LocalQuorum, &rf1, None),
            need(1, None)
        );
        let nts = Strategy::NetworkTopologyStrategy {
            datacenter_repfactors: [("dc1".to_string(), 3), ("dc2".to_string(), 2)].into(),
        };
        // QUORUM counts every datacenter's replicas: 5 / 2 + 1.
        assert_eq!(
            replicas_needed(Consistency::Quorum, &nts, Some("dc2")),
            need(3, None)
        );
        assert_eq!(
            replicas_needed(Consistency::LocalQuorum, &nts, Some("dc2")),
            need(2, Some("dc2"))
        );
        assert_eq!(
            replicas_needed(Consistency::LocalOne, &nts, Some("dc1")),
            need(1, Some("dc1"))
        );
        // No local datacenter named: counted over the whole cluster.
        assert_eq!(
            replicas_needed(Consistency::LocalQuorum, &nts, None),
            need(3, None)
        );
        let other = Strategy::Other {
            name: "EverywhereStrategy".into(),
            data: HashMap::new(),
        };
        assert_eq!(replicas_needed(Consistency::Quorum, &other, None), None);
    }
}
