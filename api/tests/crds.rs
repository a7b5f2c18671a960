//! `crds/` must be exactly what `crdgen` writes, and `examples/` must be
//! valid custom resources.

use api::crd::{FeatureView, HybridOnlineStore, crd_documents};
use api::feast_config::BackendConf;

fn repo_file(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn crds_are_fresh() {
    for (name, yaml) in crd_documents().unwrap() {
        let on_disk = repo_file(&format!("crds/{name}"));
        assert!(
            on_disk == yaml,
            "crds/{name} is stale: run `cargo run -p api --bin crdgen` and commit the result"
        );
    }
}

#[test]
fn examples_are_valid_resources() {
    let text = repo_file("examples/hybridonlinestore.yaml");
    let docs = api::yaml::documents(&text, 10).unwrap();
    let store_doc = docs
        .iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("HybridOnlineStore"))
        .unwrap();
    let store: HybridOnlineStore = serde::Deserialize::deserialize(store_doc.clone()).unwrap();
    assert_eq!(store.spec.project, "my_feature_repo");
    assert_eq!(store.spec.online_stores.len(), 2);
    for (i, s) in store.spec.online_stores.iter().enumerate() {
        let conf: api::yaml::Value = serde::Deserialize::deserialize(&s.conf).unwrap();
        let parsed = BackendConf::parse(
            s.backend_type,
            conf,
            "examples/hybridonlinestore.yaml",
            &format!("spec.onlineStores[{i}].conf"),
        )
        .unwrap();
        assert!(!parsed.has_literal_credentials());
    }

    let fv: FeatureView = api::yaml::from_str(&repo_file("examples/featureview.yaml")).unwrap();
    assert_eq!(fv.spec.name.as_deref(), Some("user_features"));
    assert_eq!(
        fv.spec.tags.get("team").map(String::as_str),
        Some("bigtable")
    );
}
