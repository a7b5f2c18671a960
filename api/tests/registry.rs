//! A `registry.db` written by Feast 0.67.0's `feast apply` (project
//! `interop`; see tests/interop for the repo that makes one) decodes into
//! the views and services Feast has.

use api::Dtype;
use api::registry::read_registry;

const REGISTRY: &[u8] = include_bytes!("data/registry_interop.db");

#[test]
fn reads_views_entities_and_services() {
    let r = read_registry("registry.db", REGISTRY, "interop").unwrap();
    let names: Vec<&str> = r.feature_views.iter().map(|v| v.name.as_str()).collect();
    assert!(
        names.contains(&"user_features")
            && names.contains(&"user_merchant")
            && names.contains(&"global_stats"),
        "{names:?}"
    );

    let uf = r
        .feature_views
        .iter()
        .find(|v| v.name == "user_features")
        .unwrap();
    assert_eq!(uf.entities.len(), 1);
    assert_eq!(uf.entities[0].join_keys, vec!["user_id"]);
    assert_eq!(uf.entities[0].dtype, Some(Dtype::Int64));
    let f = |n: &str| uf.schema.iter().find(|f| f.name == n).map(|f| f.dtype);
    assert_eq!(f("f_float32"), Some(Dtype::Float32));
    assert_eq!(f("f_float64_list"), Some(Dtype::Float64List));
    assert_eq!(f("f_ts"), Some(Dtype::UnixTimestamp));
    assert_eq!(f("user_id"), None, "join keys are not features");
    assert!(uf.online);

    let um = r
        .feature_views
        .iter()
        .find(|v| v.name == "user_merchant")
        .unwrap();
    let keys: Vec<(&str, Option<Dtype>)> = um
        .entities
        .iter()
        .map(|e| (e.join_keys[0].as_str(), e.dtype))
        .collect();
    assert!(
        keys.contains(&("merchant_id", Some(Dtype::String)))
            && keys.contains(&("user_id", Some(Dtype::Int64))),
        "{keys:?}"
    );

    let gl = r
        .feature_views
        .iter()
        .find(|v| v.name == "global_stats")
        .unwrap();
    assert!(gl.entities.is_empty(), "entityless views carry no entities");

    let svc = r.feature_services.iter().find(|s| s.name == "svc").unwrap();
    let alias = svc
        .projections
        .iter()
        .find(|p| p.feature_view == "user_merchant")
        .unwrap();
    assert_eq!(alias.alias.as_deref(), Some("um_alias"));
    assert_eq!(alias.features, vec!["spend"]);

    assert!(
        read_registry("registry.db", REGISTRY, "other")
            .unwrap()
            .feature_views
            .is_empty()
    );
    assert!(read_registry("registry.db", b"\xff\xff\xff", "interop").is_err());
}
