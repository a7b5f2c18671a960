//! Every backend against its real server, started by `tests/run.sh`
//! (redis-server, the Bigtable emulator, Apache Cassandra): these tests are
//! `#[ignore]`d in a plain `cargo test` and run by the test command with
//! `--ignored` once the servers are up (REDIS_URL, BIGTABLE_EMULATOR_HOST,
//! CASSANDRA_HOST/CASSANDRA_PORT).

use std::sync::Arc;

use api::Dtype;
use api::entity_key::{SerializationVersion, serialize};
use api::feast_config::{BackendConf, BigtableConf, CassandraConf, RedisConf, RedisType};
use api::proto::{EntityKey, Val, Value};
use api::routing::{Backend, Feature, JoinKey, RoutedEntity, RoutedView};
use backends::{BackendError, OnlineStore, OpenContext, Timestamp, WriteRow};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run these tests through tests/run.sh"))
}

fn view(name: &str) -> RoutedView {
    RoutedView {
        name: name.into(),
        entities: vec![RoutedEntity {
            name: "user".into(),
            join_keys: vec![JoinKey {
                name: "user_id".into(),
                dtype: Some(Dtype::Int64),
            }],
        }],
        features: vec![
            Feature {
                name: "age".into(),
                dtype: Dtype::Int64,
            },
            Feature {
                name: "country".into(),
                dtype: Dtype::String,
            },
        ],
        ttl_seconds: None,
        online: true,
        tags: Default::default(),
        backend: "b".into(),
        timestamp_field: None,
        created_timestamp_column: None,
        push_source: None,
        migration: None,
    }
}

fn key(id: i64) -> Vec<u8> {
    serialize(
        &EntityKey {
            join_keys: vec!["user_id".into()],
            entity_values: vec![Value {
                val: Some(Val::Int64Val(id)),
            }],
        },
        SerializationVersion::V3,
    )
    .unwrap()
}

fn row(id: i64, age: i64, country: &str, ts: i64) -> WriteRow {
    WriteRow {
        entity_key: key(id),
        values: vec![
            (
                "age".into(),
                Value {
                    val: Some(Val::Int64Val(age)),
                },
            ),
            (
                "country".into(),
                Value {
                    val: Some(Val::StringVal(country.into())),
                },
            ),
        ],
        event_ts: Timestamp::from_seconds(ts),
        created_ts: None,
    }
}

async fn open(conf: BackendConf) -> Arc<dyn OnlineStore> {
    let b = Backend {
        name: "b".into(),
        backend_type: conf.backend_type(),
        conf,
    };
    backends::open(&b, &OpenContext::default()).await.unwrap()
}

/// Create (twice), write, read back, overwrite, drop (twice).
async fn exercise(store: &dyn OnlineStore, project: &str, v: &RoutedView) {
    store.check().await.unwrap();
    store.create(project, v).await.unwrap();
    store.create(project, v).await.unwrap();
    store
        .write(
            project,
            v,
            vec![
                row(1, 30, "DE", 1_714_566_896),
                row(2, 40, "BR", 1_714_566_900),
            ],
        )
        .await
        .unwrap();
    let features = vec![
        "country".to_string(),
        "age".to_string(),
        "missing".to_string(),
    ];
    let got = store
        .read(project, v, &[key(2), key(3), key(1)], &features)
        .await
        .unwrap();
    let r2 = got[0].as_ref().expect("entity 2 was written");
    assert_eq!(
        r2.values[0],
        Some(Value {
            val: Some(Val::StringVal("BR".into()))
        })
    );
    assert_eq!(
        r2.values[1],
        Some(Value {
            val: Some(Val::Int64Val(40))
        })
    );
    assert_eq!(r2.values[2], None);
    assert_eq!(r2.event_ts, Timestamp::from_seconds(1_714_566_900));
    assert!(got[1].is_none(), "entity 3 was never written");
    assert_eq!(
        got[2].as_ref().unwrap().values[1],
        Some(Value {
            val: Some(Val::Int64Val(30))
        })
    );

    store
        .write(project, v, vec![row(1, 31, "FR", 1_714_570_000)])
        .await
        .unwrap();
    let got = store.read(project, v, &[key(1)], &features).await.unwrap();
    let r1 = got[0].as_ref().unwrap();
    assert_eq!(
        r1.values[1],
        Some(Value {
            val: Some(Val::Int64Val(31))
        })
    );
    assert_eq!(r1.event_ts, Timestamp::from_seconds(1_714_570_000));

    store.drop_view(project, v, &[]).await.unwrap();
    store.drop_view(project, v, &[]).await.unwrap();
}

fn age_of(row: &Option<backends::ReadRow>) -> Option<i64> {
    match row.as_ref()?.values[0].as_ref()?.val {
        Some(Val::Int64Val(a)) => Some(a),
        _ => None,
    }
}

async fn read_one(
    store: &dyn OnlineStore,
    project: &str,
    v: &RoutedView,
    id: i64,
) -> (Option<i64>, Timestamp) {
    let got = store
        .read(project, v, &[key(id)], &["age".into(), "country".into()])
        .await
        .unwrap();
    let ts = got[0].as_ref().map(|r| r.event_ts).unwrap_or_default();
    (age_of(&got[0]), ts)
}

/// Issue [L]: for a (view, key) the row with the newest event time is
/// stored, whatever the arrival order; an equal time replaces the row as a
/// whole; concurrent writers converge on the newest.
async fn newest_event_wins(store: Arc<dyn OnlineStore>, project: &str, v: &RoutedView) {
    store.create(project, v).await.unwrap();
    let t2 = 1_714_570_000;
    // Newer, then older: the newer stays.
    store
        .write(project, v, vec![row(100, 2, "T2", t2)])
        .await
        .unwrap();
    store
        .write(project, v, vec![row(100, 1, "T1", t2 - 60)])
        .await
        .unwrap();
    assert_eq!(
        read_one(store.as_ref(), project, v, 100).await,
        (Some(2), Timestamp::from_seconds(t2)),
        "an older event written later replaced a newer one"
    );
    // An equal time replaces the whole row (a retry is idempotent).
    store
        .write(project, v, vec![row(100, 3, "T2b", t2)])
        .await
        .unwrap();
    assert_eq!(
        read_one(store.as_ref(), project, v, 100).await,
        (Some(3), Timestamp::from_seconds(t2))
    );
    // In one batch: the same key twice (newer first), and a key whose
    // stored row is newer next to one whose stored row is older.
    store
        .write(project, v, vec![row(101, 9, "old", t2 + 100)])
        .await
        .unwrap();
    store
        .write(
            project,
            v,
            vec![
                row(102, 4, "new", t2 + 10),
                row(102, 33, "stale", t2 + 5),
                row(101, 8, "older", t2 + 50),
                row(100, 5, "newer", t2 + 1),
            ],
        )
        .await
        .unwrap();
    for (id, want_age, want_ts) in [(102, 4, t2 + 10), (101, 9, t2 + 100), (100, 5, t2 + 1)] {
        assert_eq!(
            read_one(store.as_ref(), project, v, id).await,
            (Some(want_age), Timestamp::from_seconds(want_ts)),
            "key {id} after a mixed batch"
        );
    }
    // 20 concurrent writers per key, distinct times, shuffled start.
    let mut violations = 0;
    for round in 0..10i64 {
        let id = 1_000 + round;
        let mut tasks = Vec::new();
        for j in 0..20i64 {
            let i = (j * 7 + round * 3) % 20;
            let store = Arc::clone(&store);
            let (project, v) = (project.to_string(), v.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .write(&project, &v, vec![row(id, i, "c", t2 + 1_000 + i)])
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        if read_one(store.as_ref(), project, v, id).await
            != (Some(19), Timestamp::from_seconds(t2 + 1_019))
        {
            violations += 1;
        }
    }
    assert_eq!(violations, 0, "rounds where an older concurrent write won");
    store.drop_view(project, v, &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_newest_event_wins() {
    let dir = tempfile::tempdir().unwrap();
    let conf: api::feast_config::SqliteConf = api::yaml::from_str("path: online.db").unwrap();
    let b = Backend {
        name: "b".into(),
        backend_type: api::feast_config::BackendType::Sqlite,
        conf: BackendConf::Sqlite(conf),
    };
    let ctx = OpenContext {
        base_dir: dir.path().to_path_buf(),
        ..OpenContext::default()
    };
    let store = backends::open(&b, &ctx).await.unwrap();
    newest_event_wins(store, "nw", &view("nw_users")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server: run tests/run.sh"]
async fn redis_newest_event_wins() {
    let store = open(BackendConf::Redis(redis_conf())).await;
    newest_event_wins(Arc::clone(&store), "nw", &view("nw_users")).await;
    // A server that lost its script cache (restart, failover, SCRIPT
    // FLUSH) still takes writes: the script is loaded again. (A batch
    // naming a key twice always takes the script path.)
    let client = redis::Client::open(env("REDIS_URL")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut c)
        .await
        .unwrap();
    let v = view("nw_flush");
    let t = 1_714_570_000;
    store
        .write(
            "nw",
            &v,
            vec![row(7, 70, "after-flush", t), row(7, 69, "older", t - 1)],
        )
        .await
        .unwrap();
    assert_eq!(
        read_one(store.as_ref(), "nw", &v, 7).await,
        (Some(70), Timestamp::from_seconds(t))
    );
    // The server closes every client connection (restart, idle timeout):
    // the pooled write connections are dropped and the writes go on.
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut c)
        .await
        .unwrap();
    for (i, age) in [(1, 71), (2, 72)] {
        store
            .write("nw", &v, vec![row(7, age, "after-kill", t + i)])
            .await
            .unwrap();
        assert_eq!(
            read_one(store.as_ref(), "nw", &v, 7).await,
            (Some(age), Timestamp::from_seconds(t + i))
        );
    }
    store.drop_view("nw", &v, &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Bigtable emulator: run tests/run.sh"]
async fn bigtable_newest_event_wins() {
    let store = open(BackendConf::Bigtable(bigtable_conf())).await;
    newest_event_wins(store, "nw", &view("nw_users")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Cassandra: run tests/run.sh"]
async fn cassandra_newest_event_wins() {
    create_keyspace("itest_nw").await;
    let store = open(BackendConf::Cassandra(Box::new(cassandra_conf("itest_nw")))).await;
    newest_event_wins(store, "nw", &view("nw_users")).await;
}

fn redis_conf() -> RedisConf {
    let url = env("REDIS_URL");
    RedisConf {
        connection_string: url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string(),
        ..redis_conf_base()
    }
}

#[tokio::test]
#[ignore = "needs redis-server: run tests/run.sh"]
async fn redis_round_trip_and_older_writes_skipped() {
    let store = open(BackendConf::Redis(redis_conf())).await;
    let v = view("redis_users");
    exercise(store.as_ref(), "itest", &v).await;
    // After the drop no field of the view is left.
    let got = store
        .read("itest", &v, &[key(1)], &["age".into()])
        .await
        .unwrap();
    assert!(got[0].is_none());
    // Feast skips a write whose event time is not newer than the stored one.
    store
        .write("itest", &v, vec![row(9, 1, "A", 2_000)])
        .await
        .unwrap();
    store
        .write("itest", &v, vec![row(9, 2, "B", 1_000)])
        .await
        .unwrap();
    let got = store
        .read("itest", &v, &[key(9)], &["age".into()])
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().values[0],
        Some(Value {
            val: Some(Val::Int64Val(1))
        })
    );
    store.drop_view("itest", &v, &[]).await.unwrap();
}

#[tokio::test]
#[ignore = "needs redis-server: run tests/run.sh"]
async fn redis_key_ttl_sets_expire() {
    let mut conf = redis_conf();
    conf.key_ttl_seconds = Some(1);
    let store = open(BackendConf::Redis(conf)).await;
    let v = view("redis_ttl");
    store
        .write("itest", &v, vec![row(5, 1, "A", 1_000)])
        .await
        .unwrap();
    assert!(
        store
            .read("itest", &v, &[key(5)], &["age".into()])
            .await
            .unwrap()[0]
            .is_some()
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(
        store
            .read("itest", &v, &[key(5)], &["age".into()])
            .await
            .unwrap()[0]
            .is_none()
    );
}

/// Redis keys are `<entity key><project>`, and SCAN MATCH `*b` also
/// matches project `ab`: dropping (or listing) project `b` must leave
/// project `ab` and keys that are no well-formed entity key alone.
#[tokio::test]
#[ignore = "needs redis-server: run tests/run.sh"]
async fn redis_drop_view_matches_the_exact_project() {
    let store = open(BackendConf::Redis(redis_conf())).await;
    let v = view("redis_suffix");
    for project in ["b", "ab"] {
        store.drop_view(project, &v, &[]).await.unwrap();
        store
            .write(project, &v, vec![row(1, 1, project, 1_000)])
            .await
            .unwrap();
    }
    // A hash whose name ends in `b` but is no entity key, with the view's field.
    let client = redis::Client::open(env("REDIS_URL")).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let junk: Vec<u8> = b"not-an-entity-key-b".to_vec();
    let ts_field = api::keys::redis_ts_field("redis_suffix");
    let _: () = redis::cmd("HSET")
        .arg(&junk)
        .arg(&ts_field)
        .arg("x")
        .query_async(&mut raw)
        .await
        .unwrap();

    let page = store.scan_keys("b", &v, None, 10_000).await.unwrap();
    let mut keys = page.keys;
    let mut next = page.next;
    while let Some(c) = next {
        let p = store.scan_keys("b", &v, Some(c), 10_000).await.unwrap();
        keys.extend(p.keys);
        next = p.next;
    }
    assert_eq!(keys, vec![key(1)], "project b lists only its own key");

    store.drop_view("b", &v, &[]).await.unwrap();
    let f = vec!["country".to_string()];
    assert!(store.read("b", &v, &[key(1)], &f).await.unwrap()[0].is_none());
    assert_eq!(
        store.read("ab", &v, &[key(1)], &f).await.unwrap()[0]
            .as_ref()
            .expect("project ab's row survived")
            .values[0],
        Some(Value {
            val: Some(Val::StringVal("ab".into()))
        })
    );
    let left: i64 = redis::cmd("HLEN")
        .arg(&junk)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(left, 1, "a key that is no entity key was touched");
    let _: () = redis::cmd("DEL")
        .arg(&junk)
        .query_async(&mut raw)
        .await
        .unwrap();
    store.drop_view("ab", &v, &[]).await.unwrap();
}

fn bigtable_conf() -> BigtableConf {
    BigtableConf {
        project_id: Some("itest-project".into()),
        instance: "itest-instance".into(),
        max_versions: 2,
        feature_column_family: None,
        emulator_host: Some(env("BIGTABLE_EMULATOR_HOST")),
        key_ttl_seconds: None,
        app_profile_id: None,
    }
}

/// A TCP forwarder on 127.0.0.1 to `target` that keeps every byte clients
/// send: what the Bigtable client puts on the wire.
fn recording_forwarder(target: String) -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n @ 1..) = c2.read(&mut buf) {
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    if s2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

/// `app_profile_id` is named by every data request (reads, conditional
/// writes, scans and deletes), as the bytes on the wire show; the emulator
/// accepts it and the data round-trips.
#[tokio::test]
#[ignore = "needs the Bigtable emulator: run tests/run.sh"]
async fn bigtable_app_profile_is_sent_with_every_data_request() {
    const PROFILE: &str = "hos-multi-cluster-7q";
    let (addr, seen) = recording_forwarder(env("BIGTABLE_EMULATOR_HOST"));
    let store = open(BackendConf::Bigtable(BigtableConf {
        emulator_host: Some(addr),
        app_profile_id: Some(PROFILE.into()),
        ..bigtable_conf()
    }))
    .await;
    let v = view("bt_profile");
    store.create("profile", &v).await.unwrap();
    let sent = |seen: &std::sync::Mutex<Vec<u8>>| {
        let bytes = seen.lock().unwrap();
        bytes
            .windows(PROFILE.len())
            .filter(|w| *w == PROFILE.as_bytes())
            .count()
    };
    let before = sent(&seen);
    store
        .write(
            "profile",
            &v,
            vec![row(1, 41, "DE", 10), row(2, 42, "FR", 10)],
        )
        .await
        .unwrap();
    let after_write = sent(&seen);
    // One conditional write per row.
    assert!(after_write >= before + 2, "{before} -> {after_write}");
    let f = vec!["age".to_string()];
    let got = store
        .read("profile", &v, &[key(1), key(2)], &f)
        .await
        .unwrap();
    assert_eq!(age_of(&got[0]), Some(41));
    assert_eq!(age_of(&got[1]), Some(42));
    let after_read = sent(&seen);
    assert!(
        after_read > after_write,
        "the read did not name the profile"
    );
    // Dropping a view of a shared table scans its rows and deletes them.
    store
        .drop_view("profile", &v, &[&view("bt_other")])
        .await
        .unwrap();
    assert!(
        sent(&seen) >= after_read + 2,
        "the scan and the deletes did not name the profile"
    );
    store.drop_view("profile", &v, &[]).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the Bigtable emulator: run tests/run.sh"]
async fn bigtable_round_trip_and_shared_table_teardown() {
    let store = open(BackendConf::Bigtable(bigtable_conf())).await;
    let v = view("bt_users");
    exercise(store.as_ref(), "itest", &v).await;

    // Two views of one entity set share a table: dropping one keeps the other's rows.
    let a = view("bt_a");
    let b = view("bt_b");
    store.create("itest", &a).await.unwrap();
    store.create("itest", &b).await.unwrap();
    store
        .write("itest", &a, vec![row(1, 1, "A", 10)])
        .await
        .unwrap();
    store
        .write("itest", &b, vec![row(1, 2, "B", 10)])
        .await
        .unwrap();
    store.drop_view("itest", &a, &[&b]).await.unwrap();
    let f = vec!["age".to_string()];
    assert!(store.read("itest", &a, &[key(1)], &f).await.unwrap()[0].is_none());
    assert_eq!(
        store.read("itest", &b, &[key(1)], &f).await.unwrap()[0]
            .as_ref()
            .unwrap()
            .values[0],
        Some(Value {
            val: Some(Val::Int64Val(2))
        })
    );
    store.drop_view("itest", &b, &[]).await.unwrap();
    assert!(
        store.read("itest", &b, &[key(1)], &f).await.is_err(),
        "table is gone"
    );
}

/// Row keys are `<hash>#<view>`: deleting the rows of view `v` from a
/// shared table must not take those of view `a#v` (whose keys also end in
/// `#v`) nor of `x.v` (which `.` would match).
#[tokio::test]
#[ignore = "needs the Bigtable emulator: run tests/run.sh"]
async fn bigtable_row_filters_are_anchored() {
    let store = open(BackendConf::Bigtable(bigtable_conf())).await;
    let v = view("v");
    let others = [view("a#v"), view("x.v"), view("xv")];
    store.create("anchor", &v).await.unwrap();
    store
        .write("anchor", &v, vec![row(1, 1, "V", 10)])
        .await
        .unwrap();
    for o in &others {
        store
            .write("anchor", o, vec![row(1, 2, "O", 10)])
            .await
            .unwrap();
    }
    let remaining: Vec<&RoutedView> = others.iter().collect();
    store.drop_view("anchor", &v, &remaining).await.unwrap();
    let f = vec!["age".to_string()];
    assert!(store.read("anchor", &v, &[key(1)], &f).await.unwrap()[0].is_none());
    for o in &others {
        assert!(
            store.read("anchor", o, &[key(1)], &f).await.unwrap()[0].is_some(),
            "rows of view `{}` were deleted with view `v`",
            o.name
        );
    }
    store.drop_view("anchor", &others[0], &[]).await.unwrap();
}

fn cassandra_conf(keyspace: &str) -> CassandraConf {
    let conf = format!(
        "hosts: [\"{}\"]\nport: {}\nkeyspace: {keyspace}\n",
        env("CASSANDRA_HOST"),
        env("CASSANDRA_PORT")
    );
    api::yaml::from_str(&conf).unwrap()
}

async fn create_keyspace(name: &str) {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(format!(
            "{}:{}",
            env("CASSANDRA_HOST"),
            env("CASSANDRA_PORT")
        ))
        .build()
        .await
        .unwrap();
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs Cassandra: run tests/run.sh"]
async fn cassandra_round_trip_in_two_keyspaces() {
    create_keyspace("itest_a").await;
    create_keyspace("itest_b").await;
    let a = open(BackendConf::Cassandra(Box::new(cassandra_conf("itest_a")))).await;
    let b = open(BackendConf::Cassandra(Box::new(cassandra_conf("itest_b")))).await;
    let v = view("cass_users");
    exercise(a.as_ref(), "itest", &v).await;
    exercise(b.as_ref(), "itest", &v).await;
    // Rows written through one keyspace are not visible through the other.
    a.create("itest", &v).await.unwrap();
    b.create("itest", &v).await.unwrap();
    a.write("itest", &v, vec![row(1, 1, "A", 10)])
        .await
        .unwrap();
    assert!(
        b.read("itest", &v, &[key(1)], &["age".into()])
            .await
            .unwrap()[0]
            .is_none()
    );
    assert!(
        a.read("itest", &v, &[key(1)], &["age".into()])
            .await
            .unwrap()[0]
            .is_some()
    );
    a.drop_view("itest", &v, &[]).await.unwrap();
    b.drop_view("itest", &v, &[]).await.unwrap();
}

/// The driver's typed errors, not their text, decide what a failure is:
/// a view whose table is gone (or whose keyspace never existed) is
/// `MissingTable` naming the table, asked of Cassandra's schema tables; a
/// statement the server refuses for another reason is a `Query` error, not
/// `Unavailable` (which would count against the backend's circuit).
#[tokio::test]
#[ignore = "needs Cassandra (tests/run.sh)"]
async fn cassandra_failures_are_typed() {
    create_keyspace("itest_typed").await;
    let store = open(BackendConf::Cassandra(Box::new(cassandra_conf(
        "itest_typed",
    ))))
    .await;
    let v = view("typed_users");
    let err = store
        .read("itest", &v, &[key(1)], &["age".into()])
        .await
        .unwrap_err();
    match &err {
        BackendError::MissingTable { table, location } => {
            assert!(table.contains("typed_users"), "{err}");
            assert!(location.contains("itest_typed"), "{err}");
        }
        other => panic!("expected MissingTable, got {other:?}"),
    }
    store.create("itest", &v).await.unwrap();
    assert!(
        store
            .read("itest", &v, &[key(1)], &["age".into()])
            .await
            .unwrap()[0]
            .is_none()
    );
    store.drop_view("itest", &v, &[]).await.unwrap();
    // A keyspace that does not exist: every table in it is missing.
    let nowhere = open(BackendConf::Cassandra(Box::new(cassandra_conf(
        "itest_nowhere",
    ))))
    .await;
    let err = nowhere
        .read("itest", &v, &[key(1)], &["age".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::MissingTable { .. }), "{err:?}");
    // A statement the server refuses (a table in a keyspace that does not
    // exist) is the request's error, not an outage.
    let err = nowhere.create("itest", &v).await.unwrap_err();
    match &err {
        BackendError::Query(m) => assert!(m.starts_with("creating "), "{err}"),
        other => panic!("a refused statement is not an outage: {other:?}"),
    }
}

/// A Redis Cluster of 3 masters and 3 replicas (tests/scripts/redis-cluster-up.sh).
fn redis_cluster_conf() -> RedisConf {
    RedisConf {
        redis_type: RedisType::RedisCluster,
        connection_string: env("REDIS_CLUSTER_NODES"),
        ..redis_conf_base()
    }
}

/// 1 master, 1 replica, 3 sentinels (tests/scripts/redis-sentinel-up.sh).
fn redis_sentinel_conf() -> RedisConf {
    RedisConf {
        redis_type: RedisType::RedisSentinel,
        sentinel_master: env("REDIS_SENTINEL_MASTER"),
        connection_string: env("REDIS_SENTINELS"),
        ..redis_conf_base()
    }
}

fn redis_conf_base() -> RedisConf {
    RedisConf {
        redis_type: RedisType::Redis,
        sentinel_master: "mymaster".into(),
        connection_string: String::new(),
        key_ttl_seconds: None,
        full_scan_for_deletion: None,
        skip_dedup: None,
        password: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Redis Cluster: run tests/run.sh"]
async fn redis_cluster_round_trip_and_newest_event_wins() {
    let store = open(BackendConf::Redis(redis_cluster_conf())).await;
    exercise(store.as_ref(), "itest", &view("cluster_users")).await;
    newest_event_wins(store, "nw", &view("cluster_nw")).await;
}

/// One node of the test cluster, by address.
async fn cluster_node(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `(node id, address)` of the master serving `slot`, and of another master.
async fn slot_owner_and_other(any: &str, slot: u16) -> ((String, String), (String, String)) {
    let mut c = cluster_node(any).await;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .unwrap();
    // (id, address, slot ranges) of each master.
    type Master = (String, String, Vec<(u16, u16)>);
    let masters: Vec<Master> = nodes
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 8 && f[2].contains("master") && !f[2].contains("fail")).then(|| {
                let addr = f[1].split('@').next().unwrap().to_string();
                let ranges = f[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => (r.parse().unwrap(), r.parse().unwrap()),
                    })
                    .collect();
                (f[0].to_string(), addr, ranges)
            })
        })
        .collect();
    let owner = masters
        .iter()
        .find(|(_, _, r)| r.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .expect("a master serves the slot");
    let other = masters
        .iter()
        .find(|(id, _, r)| *id != owner.0 && !r.is_empty())
        .expect("a second master");
    (
        (owner.0.clone(), owner.1.clone()),
        (other.0.clone(), other.1.clone()),
    )
}

/// A slot moves between masters while the store reads and writes keys in
/// it: first half migrated (the source answers ASK for the moved keys and
/// for new ones), then all of it (MOVED). Every read returns the newest
/// value, writes land wherever the slot is, and an older write still
/// loses after the move.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Redis Cluster: run tests/run.sh"]
async fn redis_cluster_follows_a_slot_migration() {
    let nodes = env("REDIS_CLUSTER_NODES");
    let any = nodes.split(',').next().unwrap().to_string();
    let store = open(BackendConf::Redis(redis_cluster_conf())).await;
    let project = format!(
        "mig{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (project, v) = (project.as_str(), view("mig_users"));
    let f = vec!["age".to_string()];
    // Entities whose keys share one slot: four of them.
    let mut c = cluster_node(&any).await;
    let mut by_slot: std::collections::HashMap<u16, Vec<i64>> = Default::default();
    let mut ids = Vec::new();
    for id in 1..20_000 {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(api::keys::redis_key(&key(id), project))
            .query_async(&mut c)
            .await
            .unwrap();
        let same = by_slot.entry(slot).or_default();
        same.push(id);
        if same.len() == 4 {
            ids = same.clone();
            break;
        }
    }
    assert_eq!(ids.len(), 4, "no slot with four keys");
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(api::keys::redis_key(&key(ids[0]), project))
        .query_async(&mut c)
        .await
        .unwrap();
    let t = 1_714_570_000;
    let rows: Vec<WriteRow> = ids[..3].iter().map(|id| row(*id, 1, "src", t)).collect();
    store.write(project, &v, rows).await.unwrap();

    let ((src_id, src), (dst_id, dst)) = slot_owner_and_other(&any, slot).await;
    let (mut s, mut d) = (cluster_node(&src).await, cluster_node(&dst).await);
    let setslot = |state: &'static str, node: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(node);
        cmd
    };
    let _: () = setslot("IMPORTING", &src_id)
        .query_async(&mut d)
        .await
        .unwrap();
    let _: () = setslot("MIGRATING", &dst_id)
        .query_async(&mut s)
        .await
        .unwrap();
    let (dst_host, dst_port) = dst.rsplit_once(':').unwrap();
    let migrate = |id: i64| {
        let mut cmd = redis::cmd("MIGRATE");
        cmd.arg(dst_host)
            .arg(dst_port)
            .arg(api::keys::redis_key(&key(id), project))
            .arg(0)
            .arg(5000);
        cmd
    };
    // Half-way: ids[0] moved, ids[1] and ids[2] still on the source,
    // ids[3] new (the source sends its writes to the destination).
    let _: () = migrate(ids[0]).query_async(&mut s).await.unwrap();
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(*id)).collect();
    let got = store.read(project, &v, &keys, &f).await.unwrap();
    assert_eq!(
        got.iter().map(age_of).collect::<Vec<_>>(),
        [Some(1), Some(1), Some(1), None],
        "reads during the migration (ASK)"
    );
    let rows: Vec<WriteRow> = ids.iter().map(|id| row(*id, 2, "mid", t + 10)).collect();
    store.write(project, &v, rows).await.unwrap();
    let got = store.read(project, &v, &keys, &f).await.unwrap();
    assert_eq!(
        got.iter().map(age_of).collect::<Vec<_>>(),
        [Some(2); 4],
        "writes during the migration"
    );

    // The rest moves; the slot is the destination's (MOVED from now on).
    for id in &ids[1..3] {
        let _: () = migrate(*id).query_async(&mut s).await.unwrap();
    }
    for conn in [&mut d, &mut s] {
        let _: () = setslot("NODE", &dst_id).query_async(conn).await.unwrap();
    }
    let stale: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(&mut s)
        .await
        .unwrap();
    assert_eq!(stale, 0, "keys left on the source");
    let got = store.read(project, &v, &keys, &f).await.unwrap();
    assert_eq!(
        got.iter().map(age_of).collect::<Vec<_>>(),
        [Some(2); 4],
        "reads after the migration (MOVED)"
    );
    // An older write still loses; a newer one wins.
    let older: Vec<WriteRow> = ids.iter().map(|id| row(*id, 9, "old", t + 5)).collect();
    store.write(project, &v, older).await.unwrap();
    let newer: Vec<WriteRow> = ids[..2]
        .iter()
        .map(|id| row(*id, 3, "new", t + 20))
        .collect();
    store.write(project, &v, newer).await.unwrap();
    let got = store.read(project, &v, &keys, &f).await.unwrap();
    assert_eq!(
        got.iter().map(age_of).collect::<Vec<_>>(),
        [Some(3), Some(3), Some(2), Some(2)],
        "newest event wins after the migration"
    );
    store.drop_view(project, &v, &[]).await.unwrap();
}

/// The master the sentinels name, as `host:port`.
async fn sentinel_master_addr(sentinel: &str, master: &str) -> String {
    let client = redis::Client::open(format!("redis://{sentinel}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (host, port): (String, String) = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut c)
        .await
        .unwrap();
    format!("{host}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Redis Sentinel: run tests/run.sh"]
async fn redis_sentinel_follows_a_failover() {
    let conf = redis_sentinel_conf();
    let master = conf.sentinel_master.clone();
    let sentinels = conf.connection_string.clone();
    let first_sentinel = sentinels.split(',').next().unwrap().to_string();
    let store = open(BackendConf::Redis(conf)).await;
    // A project of its own per run: a write acknowledged by a master in
    // the moment it is being demoted is lost (Redis replicates
    // asynchronously), so a run must not depend on an earlier one's
    // clean-up.
    let project = format!(
        "st{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (project, v) = (project.as_str(), view("sentinel_users"));
    let t = 1_714_570_000;
    exercise(store.as_ref(), project, &v).await;
    store
        .write(project, &v, vec![row(1, 10, "before", t)])
        .await
        .unwrap();
    let before = sentinel_master_addr(&first_sentinel, &master).await;
    // A failover the sentinels run: the replica is promoted and the old
    // master is made its replica (read-only).
    let client = redis::Client::open(format!("redis://{first_sentinel}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(&master)
        .query_async(&mut c)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut after = before.clone();
    while after == before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the sentinels did not promote the replica within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = sentinel_master_addr(&first_sentinel, &master).await;
    }
    // Writes through the store reach the new master: an attempt that
    // finds the old master read-only (or gone) asks the sentinels and
    // resends. Until the old master is demoted (a moment after the
    // promotion) a write may still land on it and be lost: repeat the
    // write until the new master itself holds it.
    let new_master = open(BackendConf::Redis(RedisConf {
        connection_string: after.clone(),
        ..redis_conf_base()
    }))
    .await;
    let mut tries = 0;
    loop {
        tries += 1;
        store
            .write(project, &v, vec![row(1, 11, "after", t + 1)])
            .await
            .unwrap();
        if read_one(new_master.as_ref(), project, &v, 1).await
            == (Some(11), Timestamp::from_seconds(t + 1))
        {
            break;
        }
        assert!(
            tries < 200,
            "the write after the failover never reached the new master"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        read_one(store.as_ref(), project, &v, 1).await,
        (Some(11), Timestamp::from_seconds(t + 1))
    );
    eprintln!(
        "[sentinel] master {before} -> {after} after {:.1} s; writes converged after {tries} tries",
        started.elapsed().as_secs_f64()
    );
    // The new master answers as the master: a direct read agrees.
    let direct = redis::Client::open(format!("redis://{after}")).unwrap();
    let mut d = direct.get_multiplexed_async_connection().await.unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut d).await.unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
    store.drop_view(project, &v, &[]).await.unwrap();
}

/// A PostgreSQL registry read over TLS with each of libpq's `sslmode`s,
/// against the real server `tests/scripts/postgres-up.sh` starts (TLS on,
/// its certificate signed by HOS_POSTGRES_CA for 127.0.0.1 and localhost).
/// The registry rows live in a schema of their own (`options=-csearch_path`),
/// apart from the tables Feast's own SQL registry keeps in `public`.
#[tokio::test]
#[ignore = "needs PostgreSQL: run tests/run.sh"]
async fn postgres_registry_tls_follows_sslmode() {
    use api::proto::feast::core;
    use api::registry_config::{RegistryLocation, SqlUrl};
    use backends::registry::{FetchError, RegistryReader};
    use prost::Message;

    let url = env("HOS_POSTGRES_URL");
    let ca = std::path::PathBuf::from(env("HOS_POSTGRES_CA"));
    let schema = format!("hos_tls_{}", std::process::id());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema};
             CREATE TABLE entities (project_id TEXT, entity_proto BYTEA);
             CREATE TABLE feature_views (project_id TEXT, feature_view_proto BYTEA);
             CREATE TABLE stream_feature_views (project_id TEXT, feature_view_proto BYTEA);
             CREATE TABLE feature_services (project_id TEXT, feature_service_proto BYTEA);"
        ))
        .await
        .unwrap();
    let view = core::FeatureView {
        spec: Some(core::FeatureViewSpec {
            name: "tls_view".into(),
            project: "tls_p".into(),
            ..Default::default()
        }),
    };
    client
        .execute(
            &format!("INSERT INTO {schema}.feature_views VALUES ('tls_p', $1)"),
            &[&view.encode_to_vec()],
        )
        .await
        .unwrap();

    // `host` is what the certificate is checked against; `hostaddr` is
    // where the connection goes (always the test server).
    let (userinfo, rest) = url
        .strip_prefix("postgresql://")
        .and_then(|r| r.split_once('@'))
        .unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let port = hostport.rsplit_once(':').unwrap().1;
    let read = |host: &str, params: &str, ca_pem: Option<Vec<u8>>| {
        let reader = RegistryReader {
            location: RegistryLocation::Sql(SqlUrl::Postgres(format!(
                "postgresql://{userinfo}@{host}:{port}/{db}?hostaddr=127.0.0.1&options=-csearch_path%3D{schema}&{params}"
            ))),
            project: "tls_p".into(),
            base_dir: ca.parent().unwrap().to_path_buf(),
            token_file: None,
            token: None,
            ca_pem,
            max_bytes: 1 << 20,
        };
        async move { reader.read().await }
    };
    let ok = |r: Result<api::registry::RegistryContents, FetchError>, what: &str| {
        let c = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        let names: Vec<&str> = c.feature_views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["tls_view"], "{what}");
    };
    let refused =
        |r: Result<api::registry::RegistryContents, FetchError>, what: &str, needle: &str| {
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{what}: read, expected a refusal"));
            let msg = e.to_string();
            assert!(msg.contains(needle), "{what}: {msg}");
            assert!(
                !msg.contains(userinfo),
                "{what}: the message holds the password: {msg}"
            );
        };
    let ca_file = ca.file_name().unwrap().to_str().unwrap();
    let ca_pem = std::fs::read(&ca).unwrap();

    // The certificate's chain and name are checked.
    let full = format!("sslmode=verify-full&sslrootcert={ca_file}");
    ok(
        read("127.0.0.1", &full, None).await,
        "verify-full, 127.0.0.1",
    );
    ok(
        read("localhost", &full, None).await,
        "verify-full, localhost",
    );
    refused(
        read("db.example.com", &full, None).await,
        "verify-full, a name the certificate lacks",
        "certificate not valid for name \"db.example.com\"",
    );
    // verify-ca: the chain only.
    let ca_only = format!("sslmode=verify-ca&sslrootcert={ca_file}");
    ok(
        read("db.example.com", &ca_only, None).await,
        "verify-ca, another name",
    );
    // Another CA (the public roots) does not vouch for the test server.
    for params in [
        "sslmode=verify-ca&sslrootcert=system",
        "sslmode=require&sslrootcert=system",
    ] {
        refused(
            read("127.0.0.1", params, None).await,
            params,
            "UnknownIssuer",
        );
    }
    // The CA given directly (the operator's caSecretRef) counts as sslrootcert.
    ok(
        read("127.0.0.1", "sslmode=verify-full", Some(ca_pem.clone())).await,
        "verify-full, CA given",
    );
    refused(
        read("127.0.0.1", "sslmode=verify-full", None).await,
        "verify-full without a CA",
        "needs sslrootcert",
    );
    // Encrypted without authenticating the server, and in clear: libpq's
    // meanings of require, prefer (the default) and disable.
    for params in [
        "sslmode=require",
        "sslmode=prefer",
        "",
        "sslmode=disable",
        "sslmode=allow",
    ] {
        ok(read("127.0.0.1", params, None).await, params);
    }
    refused(
        read(
            "127.0.0.1",
            "sslmode=verify-full&sslrootcert=missing.pem",
            None,
        )
        .await,
        "a missing CA file",
        "missing.pem",
    );

    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
