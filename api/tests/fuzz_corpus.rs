//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) of the
//! `entity_key`, `routing_table` and `feast_config` fuzz targets without
//! libFuzzer: every input runs the target's code path and properties.
//! Hand-written inputs are named `seed-*` (valid: must parse) and
//! `malformed-*` (must be refused with a message); the fuzzer's own
//! inputs only must not panic or break a property.

use std::path::PathBuf;

use api::RoutingTable;
use api::entity_key::{SerializationVersion, deserialize_v2, deserialize_v3, serialize};
use api::feast_config::RepoConfig;
use api::feature_view::FeatureViewDef;
use api::proto::EntityKey;

/// Every file of a target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fuzz/corpus/{target}"));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(n, _)| n.starts_with("seed-"))
            && files.iter().any(|(n, _)| n.starts_with("malformed-")),
        "{target}: corpus lacks its seed-* or malformed-* inputs"
    );
    files
}

/// What the hand-written name promises about an input.
fn check(target: &str, name: &str, result: Result<(), String>) {
    match result {
        Ok(()) => assert!(!name.starts_with("malformed-"), "{target}/{name}: accepted"),
        Err(msg) => {
            assert!(!name.starts_with("seed-"), "{target}/{name}: {msg}");
            assert!(!msg.trim().is_empty(), "{target}/{name}: empty error");
        }
    }
}

// --- entity_key: byte 0 even = v3 key; odd = v2 (names, then the key) ---

fn sorted_pairs(k: &EntityKey) -> EntityKey {
    let mut pairs: Vec<_> = k.join_keys.iter().zip(&k.entity_values).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    EntityKey {
        join_keys: pairs.iter().map(|(k, _)| (*k).clone()).collect(),
        entity_values: pairs.iter().map(|(_, v)| (*v).clone()).collect(),
    }
}

fn v2_input(data: &[u8]) -> (Vec<String>, &[u8]) {
    let n = data.first().map_or(0, |b| b % 4);
    let mut rest = data.get(1..).unwrap_or_default();
    let mut names = Vec::new();
    for _ in 0..n {
        let Some((&len, tail)) = rest.split_first() else {
            break;
        };
        let len = usize::from(len).min(tail.len());
        names.push(String::from_utf8_lossy(&tail[..len]).into_owned());
        rest = &tail[len..];
    }
    (names, rest)
}

fn entity_key_case(data: &[u8]) -> Result<(), String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty input".into());
    };
    if mode % 2 == 0 {
        let key = deserialize_v3(rest).map_err(|e| e.to_string())?;
        let again = serialize(&key, SerializationVersion::V3).unwrap();
        assert_eq!(deserialize_v3(&again).unwrap(), sorted_pairs(&key));
        if key.join_keys == sorted_pairs(&key).join_keys {
            assert_eq!(again, rest);
        }
    } else {
        let (names, bytes) = v2_input(rest);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let key = deserialize_v2(bytes, &names).map_err(|e| e.to_string())?;
        assert_eq!(serialize(&key, SerializationVersion::V2).unwrap(), bytes);
    }
    Ok(())
}

#[test]
fn entity_key_corpus() {
    for (name, data) in corpus("entity_key") {
        check("entity_key", &name, entity_key_case(&data));
    }
}

// --- routing_table: the document as UTF-8 ---

fn routing_table_case(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let table = RoutingTable::parse("routing.yaml", text).map_err(|e| e.to_string())?;
    let _ = table.validate_for_configmap("configmap");
    let yaml = table.to_yaml();
    let again = RoutingTable::parse("routing.yaml", &yaml).unwrap();
    assert_eq!(again.to_yaml(), yaml);
    // The JSON form (what the operator publishes) reads back to the same
    // table by the JSON path.
    let json = table.to_json();
    assert!(api::error::is_json_object(&json));
    assert_eq!(RoutingTable::parse("routing.json", &json).unwrap(), table);
    Ok(())
}

#[test]
fn routing_table_corpus() {
    for (name, data) in corpus("routing_table") {
        check("routing_table", &name, routing_table_case(&data));
    }
}

// --- feast_config: feature_store.yaml, NUL, FeatureView YAML ---

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("db.example.com".into()),
        "PORT" => Some("9042".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn feast_config_case(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let (store, views) = text.split_once('\0').unwrap_or((text, text));
    let config = RepoConfig::parse("feature_store.yaml", store, env);
    let views = FeatureViewDef::parse_all("views.yaml", views);
    let config = config.map_err(|e| e.to_string())?;
    let views = views.map_err(|e| e.to_string())?;
    let table = RoutingTable::from_feast(&config, &views, Vec::new(), "feature_store.yaml")
        .map_err(|e| e.to_string())?;
    let yaml = table.to_yaml();
    let again = RoutingTable::parse("routing.yaml", &yaml).unwrap();
    assert_eq!(again.to_yaml(), yaml);
    Ok(())
}

#[test]
fn feast_config_corpus() {
    for (name, data) in corpus("feast_config") {
        check("feast_config", &name, feast_config_case(&data));
    }
}
