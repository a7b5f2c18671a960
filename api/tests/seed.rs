//! The seed's `feature_store.yaml` and FeatureView YAML (verbatim fixtures)
//! parse into a routing table; malformed copies fail naming the field.

use api::feast_config::{BackendConf, OnlineStoreConfig, RepoConfig};
use api::feature_view::FeatureViewDef;
use api::{Dtype, RoutingTable};

const STORE: &str = include_str!("data/seed/feature_store.yaml");
const VIEW: &str = include_str!("data/seed/feature_view.yaml");

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn seed_parses_into_routing_table() {
    let config = RepoConfig::parse("feature_store.yaml", STORE, no_env).unwrap();
    assert_eq!(config.project, "my_feature_repo");
    assert_eq!(
        config.registry.as_ref().map(|r| &r.location),
        Some(&api::registry_config::RegistryLocation::File(
            "data/registry.db".into()
        ))
    );
    let OnlineStoreConfig::Hybrid {
        routing_tag,
        online_stores,
        ..
    } = &config.online_store
    else {
        panic!("hybrid expected");
    };
    assert_eq!(routing_tag, "team");
    assert_eq!(online_stores.len(), 2);
    let BackendConf::Cassandra(c) = &online_stores[1].conf else {
        panic!("cassandra expected")
    };
    assert_eq!(
        c.hosts.as_deref(),
        Some(
            &[
                "cassandra1.example.com".to_string(),
                "cassandra2.example.com".to_string()
            ][..]
        )
    );
    assert_eq!(c.keyspace, "feast_keyspace");

    let views = FeatureViewDef::parse_all("feature_view.yaml", VIEW).unwrap();
    let table =
        RoutingTable::from_feast(&config, &views, Vec::new(), "feature_store.yaml").unwrap();
    let view = table.view("user_features").unwrap();
    assert_eq!(view.backend, "bigtable");
    assert_eq!(view.ttl_seconds, None);
    assert_eq!(view.entities[0].join_keys[0].name, "user_id");
    assert_eq!(
        view.features
            .iter()
            .map(|f| (f.name.as_str(), f.dtype))
            .collect::<Vec<_>>(),
        vec![("age", Dtype::Int64), ("country", Dtype::String)]
    );
    assert_eq!(
        table
            .backends
            .iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>(),
        vec!["bigtable", "cassandra"]
    );

    // The seed writes the Cassandra password literally: fine for a repo,
    // refused for a ConfigMap.
    assert!(table.validate_for_configmap("cm").is_err());

    // Round trip through the document, byte-identical.
    let yaml = table.to_yaml();
    let again = RoutingTable::parse("routing.yaml", &yaml).unwrap();
    assert_eq!(again, table);
    assert_eq!(again.to_yaml(), yaml);
    assert!(
        !format!("{table:?}").contains("feast_password"),
        "Debug must not print secrets"
    );
}

#[test]
fn env_substitution_applies() {
    let text = STORE.replace("my_bigtable_instance", "${BT_INSTANCE}");
    let config = RepoConfig::parse("feature_store.yaml", &text, |k| {
        (k == "BT_INSTANCE").then(|| "from_env".to_string())
    })
    .unwrap();
    let OnlineStoreConfig::Hybrid { online_stores, .. } = &config.online_store else {
        panic!()
    };
    let BackendConf::Bigtable(b) = &online_stores[0].conf else {
        panic!()
    };
    assert_eq!(b.instance, "from_env");
}

#[test]
fn malformed_store_names_the_field() {
    let bad = STORE.replace("keyspace: feast_keyspace", "keyspace: [not, a, string]");
    let err = RepoConfig::parse("feature_store.yaml", &bad, no_env).unwrap_err();
    assert_eq!(err.file, "feature_store.yaml");
    assert_eq!(err.path, "online_store.online_stores[1].conf.keyspace");

    let bad = STORE.replace(
        "instance: my_bigtable_instance",
        "instanc: my_bigtable_instance",
    );
    let err = RepoConfig::parse("feature_store.yaml", &bad, no_env).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("feature_store.yaml: online_store.online_stores[0].conf"),
        "{err}"
    );
    assert!(err.message.contains("instanc"), "{err}");
}

#[test]
fn malformed_view_names_the_field() {
    let bad = VIEW.replace("dtype: int64", "dtype: integer64");
    let err = FeatureViewDef::parse_all("feature_view.yaml", &bad).unwrap_err();
    assert_eq!(
        err.to_string().split(": ").take(2).collect::<Vec<_>>(),
        vec!["feature_view.yaml", "schema[0].dtype"]
    );
    assert!(err.message.contains("integer64"));

    let bad = VIEW.replace("online: true", "online: maybe");
    let err = FeatureViewDef::parse_all("feature_view.yaml", &bad).unwrap_err();
    assert_eq!(err.path, "online");
}

#[test]
fn unroutable_view_fails_at_load() {
    let config = RepoConfig::parse("feature_store.yaml", STORE, no_env).unwrap();
    let views = FeatureViewDef::parse_all(
        "feature_view.yaml",
        &VIEW.replace("team: bigtable", "team: dynamo"),
    )
    .unwrap();
    let err =
        RoutingTable::from_feast(&config, &views, Vec::new(), "feature_store.yaml").unwrap_err();
    assert!(
        err.to_string().contains("`dynamo` names no backend"),
        "{err}"
    );
}

#[test]
fn routing_table_rejects_bad_documents() {
    let config = RepoConfig::parse("feature_store.yaml", STORE, no_env).unwrap();
    let views = FeatureViewDef::parse_all("feature_view.yaml", VIEW).unwrap();
    let yaml = RoutingTable::from_feast(&config, &views, Vec::new(), "f")
        .unwrap()
        .to_yaml();

    let cases = [
        (
            yaml.replace("backend: bigtable", "backend: nowhere"),
            "feature_views[0].backend",
        ),
        (
            yaml.replace("dtype: int64", "dtype: int99"),
            "feature_views[0].features[0].dtype",
        ),
        (
            yaml.replace("schema_version: 1", "schema_version: 7"),
            "schema_version",
        ),
        (
            yaml.replace("name: cassandra", "name: bigtable"),
            "backends[1].name",
        ),
        (
            yaml.replace("routing_tag: team", "routing_tag: team\nsurprise: 1"),
            "surprise",
        ),
    ];
    for (doc, path) in cases {
        let err = RoutingTable::parse("routing.yaml", &doc).unwrap_err();
        assert_eq!(err.path, path, "{err}");
    }

    // The same refusals, with the same paths, for the JSON form.
    let table = RoutingTable::parse("routing.yaml", &yaml).unwrap();
    let json = table.to_json();
    let cases = [
        (
            json.replace("\"backend\":\"bigtable\"", "\"backend\":\"nowhere\""),
            "feature_views[0].backend",
        ),
        (
            json.replace("\"dtype\":\"int64\"", "\"dtype\":\"int99\""),
            "feature_views[0].features[0].dtype",
        ),
        (
            json.replace("\"schema_version\":1", "\"schema_version\":7"),
            "schema_version",
        ),
        (
            json.replace("\"schema_version\":1", "\"schema_version\":\"1\""),
            "schema_version",
        ),
        (
            json.replace(
                "\"routing_tag\":\"team\"",
                "\"routing_tag\":\"team\", \"surprise\":1",
            ),
            "surprise",
        ),
        (format!("{json} {{}}"), "."),
    ];
    // A byte-order mark before the JSON is skipped, as YAML readers do.
    let with_bom = format!("\u{feff}{json}");
    assert_eq!(
        RoutingTable::parse("routing.json", &with_bom).unwrap(),
        table
    );
    for (doc, path) in cases {
        assert_ne!(doc, json, "the case changed nothing");
        let err = RoutingTable::parse("routing.json", &doc).unwrap_err();
        assert_eq!(err.path, path, "{err}");
    }
}

/// A hostile JSON document nested far deeper than any configuration is
/// refused with a message, before anything recurses into it (a stack
/// overflow would end the process).
#[test]
fn deep_json_is_refused_not_a_crash() {
    let config = RepoConfig::parse("feature_store.yaml", STORE, no_env).unwrap();
    let views = FeatureViewDef::parse_all("feature_view.yaml", VIEW).unwrap();
    let json = RoutingTable::from_feast(&config, &views, Vec::new(), "f")
        .unwrap()
        .to_json();
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let doc = json.replacen(
        "\"schema_version\":1",
        &format!("\"x\":{deep}, \"schema_version\":1"),
        1,
    );
    let err = RoutingTable::parse("routing.json", &doc).unwrap_err();
    assert!(
        err.message
            .contains("nesting deeper than 64 levels at line"),
        "{err}"
    );
    // Brackets inside strings are text, not nesting.
    let text = json.replacen(
        "\"routing_tag\":\"team\"",
        &format!("\"routing_tag\":\"{}\"", "[{".repeat(500)),
        1,
    );
    let table = RoutingTable::parse("routing.json", &text).unwrap();
    assert_eq!(table.routing_tag, "[{".repeat(500));
}

#[test]
fn feature_services_collocate_on_request() {
    use api::routing::{FeatureService, Projection};
    let store = |collocate: bool| {
        format!(
            "project: p\nonline_store:\n  type: hybrid\n  routing_tag: team\n  collocate_feature_services: {collocate}\n  online_stores:\n    - {{name: a, type: sqlite, conf: {{path: a.db}}}}\n    - {{name: b, type: sqlite, conf: {{path: b.db}}}}\n"
        )
    };
    let views = FeatureViewDef::parse_all(
        "views.yaml",
        "name: v1\ntags: {team: a}\n---\nname: v2\ntags: {team: b}\n---\nname: v3\ntags: {team: b}\n",
    )
    .unwrap();
    let svc = |name: &str, vs: &[&str]| FeatureService {
        name: name.into(),
        projections: vs
            .iter()
            .map(|v| Projection {
                feature_view: v.to_string(),
                alias: None,
                features: Vec::new(),
            })
            .collect(),
    };
    let backends = |t: &RoutingTable| {
        t.feature_views
            .iter()
            .map(|v| (v.name.clone(), v.backend.clone()))
            .collect::<Vec<_>>()
    };
    let off = RepoConfig::parse("fs.yaml", &store(false), no_env).unwrap();
    let t =
        RoutingTable::from_feast(&off, &views, vec![svc("s", &["v1", "v2"])], "fs.yaml").unwrap();
    assert_eq!(
        backends(&t),
        [("v1", "a"), ("v2", "b"), ("v3", "b")].map(|(v, b)| (v.to_string(), b.to_string()))
    );
    // On: the service's views follow its first view; others keep their tag.
    let on = RepoConfig::parse("fs.yaml", &store(true), no_env).unwrap();
    let t =
        RoutingTable::from_feast(&on, &views, vec![svc("s", &["v1", "v2"])], "fs.yaml").unwrap();
    assert_eq!(
        backends(&t),
        [("v1", "a"), ("v2", "a"), ("v3", "b")].map(|(v, b)| (v.to_string(), b.to_string()))
    );
    // A view pulled to two backends by two services is an error naming both.
    let err = RoutingTable::from_feast(
        &on,
        &views,
        vec![svc("s1", &["v1", "v2"]), svc("s2", &["v3", "v2"])],
        "fs.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`v2`") && err.contains("`s1`") && err.contains("`s2`"),
        "{err}"
    );
}

#[test]
fn routing_digest_names_the_routes_not_the_document() {
    let config = RepoConfig::parse("feature_store.yaml", STORE, no_env).unwrap();
    let views = FeatureViewDef::parse_all("feature_view.yaml", VIEW).unwrap();
    let table = RoutingTable::from_feast(&config, &views, Vec::new(), "f").unwrap();
    let digest = table.digest();
    assert_eq!(digest.len(), 16);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    // The same routes as YAML, as JSON, and with comments and another key
    // order: one digest.
    let yaml = table.to_yaml();
    let json = serde_json::to_string_pretty(&table).unwrap();
    let commented = format!("# routes\n{yaml}");
    for doc in [&yaml, &json, &commented] {
        assert_eq!(RoutingTable::parse("r", doc).unwrap().digest(), digest);
    }
    // Any change to a route changes it.
    let moved = RoutingTable::parse(
        "r",
        &yaml.replace("backend: bigtable", "backend: cassandra"),
    )
    .unwrap();
    assert_ne!(moved.digest(), digest);
}
