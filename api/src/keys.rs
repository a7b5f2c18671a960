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

/// Scylla's (and Cassandra 4's) limit on table name length.
pub const CASSANDRA_TABLE_NAME_MAX: usize = 48;

const BASE62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Base62 (digits, lowercase, uppercase) of big-endian bytes, as the Feast
/// fork that introduced `table_name_format_version: 2` encodes MD5 sums.
fn base62(bytes: &[u8; 16]) -> String {
    let mut n = u128::from_be_bytes(*bytes);
    if n == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Cassandra table of a view. Version 1 is Feast's `<project>_<view>`,
/// refused when longer than 48 characters (Scylla's limit); version 2
/// keeps short names and shortens long ones to `<5 chars of project>_<17
/// base62 chars of the MD5 of the rest>_<5 chars of view>_<18 base62 chars>`.
pub fn cassandra_table_name(
    project: &str,
    feature_view: &str,
    version: u32,
) -> Result<String, String> {
    let plain = view_table_name(project, feature_view);
    match version {
        1 if plain.len() <= CASSANDRA_TABLE_NAME_MAX => Ok(plain),
        1 => Err(format!(
            "table name `{plain}` has {} characters, more than the {CASSANDRA_TABLE_NAME_MAX} Scylla allows; \
             set `table_name_format_version: 2` to use shortened names",
            plain.len()
        )),
        2 if plain.len() <= CASSANDRA_TABLE_NAME_MAX => Ok(plain),
        2 => {
            let split = |s: &str| {
                let cut = s.char_indices().nth(5).map(|(i, _)| i).unwrap_or(s.len());
                (s[..cut].to_string(), s[cut..].to_string())
            };
            let (p_head, p_rest) = split(project);
            let (v_head, v_rest) = split(feature_view);
            let p_hash = base62(&Md5::digest(p_rest.as_bytes()).into());
            let v_hash = base62(&Md5::digest(v_rest.as_bytes()).into());
            Ok(format!(
                "{p_head}_{}_{v_head}_{}",
                prefix_chars(&p_hash, 17),
                prefix_chars(&v_hash, 18)
            ))
        }
        other => Err(format!(
            "table_name_format_version {other} is not supported (use 1 or 2)"
        )),
    }
}

/// Table name Feast's SQLite and Cassandra stores use for a view.
pub fn view_table_name(project: &str, feature_view: &str) -> String {
    format!("{project}_{feature_view}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cassandra_names() {
        assert_eq!(
            cassandra_table_name("demo", "users", 1).unwrap(),
            "demo_users"
        );
        let long_view = "a_feature_view_with_a_really_long_descriptive_name";
        let err = cassandra_table_name("demo", long_view, 1).unwrap_err();
        assert!(err.contains("table_name_format_version: 2"), "{err}");
        let v2 = cassandra_table_name("demo", long_view, 2).unwrap();
        assert!(v2.len() <= CASSANDRA_TABLE_NAME_MAX, "{v2}");
        assert!(v2.starts_with("demo_") && v2.contains("_a_fea_"), "{v2}");
        assert_eq!(v2, cassandra_table_name("demo", long_view, 2).unwrap());
        assert_eq!(base62(&[0; 16]), "0");
        assert_eq!(
            base62(&{
                let mut b = [0u8; 16];
                b[15] = 61;
                b
            }),
            "Z"
        );
        assert_eq!(
            base62(&{
                let mut b = [0u8; 16];
                b[15] = 62;
                b
            }),
            "10"
        );
    }
}
