//! Decoding of serialized entity keys (`api::entity_key`), v3 and v2.
//!
//! Input: byte 0 even -> the rest is a v3 key. Byte 0 odd -> v2: byte 1 is
//! the number of join key names (mod 4), then each name as one length byte
//! and that many bytes (lossy UTF-8), then the key. The replay test
//! `api/tests/fuzz_corpus.rs` reads the same layout.
//!
//! Properties: no panic; whatever decodes re-serializes (every value type
//! the decoder accepts is one the encoder writes), the result decodes to
//! the same pairs sorted by join key (the encoder sorts, the v3 decoder
//! keeps stored order), and when the stored order already was sorted the
//! bytes are identical (both formats are canonical: fixed-width integers,
//! no trailing bytes accepted).
#![no_main]

use api::entity_key::{SerializationVersion, deserialize_v2, deserialize_v3, serialize};
use api::keys;
use api::proto::EntityKey;
use libfuzzer_sys::fuzz_target;

fn sorted_pairs(k: &EntityKey) -> EntityKey {
    let mut pairs: Vec<_> = k.join_keys.iter().zip(&k.entity_values).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0)); // stable, like the encoder
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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(key) = deserialize_v3(rest) else {
            return;
        };
        let again =
            serialize(&key, SerializationVersion::V3).expect("decoded v3 key re-serializes");
        let back = deserialize_v3(&again).expect("re-serialized v3 key decodes");
        let sorted = sorted_pairs(&key);
        assert_eq!(back, sorted, "v3 round trip changed the pairs");
        if key.join_keys == sorted.join_keys {
            assert_eq!(
                again, rest,
                "sorted v3 key is not byte-identical after a round trip"
            );
        }
        // Derived backend keys take any bytes.
        let _ = keys::redis_key(&again, "p");
        let _ = keys::bigtable_row_key(&again, "v");
        let _ = keys::cassandra_entity_key(&again);
    } else {
        let (names, key_bytes) = v2_input(rest);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let Ok(key) = deserialize_v2(key_bytes, &names) else {
            return;
        };
        let again =
            serialize(&key, SerializationVersion::V2).expect("decoded v2 key re-serializes");
        assert_eq!(again, key_bytes, "v2 round trip is not byte-identical");
    }
});
