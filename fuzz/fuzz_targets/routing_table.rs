//! The routing-table document (`RoutingTable::parse`, what the proxy runs
//! on a `--routing-table` file or a routing ConfigMap key). Input: the
//! document as UTF-8 (the proxy reads it with `read_to_string`).
//!
//! Properties: no panic; a table that parses writes out (`to_yaml`, what
//! the operator stores in the ConfigMap) to a document that parses again
//! and writes out byte-identically. The comparison is on the YAML text,
//! not with `==`, because a Cassandra `request_timeout: .nan` is a valid
//! f64 that is not equal to itself.
#![no_main]

use api::RoutingTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = RoutingTable::parse("routing.yaml", text) else {
        return;
    };
    let _ = table.validate_for_configmap("configmap");
    let yaml = table.to_yaml();
    let again = RoutingTable::parse("routing.yaml", &yaml)
        .unwrap_or_else(|e| panic!("to_yaml output does not parse: {e}\n{yaml}"));
    assert_eq!(
        again.to_yaml(),
        yaml,
        "routing table round trip is not stable"
    );
});
