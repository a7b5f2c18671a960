//! Feast's Bigtable online store (`type: bigtable`): a table per entity set
//! (`<project>.<sorted entity names>` shortened as Feast does), row key
//! `<murmur3_x64_128 hex of the entity key>#<view>`, column family
//! `features` (GC: max `max_versions` versions), one column per feature
//! holding the serialized Value and `event_ts` holding the event time as
//! ISO-8601 text; a row is written only if its stored `event_ts` is not
//! later (CheckAndMutateRow), so the newest cell holds the newest event.
//! Data goes through `bigtable_rs`; tables through the
//! generated admin API over tonic. `BIGTABLE_EMULATOR_HOST` (or the
//! `emulator_host` option) selects the emulator; otherwise Application
//! Default Credentials are used for data access.

use std::collections::HashMap;
use std::time::Duration;

use api::feast_config::BigtableConf;
use api::keys::{bigtable_row_key, bigtable_table_name};
use api::proto::Value;
use api::routing::RoutedView;
use bigtable_rs::bigtable::{BigTable, BigTableConnection};
use bigtable_rs::google::bigtable::v2 as data;
use futures::StreamExt;
use googleapis_tonic_google_bigtable_admin_v2::google::bigtable::admin::v2 as admin;
use prost::Message;
use tonic::transport::Channel;

use crate::{BackendError, OnlineStore, ReadRow, StorageObject, Timestamp, Trust, WriteRow};

const DEFAULT_FAMILY: &str = "features";
const EVENT_TS: &[u8] = b"event_ts";
/// Bigtable's limit on mutations per MutateRows request.
const MUTATIONS_PER_REQUEST: usize = 100_000;
/// Conditional row writes in flight per `write` call.
const WRITE_CONCURRENCY: usize = 32;

/// A Bigtable instance (or the emulator) holding Feast's tables.
pub struct BigtableStore {
    data: BigTable,
    /// Table admin; only reachable on the emulator in this build.
    admin: Option<admin::bigtable_table_admin_client::BigtableTableAdminClient<Channel>>,
    project_id: String,
    instance: String,
    family: String,
    max_versions: u32,
    key_ttl_seconds: Option<u64>,
    /// Named by every data request; empty: the instance's default profile.
    app_profile_id: String,
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

fn status_err(s: tonic::Status) -> BackendError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            unavailable(s.message())
        }
        _ => BackendError::Query(format!("{:?}: {}", s.code(), s.message())),
    }
}

fn data_err(e: bigtable_rs::bigtable::Error) -> BackendError {
    match e {
        bigtable_rs::bigtable::Error::RpcError(s) => status_err(s),
        other => unavailable(other),
    }
}

/// Python's `datetime.isoformat()` of an aware UTC time, as Feast writes it.
fn chain(filters: Vec<data::RowFilter>) -> data::RowFilter {
    data::RowFilter {
        filter: Some(data::row_filter::Filter::Chain(data::row_filter::Chain {
            filters,
        })),
    }
}

fn iso_event_ts(ts: Timestamp) -> String {
    let Some(dt) = chrono::DateTime::<chrono::Utc>::from_timestamp(ts.seconds, ts.nanos) else {
        return "1970-01-01T00:00:00+00:00".into();
    };
    let micros = ts.nanos / 1000;
    if micros == 0 {
        format!("{}+00:00", dt.format("%Y-%m-%dT%H:%M:%S"))
    } else {
        format!("{}.{micros:06}+00:00", dt.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// A literal for an RE2 pattern. Bigtable matches filters against raw
/// bytes: ASCII punctuation is escaped with a backslash (what RE2 and the
/// emulator's Go regexp read as the character itself; `_` is left alone,
/// older RE2 refused `\_`), control characters (`\n` among them, which a
/// `.` would not match) as `\x{..}`, and the rest stands for itself.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_ascii_punctuation() && c != '_' {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() {
            out.push_str(&format!("\\x{{{:02x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The pattern matching exactly the row keys of `view` (Feast's
/// `<32 hex digits>#<view>`), anchored at both ends: an unanchored or
/// `.*`-prefixed pattern would also match views whose name ends with this
/// one (`a#v` ends with `#v`).
fn view_row_key_regex(view: &str) -> String {
    format!("^[0-9a-f]{{32}}#{}$", regex_escape(view))
}

/// `emulator_host` must be `host:port` (a DNS name, an IPv4 address or a
/// bracketed IPv6 address); `bigtable_rs` panics on anything its URI parser
/// refuses. A user's own repo may also name a Unix socket (`unix://path`),
/// a routing table may not: it would reach any socket of the proxy's host.
pub fn validate_emulator_host(host: &str, trust: Trust) -> Result<(), BackendError> {
    let bad = |why: &str| {
        Err(BackendError::Config(format!(
            "conf.emulator_host `{}`: {why}; expected host:port",
            host.escape_debug()
        )))
    };
    if let Some(path) = host.strip_prefix("unix://") {
        return match trust {
            Trust::Owner if !path.is_empty() => Ok(()),
            Trust::Owner => bad("empty socket path"),
            Trust::Confined => bad("Unix sockets are refused in a routing table"),
        };
    }
    let Some((name, port)) = host.rsplit_once(':') else {
        return bad("no port");
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..)) {
        return bad("bad port");
    }
    let ok_name = if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !ok_name {
        return bad("bad host name");
    }
    // The same parser the client uses, so nothing that passed here can
    // make it panic.
    if Channel::from_shared(format!("http://{host}")).is_err() {
        return bad("not a valid address");
    }
    Ok(())
}

/// `app_profile_id` must be a Bigtable app profile id: 1 to 50 of
/// `[A-Za-z0-9_.-]`, not starting with `-` or `.`.
pub fn validate_app_profile_id(id: &str) -> Result<(), BackendError> {
    let ok = (1..=50).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !id.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(BackendError::Config(format!(
            "conf.app_profile_id `{}`: expected 1 to 50 of A-Z a-z 0-9 _ - . (not starting with - or .)",
            id.escape_debug()
        )))
    }
}

impl BigtableStore {
    pub async fn open(conf: &BigtableConf, trust: Trust) -> Result<BigtableStore, BackendError> {
        if let Some(id) = &conf.app_profile_id {
            validate_app_profile_id(id)?;
        }
        let project_id = conf
            .project_id
            .clone()
            .unwrap_or_else(|| "feast".to_string());
        let emulator = conf
            .emulator_host
            .clone()
            .or_else(|| std::env::var("BIGTABLE_EMULATOR_HOST").ok())
            .filter(|h| !h.is_empty());
        let timeout = Some(Duration::from_secs(10));
        let (conn, admin) = match &emulator {
            Some(host) => {
                // BIGTABLE_EMULATOR_HOST is the proxy's own; only a configured
                // host is held to the configuration's trust.
                let trust = if conf.emulator_host.is_some() {
                    trust
                } else {
                    Trust::Owner
                };
                validate_emulator_host(host, trust)?;
                let conn = BigTableConnection::new_with_emulator(
                    host,
                    &project_id,
                    &conf.instance,
                    false,
                    1,
                    timeout,
                )
                .map_err(data_err)?;
                let channel = Channel::from_shared(format!("http://{host}"))
                    .map_err(|e| {
                        BackendError::Config(format!("bigtable emulator address `{host}`: {e}"))
                    })?
                    .timeout(Duration::from_secs(10))
                    .connect_lazy();
                (
                    conn,
                    Some(
                        admin::bigtable_table_admin_client::BigtableTableAdminClient::new(channel),
                    ),
                )
            }
            None => {
                let conn = BigTableConnection::new(&project_id, &conf.instance, false, 2, timeout)
                    .await
                    .map_err(data_err)?;
                (conn, None)
            }
        };
        Ok(BigtableStore {
            data: conn.client(),
            admin,
            project_id,
            instance: conf.instance.clone(),
            family: conf
                .feature_column_family
                .clone()
                .unwrap_or_else(|| DEFAULT_FAMILY.to_string()),
            max_versions: conf.max_versions,
            key_ttl_seconds: conf.key_ttl_seconds.filter(|t| *t > 0),
            app_profile_id: conf.app_profile_id.clone().unwrap_or_default(),
        })
    }

    fn instance_path(&self) -> String {
        format!("projects/{}/instances/{}", self.project_id, self.instance)
    }

    fn table_id(project: &str, view: &RoutedView) -> String {
        let names: Vec<&str> = view.entities.iter().map(|e| e.name.as_str()).collect();
        bigtable_table_name(project, &names)
    }

    fn full_table(&self, project: &str, view: &RoutedView) -> String {
        format!(
            "{}/tables/{}",
            self.instance_path(),
            Self::table_id(project, view)
        )
    }

    fn admin(
        &self,
    ) -> Result<admin::bigtable_table_admin_client::BigtableTableAdminClient<Channel>, BackendError>
    {
        self.admin.clone().ok_or_else(|| {
            BackendError::Config(
                "Bigtable table admin is only available against the emulator in this build; create tables with `cbt` or Terraform".into(),
            )
        })
    }

    /// A filter that yields a cell iff the row's newest `event_ts` is
    /// later than `event_ts` (bytes of UTC ISO-8601 text).
    fn stored_is_newer(&self, event_ts: Vec<u8>) -> data::RowFilter {
        let mut filters = self.newest_cells(b"^event_ts$".to_vec());
        filters.push(data::RowFilter {
            filter: Some(data::row_filter::Filter::ValueRangeFilter(
                data::ValueRange {
                    start_value: Some(data::value_range::StartValue::StartValueOpen(event_ts)),
                    end_value: None,
                },
            )),
        });
        chain(filters)
    }

    /// Each matching column's newest cell in the feature family: the first
    /// links of every filter here (reads and the write condition).
    fn newest_cells(&self, qualifier_regex: Vec<u8>) -> Vec<data::RowFilter> {
        use data::row_filter::Filter;
        [
            Filter::FamilyNameRegexFilter(format!("^{}$", regex_escape(&self.family))),
            Filter::ColumnQualifierRegexFilter(qualifier_regex),
            Filter::CellsPerColumnLimitFilter(1),
        ]
        .into_iter()
        .map(|f| data::RowFilter { filter: Some(f) })
        .collect()
    }

    async fn mutate(
        &self,
        table: String,
        entries: Vec<data::mutate_rows_request::Entry>,
    ) -> Result<(), BackendError> {
        let mut client = self.data.clone();
        let mut stream = client
            .mutate_rows(data::MutateRowsRequest {
                table_name: table,
                entries,
                app_profile_id: self.app_profile_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(data_err)?;
        while let Some(resp) = stream.message().await.map_err(status_err)? {
            if let Some(bad) = resp
                .entries
                .iter()
                .find_map(|e| e.status.as_ref().filter(|s| s.code != 0))
            {
                return Err(BackendError::Query(format!(
                    "mutation failed: code {}: {}",
                    bad.code, bad.message
                )));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl OnlineStore for BigtableStore {
    async fn read(
        &self,
        project: &str,
        view: &RoutedView,
        keys: &[Vec<u8>],
        features: &[String],
    ) -> Result<Vec<Option<ReadRow>>, BackendError> {
        let row_keys: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| bigtable_row_key(k, &view.name).into_bytes())
            .collect();
        let mut alternatives: Vec<String> = features.iter().map(|f| regex_escape(f)).collect();
        alternatives.push("event_ts".into());
        let qualifier = format!("^({})$", alternatives.join("|"));
        let filter = chain(self.newest_cells(qualifier.into_bytes()));
        let mut unique = row_keys.clone();
        unique.sort();
        unique.dedup();
        let mut client = self.data.clone();
        let rows = client
            .read_rows(data::ReadRowsRequest {
                table_name: self.full_table(project, view),
                rows: Some(data::RowSet {
                    row_keys: unique,
                    row_ranges: vec![],
                }),
                filter: Some(filter),
                app_profile_id: self.app_profile_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| match data_err(e) {
                BackendError::Query(m) if m.starts_with("NotFound") => BackendError::MissingTable {
                    table: Self::table_id(project, view),
                    location: self.instance_path(),
                },
                other => other,
            })?;
        let by_key: HashMap<Vec<u8>, Vec<bigtable_rs::bigtable::RowCell>> =
            rows.into_iter().collect();
        let index: HashMap<&str, usize> = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i))
            .collect();
        row_keys
            .iter()
            .map(|rk| {
                let Some(cells) = by_key.get(rk) else {
                    return Ok(None);
                };
                let mut row = ReadRow {
                    values: vec![None; features.len()],
                    event_ts: Timestamp::default(),
                };
                for cell in cells {
                    if cell.qualifier == EVENT_TS {
                        row.event_ts = std::str::from_utf8(&cell.value)
                            .ok()
                            .and_then(api::json::parse_timestamp)
                            .map(|(seconds, nanos)| Timestamp { seconds, nanos })
                            .unwrap_or_default();
                    } else if let Some(&i) = std::str::from_utf8(&cell.qualifier)
                        .ok()
                        .and_then(|q| index.get(q))
                    {
                        row.values[i] =
                            Some(Value::decode(cell.value.as_slice()).map_err(|e| {
                                BackendError::Corrupt {
                                    feature: features[i].clone(),
                                    message: e.to_string(),
                                }
                            })?);
                    }
                }
                Ok(Some(row))
            })
            .collect()
    }

    async fn write(
        &self,
        project: &str,
        view: &RoutedView,
        rows: Vec<WriteRow>,
    ) -> Result<(), BackendError> {
        let table = self.full_table(project, view);
        // Cells are stamped by the server (`-1`), as Feast's client does,
        // so the newest cell is the last write applied; each row's write
        // is applied only if the row's stored `event_ts` is not later than
        // the write's (one CheckAndMutateRow, atomic per row), which makes
        // the last write applied the one with the newest event, whoever
        // wrote the stored row. Feast writes `event_ts` as UTC ISO-8601
        // text, whose byte order is time order; the comparison is on it.
        let set = |qualifier: Vec<u8>, value: Vec<u8>| data::Mutation {
            mutation: Some(data::mutation::Mutation::SetCell(data::mutation::SetCell {
                family_name: self.family.clone(),
                column_qualifier: qualifier,
                timestamp_micros: -1,
                value,
            })),
        };
        let requests: Vec<data::CheckAndMutateRowRequest> = rows
            .iter()
            .map(|r| {
                let event_ts = iso_event_ts(r.event_ts).into_bytes();
                let mut mutations: Vec<data::Mutation> = r
                    .values
                    .iter()
                    .map(|(name, v)| set(name.as_bytes().to_vec(), v.encode_to_vec()))
                    .collect();
                mutations.push(set(EVENT_TS.to_vec(), event_ts.clone()));
                data::CheckAndMutateRowRequest {
                    table_name: table.clone(),
                    row_key: bigtable_row_key(&r.entity_key, &view.name).into_bytes(),
                    predicate_filter: Some(self.stored_is_newer(event_ts)),
                    true_mutations: Vec::new(),
                    false_mutations: mutations,
                    app_profile_id: self.app_profile_id.clone(),
                    ..Default::default()
                }
            })
            .collect();
        let results: Vec<Result<(), BackendError>> = futures::stream::iter(requests)
            .map(|req| {
                let mut client = self.data.clone();
                async move {
                    client
                        .check_and_mutate_row(req)
                        .await
                        .map(|_| ())
                        .map_err(data_err)
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn create(&self, project: &str, view: &RoutedView) -> Result<(), BackendError> {
        let mut admin = self.admin()?;
        let name = self.full_table(project, view);
        let versions = admin::GcRule {
            rule: Some(admin::gc_rule::Rule::MaxNumVersions(
                i32::try_from(self.max_versions).unwrap_or(2),
            )),
        };
        // With key_ttl_seconds: also delete cells older than that (union:
        // a cell goes when either rule says so).
        let gc_rule = match self.key_ttl_seconds {
            None => versions,
            Some(ttl) => admin::GcRule {
                rule: Some(admin::gc_rule::Rule::Union(admin::gc_rule::Union {
                    rules: vec![
                        versions,
                        admin::GcRule {
                            rule: Some(admin::gc_rule::Rule::MaxAge(prost_types::Duration {
                                seconds: i64::try_from(ttl).unwrap_or(i64::MAX),
                                nanos: 0,
                            })),
                        },
                    ],
                })),
            },
        };
        let family = admin::ColumnFamily {
            gc_rule: Some(gc_rule),
            ..Default::default()
        };
        let existing = admin
            .get_table(admin::GetTableRequest {
                name: name.clone(),
                view: admin::table::View::SchemaView as i32,
            })
            .await;
        match existing {
            Ok(t) => {
                use admin::modify_column_families_request::modification::Mod;
                let current = t.into_inner().column_families.get(&self.family).cloned();
                let change = match current {
                    None => Some(Mod::Create(family)),
                    // Keep the GC rule in step with key_ttl_seconds.
                    Some(c) if c.gc_rule != family.gc_rule => Some(Mod::Update(family)),
                    Some(_) => None,
                };
                if let Some(m) = change {
                    admin
                        .modify_column_families(admin::ModifyColumnFamiliesRequest {
                            name,
                            modifications: vec![
                                admin::modify_column_families_request::Modification {
                                    id: self.family.clone(),
                                    r#mod: Some(m),
                                    ..Default::default()
                                },
                            ],
                            ..Default::default()
                        })
                        .await
                        .map_err(status_err)?;
                }
                Ok(())
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                let created = admin
                    .create_table(admin::CreateTableRequest {
                        parent: self.instance_path(),
                        table_id: Self::table_id(project, view),
                        table: Some(admin::Table {
                            column_families: HashMap::from([(self.family.clone(), family.clone())]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await;
                match created {
                    // A max-age rule is also sent through ModifyColumnFamilies:
                    // the same rule for Bigtable, and what starts the
                    // emulator's garbage collector.
                    Ok(_) if self.key_ttl_seconds.is_some() => admin
                        .modify_column_families(admin::ModifyColumnFamiliesRequest {
                            name,
                            modifications: vec![admin::modify_column_families_request::Modification {
                                id: self.family.clone(),
                                r#mod: Some(admin::modify_column_families_request::modification::Mod::Update(family)),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                        .map_err(status_err),
                    Ok(_) => Ok(()),
                    // Created concurrently by another view of the same entity set.
                    Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(s) => Err(status_err(s)),
                }
            }
            Err(s) => Err(status_err(s)),
        }
    }

    async fn drop_view(
        &self,
        project: &str,
        view: &RoutedView,
        remaining: &[&RoutedView],
    ) -> Result<(), BackendError> {
        let table_id = Self::table_id(project, view);
        let shared = remaining
            .iter()
            .any(|o| o.name != view.name && Self::table_id(project, o) == table_id);
        if !shared {
            let mut admin = self.admin()?;
            return match admin
                .delete_table(admin::DeleteTableRequest {
                    name: self.full_table(project, view),
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                Err(s) => Err(status_err(s)),
            };
        }
        // Other views keep the table: delete only this view's rows.
        let mut client = self.data.clone();
        let rows = client
            .read_rows(data::ReadRowsRequest {
                table_name: self.full_table(project, view),
                filter: Some(data::RowFilter {
                    filter: Some(data::row_filter::Filter::Chain(data::row_filter::Chain {
                        filters: vec![
                            data::RowFilter {
                                filter: Some(data::row_filter::Filter::RowKeyRegexFilter(
                                    view_row_key_regex(&view.name).into_bytes(),
                                )),
                            },
                            data::RowFilter {
                                filter: Some(data::row_filter::Filter::StripValueTransformer(true)),
                            },
                        ],
                    })),
                }),
                app_profile_id: self.app_profile_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(data_err)?;
        let entries: Vec<_> = rows
            .into_iter()
            .map(|(row_key, _)| data::mutate_rows_request::Entry {
                row_key,
                mutations: vec![data::Mutation {
                    mutation: Some(data::mutation::Mutation::DeleteFromRow(
                        data::mutation::DeleteFromRow {},
                    )),
                }],
                ..Default::default()
            })
            .collect();
        for chunk in entries.chunks(MUTATIONS_PER_REQUEST) {
            self.mutate(self.full_table(project, view), chunk.to_vec())
                .await?;
        }
        Ok(())
    }

    fn storage_objects(&self, project: &str, view: &RoutedView) -> Vec<StorageObject> {
        vec![StorageObject {
            kind: "bigtable table",
            name: Self::table_id(project, view),
            location: self.instance_path(),
        }]
    }

    async fn check(&self) -> Result<(), BackendError> {
        match self.admin.clone() {
            Some(mut admin) => admin
                .list_tables(admin::ListTablesRequest {
                    parent: self.instance_path(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(status_err),
            None => {
                let mut client = self.data.clone();
                client
                    .sample_row_keys(data::SampleRowKeysRequest {
                        table_name: format!("{}/tables/__hos_probe", self.instance_path()),
                        app_profile_id: self.app_profile_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .or_else(|e| match data_err(e) {
                        // The instance answered; the probe table need not exist.
                        BackendError::Query(_) => Ok(()),
                        other => Err(other),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ts_like_python_isoformat() {
        assert_eq!(
            iso_event_ts(Timestamp::from_seconds(1714566896)),
            "2024-05-01T12:34:56+00:00"
        );
        assert_eq!(
            iso_event_ts(Timestamp {
                seconds: 1714566896,
                nanos: 789_123_000
            }),
            "2024-05-01T12:34:56.789123+00:00"
        );
        assert_eq!(
            api::json::parse_timestamp("2024-05-01T12:34:56.789123+00:00"),
            Some((1714566896, 789_123_000))
        );
    }

    #[test]
    fn row_key_patterns_are_escaped_and_anchored() {
        assert_eq!(regex_escape("a.b_c"), "a\\.b_c");
        assert_eq!(regex_escape("x\ny"), "x\\x{0a}y");
        assert_eq!(regex_escape("(?s).*"), "\\(\\?s\\)\\.\\*");
        let p = view_row_key_regex("v");
        assert!(p.starts_with('^') && p.ends_with('$'), "{p}");
        assert_eq!(p, "^[0-9a-f]{32}#v$");
        // A view whose name ends like another's gets its own exact pattern.
        assert_eq!(view_row_key_regex("a#v"), "^[0-9a-f]{32}#a\\#v$");
    }

    #[test]
    fn emulator_hosts_are_checked_before_the_client_sees_them() {
        for ok in [
            "localhost:8086",
            "127.0.0.1:8086",
            "[::1]:8086",
            "bt-emu.ns.svc:1",
        ] {
            validate_emulator_host(ok, Trust::Confined).unwrap();
        }
        for bad in [
            "::::",
            "localhost",
            "localhost:",
            "localhost:0",
            "localhost:99999",
            "host name:1",
            "a/b:1",
            "[::1:1",
            "[zz]:1",
            "h:+1",
            ":8086",
            "",
            "unix://",
            "unix:///var/run/docker.sock",
            "user@host:1",
        ] {
            let e = validate_emulator_host(bad, Trust::Confined).unwrap_err();
            assert!(matches!(e, BackendError::Config(_)), "{bad}: {e}");
            assert!(e.to_string().contains("conf.emulator_host"), "{e}");
        }
        validate_emulator_host("unix:///tmp/bt.sock", Trust::Owner).unwrap();
    }

    /// What `bigtable_rs` does with hosts the check refuses: some of them
    /// panic in its constructor, which is why `open` both checks and runs
    /// the constructor in a task of its own.
    #[tokio::test]
    async fn bigtable_rs_panics_on_some_refused_hosts() {
        let mut panicked = Vec::new();
        for host in ["::::", "host name:1", "[::1:1"] {
            let h = host.to_string();
            let r = tokio::spawn(async move {
                BigTableConnection::new_with_emulator(&h, "p", "i", false, 1, None).map(|_| ())
            })
            .await;
            if r.is_err_and(|e| e.is_panic()) {
                panicked.push(host);
            }
        }
        // bigtable_rs 0.4.2 panics on all three ("invalid connection emulator uri").
        assert!(
            panicked.contains(&"::::"),
            "bigtable_rs no longer panics on `::::` (panics on {panicked:?})"
        );
    }

    #[tokio::test]
    async fn open_refuses_a_bad_emulator_host_without_panicking() {
        let conf = BigtableConf {
            project_id: None,
            instance: "i".into(),
            max_versions: 1,
            feature_column_family: None,
            emulator_host: Some("::::".into()),
            key_ttl_seconds: None,
            app_profile_id: None,
        };
        for trust in [Trust::Owner, Trust::Confined] {
            let e = BigtableStore::open(&conf, trust).await.err().unwrap();
            assert!(matches!(e, BackendError::Config(_)), "{e}");
        }
    }

    #[test]
    fn app_profile_ids_are_checked() {
        for ok in ["default", "hos-multi_cluster.1", &"p".repeat(50)] {
            validate_app_profile_id(ok).unwrap();
        }
        for bad in [
            "",
            "-lead",
            ".lead",
            "a b",
            "a/b",
            "a\n",
            "ä",
            &"p".repeat(51),
        ] {
            let e = validate_app_profile_id(bad).unwrap_err();
            assert!(e.to_string().contains("conf.app_profile_id"), "{e}");
        }
    }
}
