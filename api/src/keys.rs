//! Backend keys Feast derives from a serialized entity key, so rows written
//! by Feast and by this project land on the same keys.

use md5::{Digest, Md5};

/// Entity name Feast gives entityless feature views.
pub const DUMMY_ENTITY_NAME: &str = "__dummy";
/// Join key of the dummy entity; its value is the empty string.
pub const DUMMY_ENTITY_JOIN_KEY: &str = "__dummy_id";

/// Redis hash key: serialized entity key followed by the project name.
pub fn redis_key(serialized_key: &[u8], project: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(serialized_key.len() + project.len());
    k.extend_from_slice(serialized_key);
    k.extend_from_slice(project.as_bytes());
    k
}

/// Feast's `_mmh3`: murmur3_x86_32 (seed 0) of the text, 4 bytes little-endian.
pub fn mmh3_field(name: &str) -> [u8; 4] {
    murmur3_x86_32(name.as_bytes()).to_le_bytes()
}

/// Redis hash field holding one feature of a view.
pub fn redis_feature_field(feature_view: &str, feature: &str) -> [u8; 4] {
    mmh3_field(&format!("{feature_view}:{feature}"))
}

/// Redis hash field holding a view's event timestamp (not hashed).
pub fn redis_ts_field(feature_view: &str) -> String {
    format!("_ts:{feature_view}")
}

fn murmur3_x86_32(bytes: &[u8]) -> u32 {
    let mut r = bytes;
    // Reading from a slice cannot fail.
    murmur3::murmur3_32(&mut r, 0).unwrap_or_default()
}

/// Feast's `compute_entity_id`: lowercase hex of the 16 bytes of
/// murmur3_x64_128 (seed 0), as Python's `mmh3.hash_bytes` lays them out.
pub fn bigtable_entity_id(serialized_key: &[u8]) -> String {
    let mut r = serialized_key;
    let h = murmur3::murmur3_x64_128(&mut r, 0).unwrap_or_default();
    hex::encode(h.to_le_bytes())
}

/// Bigtable row key: entity id, `#`, feature view name.
pub fn bigtable_row_key(serialized_key: &[u8], feature_view: &str) -> String {
    format!("{}#{}", bigtable_entity_id(serialized_key), feature_view)
}

const BIGTABLE_TABLE_MAX_LENGTH: usize = 50;
const ENTITIES_PART_MAX_LENGTH: usize = 24;
const HUMAN_READABLE_PART_LENGTH: usize = 10;

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn prefix_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Feast's `BigtableOnlineStore._get_table_name`: one table per entity set,
/// `<project>.<sorted entity names joined by "-">`, shortened with MD5 to
/// fit Bigtable's 50-character limit. Lengths count code points as Python does.
pub fn bigtable_table_name(project: &str, entity_names: &[&str]) -> String {
    let mut entities_part = if entity_names.is_empty() {
        DUMMY_ENTITY_NAME.to_string()
    } else {
        let mut sorted = entity_names.to_vec();
        sorted.sort_unstable();
        sorted.join("-")
    };
    if entities_part.chars().count() > ENTITIES_PART_MAX_LENGTH {
        entities_part = prefix_chars(&md5_hex(&entities_part), ENTITIES_PART_MAX_LENGTH);
    }
    let remaining = BIGTABLE_TABLE_MAX_LENGTH - entities_part.chars().count() - 1;
    let project_part = if project.chars().count() > remaining {
        let hash_len = remaining - HUMAN_READABLE_PART_LENGTH - 1;
        format!(
            "{}_{}",
            prefix_chars(project, HUMAN_READABLE_PART_LENGTH),
            prefix_chars(&md5_hex(project), hash_len)
        )
    } else {
        project.to_string()
    };
    format!("{project_part}.{entities_part}")
}

/// Cassandra partition key: lowercase hex of the serialized entity key.
pub fn cassandra_entity_key(serialized_key: &[u8]) -> String {
    hex::encode(serialized_key)
}

/// Table name Feast's SQLite and Cassandra stores use for a view.
pub fn view_table_name(project: &str, feature_view: &str) -> String {
    format!("{project}_{feature_view}")
}
