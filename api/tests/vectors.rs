//! Every case of Feast 0.67.0's golden vectors (`tests/data/vectors.json`,
//! produced by Feast's own functions) must match byte for byte.

use api::entity_key::{self, SerializationVersion};
use api::keys;
use api::proto::{EntityKey, Val, Value};
use base64::Engine;
use prost::Message;
use serde_json::Value as Json;

fn vectors() -> Json {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn value_from_case(v: &Json) -> Value {
    let (field, x) = v.as_object().unwrap().iter().next().unwrap();
    let val = match field.as_str() {
        "int64_val" => Val::Int64Val(x.as_i64().unwrap()),
        "int32_val" => Val::Int32Val(x.as_i64().unwrap() as i32),
        "string_val" => Val::StringVal(x.as_str().unwrap().to_string()),
        "unix_timestamp_val" => Val::UnixTimestampVal(x.as_i64().unwrap()),
        "bytes_val" => Val::BytesVal(
            base64::engine::general_purpose::STANDARD
                .decode(x.as_str().unwrap())
                .unwrap(),
        ),
        other => panic!("vector uses value field {other} this test does not know"),
    };
    Value { val: Some(val) }
}

#[test]
fn entity_keys_v3_v2_and_derived_keys() {
    let v = vectors();
    let cases = v["entity_keys"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let join_keys: Vec<String> = case["join_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().into())
            .collect();
        let values: Vec<Value> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(value_from_case)
            .collect();
        let key = EntityKey {
            join_keys: join_keys.clone(),
            entity_values: values,
        };
        let names: Vec<&str> = join_keys.iter().map(String::as_str).collect();

        let v3 = entity_key::serialize(&key, SerializationVersion::V3).unwrap();
        assert_eq!(
            hex::encode(&v3),
            case["v3_hex"].as_str().unwrap(),
            "v3 of {join_keys:?}"
        );
        let back = entity_key::deserialize_v3(&v3).unwrap();
        assert_eq!(
            entity_key::serialize(&back, SerializationVersion::V3).unwrap(),
            v3,
            "v3 round trip {join_keys:?}"
        );

        let v2_expected = case["v2_hex"]
            .as_str()
            .expect("every vector has a v2 encoding");
        let v2 = entity_key::serialize(&key, SerializationVersion::V2).unwrap();
        assert_eq!(hex::encode(&v2), v2_expected, "v2 of {join_keys:?}");
        let back = entity_key::deserialize_v2(&v2, &names).unwrap();
        assert_eq!(
            entity_key::serialize(&back, SerializationVersion::V2).unwrap(),
            v2
        );

        assert_eq!(
            keys::bigtable_entity_id(&v3),
            case["bigtable_entity_id"].as_str().unwrap(),
            "bigtable id {join_keys:?}"
        );
        assert_eq!(
            hex::encode(keys::redis_key(&v3, "demo")),
            case["redis_key_hex_project_demo"].as_str().unwrap(),
            "redis key {join_keys:?}"
        );
        assert_eq!(
            keys::cassandra_entity_key(&v3),
            case["v3_hex"].as_str().unwrap()
        );
        assert_eq!(
            keys::bigtable_row_key(&v3, "user_features"),
            format!(
                "{}#user_features",
                case["bigtable_entity_id"].as_str().unwrap()
            )
        );
    }
}

#[test]
fn values_protobuf_both_ways() {
    let v = vectors();
    let values = v["values"].as_object().unwrap();
    assert_eq!(values.len(), 19);
    let expected: Vec<(&str, Option<Val>)> = vec![
        ("int32", Some(Val::Int32Val(-5))),
        ("int64", Some(Val::Int64Val(9007199254740993))),
        ("int64_zero", Some(Val::Int64Val(0))),
        ("double", Some(Val::DoubleVal(3.5))),
        ("float", Some(Val::FloatVal(0.99))),
        ("string", Some(Val::StringVal("DE".into()))),
        ("string_empty", Some(Val::StringVal(String::new()))),
        ("bytes", Some(Val::BytesVal(vec![1, 2]))),
        ("bool_true", Some(Val::BoolVal(true))),
        ("bool_false", Some(Val::BoolVal(false))),
        ("unix_timestamp", Some(Val::UnixTimestampVal(1700000000))),
        (
            "int32_list",
            Some(Val::Int32ListVal(api::proto::feast::types::Int32List {
                val: vec![1, 2, 3],
            })),
        ),
        (
            "int64_list",
            Some(Val::Int64ListVal(api::proto::feast::types::Int64List {
                val: vec![-1, 2],
            })),
        ),
        (
            "double_list",
            Some(Val::DoubleListVal(api::proto::feast::types::DoubleList {
                val: vec![0.5, 1.5],
            })),
        ),
        (
            "float_list",
            Some(Val::FloatListVal(api::proto::feast::types::FloatList {
                val: vec![0.25],
            })),
        ),
        (
            "string_list",
            Some(Val::StringListVal(api::proto::feast::types::StringList {
                val: vec!["a".into(), "b".into()],
            })),
        ),
        (
            "bytes_list",
            Some(Val::BytesListVal(api::proto::feast::types::BytesList {
                val: vec![b"x".to_vec()],
            })),
        ),
        (
            "bool_list",
            Some(Val::BoolListVal(api::proto::feast::types::BoolList {
                val: vec![true, false],
            })),
        ),
        ("unset", None),
    ];
    assert_eq!(expected.len(), values.len(), "every vector is covered");
    for (name, val) in expected {
        let hex_expected = values[name]["proto_hex"].as_str().unwrap();
        let value = Value { val };
        assert_eq!(
            hex::encode(value.encode_to_vec()),
            hex_expected,
            "encode {name}"
        );
        let decoded = Value::decode(hex::decode(hex_expected).unwrap().as_slice()).unwrap();
        assert_eq!(decoded, value, "decode {name}");
    }
}

#[test]
fn redis_fields() {
    let v = vectors();
    let cases = v["redis_fields"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            hex::encode(keys::mmh3_field(name)),
            c["mmh3_field_hex"].as_str().unwrap(),
            "{name}"
        );
        if let Some((view, feature)) = name.split_once(':').filter(|(v, _)| *v != "_ts") {
            assert_eq!(
                keys::redis_feature_field(view, feature),
                keys::mmh3_field(name)
            );
        }
    }
    assert_eq!(keys::redis_ts_field("user_features"), "_ts:user_features");
}

#[test]
fn bigtable_table_names() {
    let v = vectors();
    let cases = v["bigtable_tables"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let entities: Vec<&str> = c["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        let project = c["project"].as_str().unwrap();
        assert_eq!(
            keys::bigtable_table_name(project, &entities),
            c["table"].as_str().unwrap(),
            "{project} {entities:?}"
        );
    }
    assert_eq!(
        hex::encode(md5_of("demo")),
        v["md5_check"].as_str().unwrap()
    );
}

fn md5_of(s: &str) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes()).to_vec()
}
