//! Feature values in the JSON of Feast's feature server: how `feast serve`
//! prints a `Value`, how request JSON becomes a `Value` of a known dtype,
//! and the timestamp text both sides use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Number, Value as Json};

use crate::dtype::Dtype;
use crate::proto::Val;
use crate::proto::Value;
use crate::proto::feast::types as t;

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        // Feast prints non-finite floats as these strings.
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

fn arr<T>(v: &[T], f: impl Fn(&T) -> Json) -> Json {
    Json::Array(v.iter().map(f).collect())
}

/// A `Value` as `feast serve` prints it: int64 as exact numbers, float32
/// widened to double, bytes as padded base64, UNIX_TIMESTAMP as epoch
/// seconds, lists as arrays, unset as `null`.
pub fn value_to_json(v: &Value) -> Json {
    let Some(val) = &v.val else { return Json::Null };
    match val {
        Val::BytesVal(b) => Json::String(B64.encode(b)),
        Val::StringVal(s) | Val::UuidVal(s) | Val::TimeUuidVal(s) => Json::String(s.clone()),
        Val::Int32Val(i) => Json::from(*i),
        Val::Int64Val(i) | Val::UnixTimestampVal(i) => Json::from(*i),
        Val::DoubleVal(d) => float(*d),
        Val::FloatVal(f) => float(f64::from(*f)),
        Val::BoolVal(b) => Json::Bool(*b),
        Val::BytesListVal(l) => arr(&l.val, |b| Json::String(B64.encode(b))),
        Val::StringListVal(l) | Val::UuidListVal(l) | Val::TimeUuidListVal(l) => {
            arr(&l.val, |s| Json::String(s.clone()))
        }
        Val::Int32ListVal(l) => arr(&l.val, |i| Json::from(*i)),
        Val::Int64ListVal(l) | Val::UnixTimestampListVal(l) => arr(&l.val, |i| Json::from(*i)),
        Val::DoubleListVal(l) => arr(&l.val, |d| float(*d)),
        Val::FloatListVal(l) => arr(&l.val, |f| float(f64::from(*f))),
        Val::BoolListVal(l) => arr(&l.val, |b| Json::Bool(*b)),
        Val::NullVal(_) => Json::Null,
        Val::MapVal(m) => map_to_json(m),
        Val::MapListVal(l) => arr(&l.val, map_to_json),
        Val::BytesSetVal(s) => arr(&s.val, |b| Json::String(B64.encode(b))),
        Val::StringSetVal(s) => arr(&s.val, |x| Json::String(x.clone())),
        Val::Int32SetVal(s) => arr(&s.val, |i| Json::from(*i)),
        Val::Int64SetVal(s) | Val::UnixTimestampSetVal(s) => arr(&s.val, |i| Json::from(*i)),
        Val::DoubleSetVal(s) => arr(&s.val, |d| float(*d)),
        Val::FloatSetVal(s) => arr(&s.val, |f| float(f64::from(*f))),
        Val::BoolSetVal(s) => arr(&s.val, |b| Json::Bool(*b)),
    }
}

fn map_to_json(m: &t::Map) -> Json {
    let mut keys: Vec<&String> = m.val.keys().collect();
    keys.sort();
    Json::Object(
        keys.into_iter()
            .map(|k| (k.clone(), value_to_json(&m.val[k])))
            .collect(),
    )
}

/// Writes `value_to_json(v)` as JSON text into `out`, byte for byte what
/// `serde_json` would print for that tree, without building it: the
/// response path writes every cell this way.
pub fn write_value_json(v: &Value, out: &mut Vec<u8>) {
    let Some(val) = &v.val else {
        out.extend_from_slice(b"null");
        return;
    };
    match val {
        Val::BytesVal(b) => write_b64(b, out),
        Val::StringVal(s) | Val::UuidVal(s) | Val::TimeUuidVal(s) => write_str(s, out),
        Val::Int32Val(i) => write_int(i64::from(*i), out),
        Val::Int64Val(i) | Val::UnixTimestampVal(i) => write_int(*i, out),
        Val::DoubleVal(d) => write_float(*d, out),
        Val::FloatVal(f) => write_float(f64::from(*f), out),
        Val::BoolVal(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::BytesListVal(l) => write_arr(&l.val, out, |b, o| write_b64(b, o)),
        Val::StringListVal(l) | Val::UuidListVal(l) | Val::TimeUuidListVal(l) => {
            write_arr(&l.val, out, |s, o| write_str(s, o))
        }
        Val::Int32ListVal(l) => write_arr(&l.val, out, |i, o| write_int(i64::from(*i), o)),
        Val::Int64ListVal(l) | Val::UnixTimestampListVal(l) => {
            write_arr(&l.val, out, |i, o| write_int(*i, o))
        }
        Val::DoubleListVal(l) => write_arr(&l.val, out, |d, o| write_float(*d, o)),
        Val::FloatListVal(l) => write_arr(&l.val, out, |f, o| write_float(f64::from(*f), o)),
        Val::BoolListVal(l) => write_arr(&l.val, out, |b, o| {
            o.extend_from_slice(if *b { b"true" } else { b"false" })
        }),
        Val::NullVal(_) => out.extend_from_slice(b"null"),
        Val::MapVal(m) => write_map(m, out),
        Val::MapListVal(l) => write_arr(&l.val, out, write_map),
        Val::BytesSetVal(s) => write_arr(&s.val, out, |b, o| write_b64(b, o)),
        Val::StringSetVal(s) => write_arr(&s.val, out, |x, o| write_str(x, o)),
        Val::Int32SetVal(s) => write_arr(&s.val, out, |i, o| write_int(i64::from(*i), o)),
        Val::Int64SetVal(s) | Val::UnixTimestampSetVal(s) => {
            write_arr(&s.val, out, |i, o| write_int(*i, o))
        }
        Val::DoubleSetVal(s) => write_arr(&s.val, out, |d, o| write_float(*d, o)),
        Val::FloatSetVal(s) => write_arr(&s.val, out, |f, o| write_float(f64::from(*f), o)),
        Val::BoolSetVal(s) => write_arr(&s.val, out, |b, o| {
            o.extend_from_slice(if *b { b"true" } else { b"false" })
        }),
    }
}

/// A JSON string literal (serde_json's escaping).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_int(i: i64, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, &i);
}

fn write_float(f: f64, out: &mut Vec<u8>) {
    match Number::from_f64(f) {
        Some(n) => {
            let _ = serde_json::to_writer(&mut *out, &n);
        }
        None if f.is_nan() => out.extend_from_slice(b"\"NaN\""),
        None if f > 0.0 => out.extend_from_slice(b"\"Infinity\""),
        None => out.extend_from_slice(b"\"-Infinity\""),
    }
}

fn write_b64(b: &[u8], out: &mut Vec<u8>) {
    // Base64 needs no escaping.
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
    let n = B64.encode_slice(b, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}

fn write_arr<T>(items: &[T], out: &mut Vec<u8>, f: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        f(x, out);
    }
    out.push(b']');
}

fn write_map(m: &t::Map, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = m.val.keys().collect();
    keys.sort();
    out.push(b'{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_value_json(&m.val[k], out);
    }
    out.push(b'}');
}

fn kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn expected(d: Dtype, j: &Json) -> String {
    format!("expected {d}, got {} ({})", kind(j), truncate(j))
}

/// `j` as JSON text, cut to 40 characters (with `…`) for error messages.
pub fn truncate(j: &Json) -> String {
    let s = j.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn as_i64(j: &Json) -> Option<i64> {
    match j {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        // Feast coerces numeric strings for integer keys.
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn scalar(d: Dtype, j: &Json) -> Result<Val, String> {
    let err = || expected(d, j);
    Ok(match d {
        Dtype::Int32 => Val::Int32Val(
            as_i64(j)
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(err)?,
        ),
        Dtype::Int64 => Val::Int64Val(as_i64(j).ok_or_else(err)?),
        Dtype::Float32 => Val::FloatVal(as_f64(j).ok_or_else(err)? as f32),
        Dtype::Float64 => Val::DoubleVal(as_f64(j).ok_or_else(err)?),
        Dtype::String => match j {
            Json::String(s) => Val::StringVal(s.clone()),
            // Feast stringifies integers given for string keys.
            Json::Number(n) if n.is_i64() || n.is_u64() => Val::StringVal(n.to_string()),
            _ => return Err(err()),
        },
        Dtype::Bytes => match j {
            Json::String(s) => Val::BytesVal(
                B64.decode(s.as_bytes())
                    .or_else(|_| {
                        base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.as_bytes())
                    })
                    .map_err(|_| format!("expected base64 text for {d}, got {}", truncate(j)))?,
            ),
            _ => return Err(err()),
        },
        Dtype::Bool => match j {
            Json::Bool(b) => Val::BoolVal(*b),
            _ => return Err(err()),
        },
        Dtype::UnixTimestamp => Val::UnixTimestampVal(match j {
            Json::String(s) => parse_timestamp(s).map(|(secs, _)| secs).ok_or_else(err)?,
            other => as_i64(other).ok_or_else(err)?,
        }),
        _ => return Err(err()),
    })
}

fn list<T>(items: &[Json], d: Dtype, f: impl Fn(&Json) -> Option<T>) -> Result<Vec<T>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, j)| f(j).ok_or_else(|| format!("item {i}: {}", expected(d, j))))
        .collect()
}

/// Converts request JSON to a `Value` of dtype `d`; `null` is an unset value.
/// The error says what was expected and what came.
pub fn json_to_value(j: &Json, d: Dtype) -> Result<Value, String> {
    if j.is_null() {
        return Ok(Value::default());
    }
    if !d.is_list() {
        return scalar(d, j).map(|v| Value { val: Some(v) });
    }
    let Json::Array(items) = j else {
        return Err(expected(d, j));
    };
    let val = match d {
        Dtype::Int32List => Val::Int32ListVal(t::Int32List {
            val: list(items, Dtype::Int32, |x| {
                as_i64(x).and_then(|i| i32::try_from(i).ok())
            })?,
        }),
        Dtype::Int64List => Val::Int64ListVal(t::Int64List {
            val: list(items, Dtype::Int64, as_i64)?,
        }),
        Dtype::UnixTimestampList => Val::UnixTimestampListVal(t::Int64List {
            val: list(items, Dtype::UnixTimestamp, as_i64)?,
        }),
        Dtype::Float32List => Val::FloatListVal(t::FloatList {
            val: list(items, Dtype::Float32, |x| as_f64(x).map(|f| f as f32))?,
        }),
        Dtype::Float64List => Val::DoubleListVal(t::DoubleList {
            val: list(items, Dtype::Float64, as_f64)?,
        }),
        Dtype::StringList => Val::StringListVal(t::StringList {
            val: list(items, Dtype::String, |x| x.as_str().map(str::to_string))?,
        }),
        Dtype::BoolList => Val::BoolListVal(t::BoolList {
            val: list(items, Dtype::Bool, Json::as_bool)?,
        }),
        Dtype::BytesList => Val::BytesListVal(t::BytesList {
            val: list(items, Dtype::Bytes, |x| {
                x.as_str().and_then(|s| B64.decode(s).ok())
            })?,
        }),
        _ => return Err(expected(d, j)),
    };
    Ok(Value { val: Some(val) })
}

/// A join-key value whose dtype is not declared: integers become INT64 and
/// text STRING, as Feast infers them.
pub fn infer_key_value(j: &Json) -> Result<Value, String> {
    let val = match j {
        Json::String(s) => Val::StringVal(s.clone()),
        Json::Number(_) => Val::Int64Val(
            as_i64(j)
                .ok_or_else(|| format!("expected an integer or a string, got {}", truncate(j)))?,
        ),
        other => {
            return Err(format!(
                "expected an integer or a string, got {} ({})",
                kind(other),
                truncate(other)
            ));
        }
    };
    Ok(Value { val: Some(val) })
}

/// Parses a timestamp as Feast's `pd.to_datetime` would for the forms
/// clients send: RFC 3339, naive ISO 8601 (taken as UTC, `T` or space),
/// a date alone; returns (epoch seconds, nanoseconds).
pub fn parse_timestamp(s: &str) -> Option<(i64, u32)> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some((dt.timestamp(), dt.timestamp_subsec_nanos()));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            let dt = n.and_utc();
            return Some((dt.timestamp(), dt.timestamp_subsec_nanos()));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some((dt.timestamp(), dt.timestamp_subsec_nanos()));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| (n.and_utc().timestamp(), 0))
}

/// Formats an event timestamp as Feast's feature server does:
/// `YYYY-MM-DDTHH:MM:SSZ`, with `.mmm`, `.uuuuuu` or `.nnnnnnnnn` only
/// when the fraction is non-zero.
///
/// Always RFC 3339: a stored time outside years 0001..=9999 (which the
/// proxy refuses to write, but another writer may have stored) is shown
/// as the nearest end of that range.
pub fn format_timestamp(secs: i64, nanos: u32) -> String {
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    const FIRST: i64 = -62_135_596_800;
    const LAST: i64 = 253_402_300_799;
    if secs > LAST {
        return "9999-12-31T23:59:59Z".to_string();
    }
    if secs < FIRST {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let Some(dt) = DateTime::<Utc>::from_timestamp(secs, nanos.min(999_999_999)) else {
        return "1970-01-01T00:00:00Z".to_string();
    };
    let base = dt.format("%Y-%m-%dT%H:%M:%S");
    match nanos {
        0 => format!("{base}Z"),
        n if n % 1_000_000 == 0 => format!("{base}.{:03}Z", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{base}.{:06}Z", n / 1_000),
        n => format!("{base}.{n:09}Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_feast_serve() {
        let v = |val| Value { val: Some(val) };
        assert_eq!(
            value_to_json(&v(Val::FloatVal(0.99))),
            json!(0.9900000095367432)
        );
        assert_eq!(
            value_to_json(&v(Val::Int64Val(9007199254740993))).to_string(),
            "9007199254740993"
        );
        assert_eq!(
            value_to_json(&v(Val::BytesVal(vec![0, 1, 255]))),
            json!("AAH/")
        );
        assert_eq!(value_to_json(&v(Val::DoubleVal(f64::NAN))), json!("NaN"));
        assert_eq!(
            value_to_json(&v(Val::DoubleVal(f64::NEG_INFINITY))),
            json!("-Infinity")
        );
        assert_eq!(value_to_json(&Value::default()), Json::Null);
    }

    #[test]
    fn parses_request_values() {
        assert_eq!(
            json_to_value(&json!("1001"), Dtype::Int64).unwrap().val,
            Some(Val::Int64Val(1001))
        );
        assert_eq!(
            json_to_value(&json!(7), Dtype::String).unwrap().val,
            Some(Val::StringVal("7".into()))
        );
        let e = json_to_value(&json!("abc"), Dtype::Int64).unwrap_err();
        assert_eq!(e, "expected int64, got a string (\"abc\")");
        assert!(json_to_value(&json!(1.5), Dtype::Int64).is_err());
        assert!(json_to_value(&json!(3_000_000_000i64), Dtype::Int32).is_err());
        let e = json_to_value(&json!([1, "x"]), Dtype::Int64List).unwrap_err();
        assert!(e.starts_with("item 1:"), "{e}");
        assert_eq!(
            json_to_value(&json!("AAH/"), Dtype::Bytes).unwrap().val,
            Some(Val::BytesVal(vec![0, 1, 255]))
        );
        assert_eq!(
            json_to_value(&Json::Null, Dtype::Bool).unwrap(),
            Value::default()
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("2024-05-01T12:34:56Z"),
            Some((1714566896, 0))
        );
        assert_eq!(
            parse_timestamp("2024-05-01T14:34:56+02:00"),
            Some((1714566896, 0))
        );
        assert_eq!(
            parse_timestamp("2024-05-01 12:34:56.789123"),
            Some((1714566896, 789_123_000))
        );
        assert_eq!(parse_timestamp("2024-05-01"), Some((1714521600, 0)));
        assert_eq!(parse_timestamp("not-a-date"), None);
        assert_eq!(format_timestamp(1714566896, 0), "2024-05-01T12:34:56Z");
        assert_eq!(
            format_timestamp(1714566896, 789_000_000),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(
            format_timestamp(1714566896, 789_123_000),
            "2024-05-01T12:34:56.789123Z"
        );
        assert_eq!(format_timestamp(0, 0), "1970-01-01T00:00:00Z");
        // Out of RFC 3339's years: the nearest end, never `+200000-...`.
        assert_eq!(
            format_timestamp(6_249_223_902_208, 0),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(format_timestamp(i64::MAX, 0), "9999-12-31T23:59:59Z");
        assert_eq!(format_timestamp(i64::MIN, 0), "0001-01-01T00:00:00Z");
        assert_eq!(format_timestamp(253_402_300_799, 0), "9999-12-31T23:59:59Z");
    }

    fn arb_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.1),
        ]
    }

    fn arb_scalar() -> impl proptest::strategy::Strategy<Value = Val> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        let l = || 0..4usize;
        prop_oneof![
            any::<i64>().prop_map(Val::Int64Val),
            any::<i32>().prop_map(Val::Int32Val),
            any::<i64>().prop_map(Val::UnixTimestampVal),
            arb_f64().prop_map(Val::DoubleVal),
            any::<f32>().prop_map(Val::FloatVal),
            any::<bool>().prop_map(Val::BoolVal),
            ".{0,12}".prop_map(Val::StringVal),
            "[\\x00-\\x1f\"\\\\\u{7f}-\u{10ffff}]{0,6}".prop_map(Val::StringVal),
            vec(any::<u8>(), 0..12).prop_map(Val::BytesVal),
            vec(any::<i64>(), l()).prop_map(|val| Val::Int64ListVal(t::Int64List { val })),
            vec(any::<i32>(), l()).prop_map(|val| Val::Int32ListVal(t::Int32List { val })),
            vec(arb_f64(), l()).prop_map(|val| Val::DoubleListVal(t::DoubleList { val })),
            vec(any::<f32>(), l()).prop_map(|val| Val::FloatListVal(t::FloatList { val })),
            vec(any::<bool>(), l()).prop_map(|val| Val::BoolListVal(t::BoolList { val })),
            vec(".{0,6}", l()).prop_map(|val| Val::StringListVal(t::StringList { val })),
            vec(vec(any::<u8>(), 0..6), l())
                .prop_map(|val| Val::BytesListVal(t::BytesList { val })),
            any::<i32>().prop_map(Val::NullVal),
        ]
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let scalar = || arb_scalar().prop_map(|v| Value { val: Some(v) });
        prop_oneof![
            4 => scalar(),
            1 => Just(Value { val: None }),
            1 => proptest::collection::btree_map(".{0,5}", scalar(), 0..4).prop_map(|m| Value {
                val: Some(Val::MapVal(t::Map { val: m.into_iter().collect() })),
            }),
        ]
    }

    proptest::proptest! {
        /// The streaming writer prints exactly what serde_json prints for
        /// the `value_to_json` tree.
        #[test]
        fn write_value_json_is_value_to_json(v in arb_value()) {
            let mut out = Vec::new();
            write_value_json(&v, &mut out);
            let want = serde_json::to_vec(&value_to_json(&v)).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(want).unwrap());
        }
    }
}
