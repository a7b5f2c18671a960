//! Feast repo configuration: `feature_store.yaml` (`RepoConfig::parse`,
//! with `$VAR` expansion) and FeatureView YAML (`FeatureViewDef::parse_all`),
//! then the routing table the proxy builds from both (`RoutingTable::from_feast`).
//!
//! Input: UTF-8 text. Up to the first NUL byte it is the `feature_store.yaml`,
//! after it the FeatureView YAML; without a NUL the whole text is tried as
//! both. The replay test `api/tests/fuzz_corpus.rs` reads the same layout.
//!
//! Properties: no panic, no endless loop (`FeatureViewDef::parse_all` used
//! to loop until out of memory on a YAML syntax error, found here and fixed
//! in 7c1b084); a table built from a valid repo writes out (`to_yaml`) to a
//! document that parses and writes out identically.
#![no_main]

use api::RoutingTable;
use api::feast_config::RepoConfig;
use api::feature_view::FeatureViewDef;
use libfuzzer_sys::fuzz_target;

/// A fixed environment: `$HOST`, `$PORT` and `$EMPTY` are set.
fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("db.example.com".into()),
        "PORT" => Some("9042".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (store, views) = text.split_once('\0').unwrap_or((text, text));
    let config = RepoConfig::parse("feature_store.yaml", store, env);
    let views = FeatureViewDef::parse_all("views.yaml", views);
    let (Ok(config), Ok(views)) = (config, views) else {
        return;
    };
    let Ok(table) = RoutingTable::from_feast(&config, &views, Vec::new(), "feature_store.yaml")
    else {
        return;
    };
    let yaml = table.to_yaml();
    let again = RoutingTable::parse("routing.yaml", &yaml)
        .unwrap_or_else(|e| panic!("to_yaml output of a repo's table does not parse: {e}\n{yaml}"));
    assert_eq!(
        again.to_yaml(),
        yaml,
        "routing table round trip is not stable"
    );
});
