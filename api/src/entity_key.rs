//! Feast's entity key serialization (`serialize_entity_key`), the bytes every
//! online store keys its rows by.
//!
//! v3 (default), all integers little-endian:
//! `u32 key_count`, then per join key sorted by code point `u32 2 (STRING)`,
//! `u32 len`, utf-8; then per value in the same order `u32 value_type`,
//! `u32 len`, payload. v2 (legacy) has no key count and no key lengths, so
//! reading it needs the join key names.

use serde::{Deserialize, Serialize};

use crate::proto::{EntityKey, Val, Value, ValueType, value_type_of};

/// `entity_key_serialization_version` of a Feast repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum SerializationVersion {
    /// Deprecated; still read and written for repos that never migrated.
    V2,
    #[default]
    V3,
}

impl TryFrom<u32> for SerializationVersion {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        match v {
            2 => Ok(Self::V2),
            3 => Ok(Self::V3),
            other => Err(format!(
                "entity_key_serialization_version {other} is not supported (use 3, or 2 for legacy data)"
            )),
        }
    }
}

impl From<SerializationVersion> for u32 {
    fn from(v: SerializationVersion) -> u32 {
        match v {
            SerializationVersion::V2 => 2,
            SerializationVersion::V3 => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityKeyError {
    #[error(
        "join key `{join_key}` has a {value_type} value; entity keys hold only BYTES, STRING, INT32, INT64 or UNIX_TIMESTAMP"
    )]
    UnsupportedValueType {
        join_key: String,
        value_type: &'static str,
    },
    #[error("join key `{join_key}` has no value")]
    MissingValue { join_key: String },
    #[error("entity key has {join_keys} join keys but {values} values")]
    CountMismatch { join_keys: usize, values: usize },
    #[error("entity key truncated at byte {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        offset: usize,
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("entity key at byte {offset}: {what} is not valid UTF-8")]
    BadUtf8 { offset: usize, what: &'static str },
    #[error("entity key at byte {offset}: join key has type {found}, expected 2 (STRING)")]
    BadKeyType { offset: usize, found: u32 },
    #[error("entity key at byte {offset}: value type {found} cannot be part of an entity key")]
    BadValueType { offset: usize, found: u32 },
    #[error(
        "entity key at byte {offset}: {value_type} value has length {len}, expected {expected}"
    )]
    BadLength {
        offset: usize,
        value_type: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("entity key declares {declared} join keys, more than its {size} bytes can hold")]
    ImplausibleKeyCount { declared: u32, size: usize },
    #[error("v2 entity key at byte {offset}: expected join key `{expected}`")]
    JoinKeyMismatch { offset: usize, expected: String },
}

fn key_payload(join_key: &str, value: &Value) -> Result<(ValueType, Vec<u8>), EntityKeyError> {
    let unsupported = |vt: ValueType| EntityKeyError::UnsupportedValueType {
        join_key: join_key.to_string(),
        value_type: vt.as_str_name(),
    };
    match &value.val {
        None => Err(EntityKeyError::MissingValue {
            join_key: join_key.to_string(),
        }),
        Some(Val::StringVal(s)) => Ok((ValueType::String, s.as_bytes().to_vec())),
        Some(Val::BytesVal(b)) => Ok((ValueType::Bytes, b.clone())),
        Some(Val::Int32Val(i)) => Ok((ValueType::Int32, i.to_le_bytes().to_vec())),
        Some(Val::Int64Val(i)) => Ok((ValueType::Int64, i.to_le_bytes().to_vec())),
        Some(Val::UnixTimestampVal(i)) => Ok((ValueType::UnixTimestamp, i.to_le_bytes().to_vec())),
        Some(other) => Err(unsupported(value_type_of(other))),
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths come from in-memory strings; Feast packs them as u32 too.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

/// Serializes join keys and their values the way Feast does, appending to
/// `out`. Pairs are sorted by join key (Unicode code point order, which is
/// UTF-8 byte order).
pub fn serialize_into(
    join_keys: &[&str],
    values: &[&Value],
    version: SerializationVersion,
    out: &mut Vec<u8>,
) -> Result<(), EntityKeyError> {
    if join_keys.len() != values.len() {
        return Err(EntityKeyError::CountMismatch {
            join_keys: join_keys.len(),
            values: values.len(),
        });
    }
    let mut order: Vec<usize> = (0..join_keys.len()).collect();
    order.sort_by(|a, b| join_keys[*a].cmp(join_keys[*b]));
    if version == SerializationVersion::V3 {
        put_u32(out, join_keys.len());
    }
    for &i in &order {
        out.extend_from_slice(&(ValueType::String as u32).to_le_bytes());
        let k = join_keys[i].as_bytes();
        if version == SerializationVersion::V3 {
            put_u32(out, k.len());
        }
        out.extend_from_slice(k);
    }
    for &i in &order {
        let (vt, payload) = key_payload(join_keys[i], values[i])?;
        out.extend_from_slice(&(vt as u32).to_le_bytes());
        put_u32(out, payload.len());
        out.extend_from_slice(&payload);
    }
    Ok(())
}

/// Serializes an [`EntityKey`] message the way Feast's `serialize_entity_key` does.
pub fn serialize(
    key: &EntityKey,
    version: SerializationVersion,
) -> Result<Vec<u8>, EntityKeyError> {
    let keys: Vec<&str> = key.join_keys.iter().map(String::as_str).collect();
    let values: Vec<&Value> = key.entity_values.iter().collect();
    let mut out = Vec::with_capacity(16 + 24 * keys.len());
    serialize_into(&keys, &values, version, &mut out)?;
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EntityKeyError> {
        let available = self.buf.len() - self.pos;
        if available < n {
            return Err(EntityKeyError::Truncated {
                offset: self.pos,
                what,
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EntityKeyError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn utf8(&self, bytes: &[u8], at: usize, what: &'static str) -> Result<String, EntityKeyError> {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| EntityKeyError::BadUtf8 { offset: at, what })
    }

    fn value(&mut self) -> Result<Value, EntityKeyError> {
        let at = self.pos;
        let vt = self.u32("value type")?;
        let len = self.u32("value length")? as usize;
        let payload_at = self.pos;
        let payload = self.take(len, "value")?;
        let fixed = |expected: usize, name: &'static str| {
            if len == expected {
                Ok(())
            } else {
                Err(EntityKeyError::BadLength {
                    offset: at,
                    value_type: name,
                    len,
                    expected,
                })
            }
        };
        let val = match ValueType::try_from(vt as i32) {
            Ok(ValueType::String) => {
                Val::StringVal(self.utf8(payload, payload_at, "string value")?)
            }
            Ok(ValueType::Bytes) => Val::BytesVal(payload.to_vec()),
            Ok(ValueType::Int32) => {
                fixed(4, "INT32")?;
                Val::Int32Val(i32::from_le_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            }
            Ok(t @ (ValueType::Int64 | ValueType::UnixTimestamp)) => {
                fixed(8, t.as_str_name())?;
                let mut b = [0u8; 8];
                b.copy_from_slice(payload);
                let n = i64::from_le_bytes(b);
                if t == ValueType::Int64 {
                    Val::Int64Val(n)
                } else {
                    Val::UnixTimestampVal(n)
                }
            }
            _ => {
                return Err(EntityKeyError::BadValueType {
                    offset: at,
                    found: vt,
                });
            }
        };
        Ok(Value { val: Some(val) })
    }

    fn values(&mut self, expected: usize) -> Result<Vec<Value>, EntityKeyError> {
        let mut values = Vec::with_capacity(expected);
        while !self.done() {
            values.push(self.value()?);
        }
        if values.len() != expected {
            return Err(EntityKeyError::CountMismatch {
                join_keys: expected,
                values: values.len(),
            });
        }
        Ok(values)
    }
}

/// Reads a v3 key. Join keys come back in their stored (sorted) order.
pub fn deserialize_v3(bytes: &[u8]) -> Result<EntityKey, EntityKeyError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let declared = r.u32("key count")?;
    // Each join key takes at least 8 bytes and each value 8 more.
    if declared as usize > bytes.len() / 16 {
        return Err(EntityKeyError::ImplausibleKeyCount {
            declared,
            size: bytes.len(),
        });
    }
    let mut join_keys = Vec::with_capacity(declared as usize);
    for _ in 0..declared {
        let at = r.pos;
        let kt = r.u32("join key type")?;
        if kt != ValueType::String as u32 {
            return Err(EntityKeyError::BadKeyType {
                offset: at,
                found: kt,
            });
        }
        let len = r.u32("join key length")? as usize;
        let name_at = r.pos;
        let name = r.take(len, "join key")?;
        join_keys.push(r.utf8(name, name_at, "join key")?);
    }
    let entity_values = r.values(join_keys.len())?;
    Ok(EntityKey {
        join_keys,
        entity_values,
    })
}

/// The length of the well-formed v3 entity key that `bytes` starts with,
/// or `None` if it does not start with one. Stores that append to the key
/// (Redis: `<entity key><project>`) use it to find where the key ends.
pub fn v3_prefix_len(bytes: &[u8]) -> Option<usize> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let declared = r.u32("key count").ok()?;
    if declared as usize > bytes.len() / 16 {
        return None;
    }
    for _ in 0..declared {
        if r.u32("join key type").ok()? != ValueType::String as u32 {
            return None;
        }
        let len = r.u32("join key length").ok()? as usize;
        let at = r.pos;
        let name = r.take(len, "join key").ok()?;
        r.utf8(name, at, "join key").ok()?;
    }
    for _ in 0..declared {
        r.value().ok()?;
    }
    Some(r.pos)
}

/// The length of the well-formed v2 entity key with `join_keys` (any
/// order) that `bytes` starts with, or `None`.
pub fn v2_prefix_len(bytes: &[u8], join_keys: &[&str]) -> Option<usize> {
    let mut sorted: Vec<&str> = join_keys.to_vec();
    sorted.sort_unstable();
    let mut r = Reader { buf: bytes, pos: 0 };
    for k in &sorted {
        if r.u32("join key type").ok()? != ValueType::String as u32 {
            return None;
        }
        if r.take(k.len(), "join key").ok()? != k.as_bytes() {
            return None;
        }
    }
    for _ in 0..sorted.len() {
        r.value().ok()?;
    }
    Some(r.pos)
}

/// Reads a legacy v2 key whose join keys are known (v2 does not store their
/// lengths). `join_keys` may be in any order.
pub fn deserialize_v2(bytes: &[u8], join_keys: &[&str]) -> Result<EntityKey, EntityKeyError> {
    let mut sorted: Vec<&str> = join_keys.to_vec();
    sorted.sort_unstable();
    let mut r = Reader { buf: bytes, pos: 0 };
    for k in &sorted {
        let at = r.pos;
        let kt = r.u32("join key type")?;
        if kt != ValueType::String as u32 {
            return Err(EntityKeyError::BadKeyType {
                offset: at,
                found: kt,
            });
        }
        let name_at = r.pos;
        let name = r
            .take(k.len(), "join key")
            .map_err(|_| EntityKeyError::JoinKeyMismatch {
                offset: name_at,
                expected: k.to_string(),
            })?;
        if name != k.as_bytes() {
            return Err(EntityKeyError::JoinKeyMismatch {
                offset: name_at,
                expected: k.to_string(),
            });
        }
    }
    let entity_values = r.values(sorted.len())?;
    Ok(EntityKey {
        join_keys: sorted.into_iter().map(str::to_string).collect(),
        entity_values,
    })
}

/// Reads a key of either version; v2 needs the join key names.
pub fn deserialize(
    bytes: &[u8],
    version: SerializationVersion,
    join_keys: &[&str],
) -> Result<EntityKey, EntityKeyError> {
    match version {
        SerializationVersion::V3 => deserialize_v3(bytes),
        SerializationVersion::V2 => deserialize_v2(bytes, join_keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(pairs: &[(&str, Val)]) -> EntityKey {
        EntityKey {
            join_keys: pairs.iter().map(|(k, _)| k.to_string()).collect(),
            entity_values: pairs
                .iter()
                .map(|(_, v)| Value {
                    val: Some(v.clone()),
                })
                .collect(),
        }
    }

    #[test]
    fn rejects_unsupported_value_types() {
        let k = key(&[("x", Val::DoubleVal(1.0))]);
        let err = serialize(&k, SerializationVersion::V3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "join key `x` has a DOUBLE value; entity keys hold only BYTES, STRING, INT32, INT64 or UNIX_TIMESTAMP"
        );
        let empty = EntityKey {
            join_keys: vec!["x".into()],
            entity_values: vec![Value::default()],
        };
        assert!(matches!(
            serialize(&empty, SerializationVersion::V3),
            Err(EntityKeyError::MissingValue { .. })
        ));
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let good = serialize(
            &key(&[("user_id", Val::Int64Val(7))]),
            SerializationVersion::V3,
        )
        .unwrap();
        for cut in 0..good.len() {
            assert!(
                deserialize_v3(&good[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut bad_len = good.clone();
        bad_len[23] = 4; // value length 8 -> 4
        assert!(deserialize_v3(&bad_len).is_err());
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            deserialize_v3(&huge),
            Err(EntityKeyError::ImplausibleKeyCount { .. })
        ));
        let s = serialize(
            &key(&[("k", Val::StringVal("ab".into()))]),
            SerializationVersion::V3,
        )
        .unwrap();
        let mut bad_utf8 = s.clone();
        let n = bad_utf8.len();
        bad_utf8[n - 1] = 0xff;
        assert!(matches!(
            deserialize_v3(&bad_utf8),
            Err(EntityKeyError::BadUtf8 { .. })
        ));
        let mut bad_type = s;
        bad_type[4] = 9;
        assert!(matches!(
            deserialize_v3(&bad_type),
            Err(EntityKeyError::BadKeyType { .. })
        ));
    }

    #[test]
    fn prefix_lengths_find_where_a_key_ends() {
        let k = key(&[
            ("user_id", Val::Int64Val(7)),
            ("m", Val::StringVal("x".into())),
        ]);
        for (version, len) in [
            (
                SerializationVersion::V3,
                v3_prefix_len as fn(&[u8]) -> Option<usize>,
            ),
            (SerializationVersion::V2, |b: &[u8]| {
                v2_prefix_len(b, &["user_id", "m"])
            }),
        ] {
            let bytes = serialize(&k, version).unwrap();
            let mut with_suffix = bytes.clone();
            with_suffix.extend_from_slice(b"project");
            assert_eq!(len(&bytes), Some(bytes.len()), "{version:?}");
            assert_eq!(len(&with_suffix), Some(bytes.len()), "{version:?}");
            for cut in 0..bytes.len() {
                assert_eq!(len(&bytes[..cut]), None, "{version:?} cut at {cut}");
            }
        }
        assert_eq!(v3_prefix_len(b"project"), None);
        assert_eq!(v3_prefix_len(&[]), None);
        let v2 = serialize(&k, SerializationVersion::V2).unwrap();
        assert_eq!(v2_prefix_len(&v2, &["user_id", "other"]), None);
    }

    #[test]
    fn v2_needs_matching_join_keys() {
        let k = key(&[("user_id", Val::Int64Val(7))]);
        let b = serialize(&k, SerializationVersion::V2).unwrap();
        assert_eq!(deserialize_v2(&b, &["user_id"]).unwrap(), k);
        assert!(deserialize_v2(&b, &["user"]).is_err());
        assert!(matches!(
            deserialize_v2(&b, &["driver_id"]),
            Err(EntityKeyError::JoinKeyMismatch { .. })
        ));
    }

    fn arb_val() -> impl Strategy<Value = Val> {
        prop_oneof![
            any::<i64>().prop_map(Val::Int64Val),
            any::<i32>().prop_map(Val::Int32Val),
            any::<i64>().prop_map(Val::UnixTimestampVal),
            ".{0,12}".prop_map(Val::StringVal),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Val::BytesVal),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_both_versions(
            pairs in proptest::collection::btree_map("[a-zA-Z_ü]{1,8}", arb_val(), 0..4)
        ) {
            let pairs: Vec<(&str, Val)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let k = key(&pairs);
            let v3 = serialize(&k, SerializationVersion::V3).unwrap();
            prop_assert_eq!(deserialize_v3(&v3).unwrap(), k.clone());
            prop_assert_eq!(v3_prefix_len(&v3), Some(v3.len()));
            let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
            let v2 = serialize(&k, SerializationVersion::V2).unwrap();
            prop_assert_eq!(v2_prefix_len(&v2, &names), Some(v2.len()));
            prop_assert_eq!(deserialize_v2(&v2, &names).unwrap(), k);
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = deserialize_v3(&bytes);
            let _ = deserialize_v2(&bytes, &["a", "b"]);
            // A prefix is never longer than the input.
            prop_assert!(v3_prefix_len(&bytes).is_none_or(|n| n <= bytes.len()));
            prop_assert!(v2_prefix_len(&bytes, &["a", "b"]).is_none_or(|n| n <= bytes.len()));
        }
    }
}
