//! Feast feature dtypes (the `dtype` of a schema field) and their protobuf
//! value types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::proto::ValueType;

/// A feature or join-key dtype. Serialized in its canonical spelling
/// (`int64`, `array<string>`...); parsed from that, from Feast's Python
/// names (`Int64`, `Array(String)`, `UnixTimestamp`) and from ValueType
/// names (`INT64`, `STRING_LIST`, `DOUBLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    Bool,
    UnixTimestamp,
    Int32List,
    Int64List,
    Float32List,
    Float64List,
    StringList,
    BytesList,
    BoolList,
    UnixTimestampList,
}

/// A dtype name that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}` (expected one of {accepted})", accepted = Dtype::CANONICAL.join(", "))]
pub struct UnknownDtype(pub String);

const SCALARS: [(Dtype, Dtype, &str, &[&str]); 8] = [
    (Dtype::Int32, Dtype::Int32List, "int32", &["int32"]),
    (Dtype::Int64, Dtype::Int64List, "int64", &["int64"]),
    (
        Dtype::Float32,
        Dtype::Float32List,
        "float32",
        &["float32", "float"],
    ),
    (
        Dtype::Float64,
        Dtype::Float64List,
        "float64",
        &["float64", "double"],
    ),
    (
        Dtype::String,
        Dtype::StringList,
        "string",
        &["string", "str"],
    ),
    (Dtype::Bytes, Dtype::BytesList, "bytes", &["bytes"]),
    (Dtype::Bool, Dtype::BoolList, "bool", &["bool", "boolean"]),
    (
        Dtype::UnixTimestamp,
        Dtype::UnixTimestampList,
        "unix_timestamp",
        &["unix_timestamp", "unixtimestamp", "timestamp"],
    ),
];

impl Dtype {
    /// Canonical spellings, in declaration order.
    pub const CANONICAL: [&'static str; 16] = [
        "int32",
        "int64",
        "float32",
        "float64",
        "string",
        "bytes",
        "bool",
        "unix_timestamp",
        "array<int32>",
        "array<int64>",
        "array<float32>",
        "array<float64>",
        "array<string>",
        "array<bytes>",
        "array<bool>",
        "array<unix_timestamp>",
    ];

    pub const ALL: [Dtype; 16] = [
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Float32,
        Dtype::Float64,
        Dtype::String,
        Dtype::Bytes,
        Dtype::Bool,
        Dtype::UnixTimestamp,
        Dtype::Int32List,
        Dtype::Int64List,
        Dtype::Float32List,
        Dtype::Float64List,
        Dtype::StringList,
        Dtype::BytesList,
        Dtype::BoolList,
        Dtype::UnixTimestampList,
    ];

    pub fn as_str(self) -> &'static str {
        // ALL and CANONICAL are index-aligned.
        let i = Self::ALL.iter().position(|d| *d == self).unwrap_or(0);
        Self::CANONICAL[i]
    }

    /// The protobuf value type a value of this dtype is stored as.
    pub fn value_type(self) -> ValueType {
        match self {
            Dtype::Int32 => ValueType::Int32,
            Dtype::Int64 => ValueType::Int64,
            Dtype::Float32 => ValueType::Float,
            Dtype::Float64 => ValueType::Double,
            Dtype::String => ValueType::String,
            Dtype::Bytes => ValueType::Bytes,
            Dtype::Bool => ValueType::Bool,
            Dtype::UnixTimestamp => ValueType::UnixTimestamp,
            Dtype::Int32List => ValueType::Int32List,
            Dtype::Int64List => ValueType::Int64List,
            Dtype::Float32List => ValueType::FloatList,
            Dtype::Float64List => ValueType::DoubleList,
            Dtype::StringList => ValueType::StringList,
            Dtype::BytesList => ValueType::BytesList,
            Dtype::BoolList => ValueType::BoolList,
            Dtype::UnixTimestampList => ValueType::UnixTimestampList,
        }
    }

    /// The dtype of a protobuf value type, when it is one Feast features use.
    pub fn from_value_type(vt: ValueType) -> Option<Dtype> {
        Self::ALL.into_iter().find(|d| d.value_type() == vt)
    }

    /// Whether a join key may have this dtype (Feast's entity key encoding
    /// only handles these).
    pub fn allowed_in_entity_key(self) -> bool {
        matches!(
            self,
            Dtype::Bytes | Dtype::String | Dtype::Int32 | Dtype::Int64 | Dtype::UnixTimestamp
        )
    }

    pub fn is_list(self) -> bool {
        self.value_type() as i32 >= ValueType::BytesList as i32
    }
}

fn scalar_named(name: &str) -> Option<(Dtype, Dtype)> {
    SCALARS
        .iter()
        .find(|(_, _, _, names)| names.contains(&name))
        .map(|(s, l, _, _)| (*s, *l))
}

impl FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let unknown = || UnknownDtype(s.to_string());
        // array<x>, array(x), list<x>, list[x], x_list, x[]
        let inner = ["array<", "array(", "list<", "list[", "list("]
            .iter()
            .find_map(|p| norm.strip_prefix(p))
            .and_then(|rest| rest.strip_suffix(['>', ')', ']']))
            .or_else(|| norm.strip_suffix("_list"))
            .or_else(|| norm.strip_suffix("[]"));
        match inner {
            Some(inner) => scalar_named(inner).map(|(_, l)| l).ok_or_else(unknown),
            None => scalar_named(&norm).map(|(s, _)| s).ok_or_else(unknown),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Dtype {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Dtype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "crd")]
impl schemars::JsonSchema for Dtype {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Dtype".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Feast dtype: int32, int64, float32, float64, string, bytes, bool, unix_timestamp, or array<...> of one of them. Feast's Python names (Int64, Array(String)) are accepted too.",
            "pattern": "^\\s*([Aa]rray|[Ll]ist)?[<(\\[]?\\s*([A-Za-z_0-9]+)\\s*[>)\\]]?\\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(d.as_str().parse::<Dtype>(), Ok(d));
        }
    }

    #[test]
    fn feast_and_value_type_spellings() {
        let cases = [
            ("Int64", Dtype::Int64),
            ("INT64", Dtype::Int64),
            ("Float32", Dtype::Float32),
            ("FLOAT", Dtype::Float32),
            ("DOUBLE", Dtype::Float64),
            ("UnixTimestamp", Dtype::UnixTimestamp),
            ("Array(String)", Dtype::StringList),
            ("STRING_LIST", Dtype::StringList),
            ("list<int32>", Dtype::Int32List),
            ("Array(UnixTimestamp)", Dtype::UnixTimestampList),
            ("bool[]", Dtype::BoolList),
        ];
        for (s, d) in cases {
            assert_eq!(s.parse::<Dtype>(), Ok(d), "{s}");
        }
    }

    #[test]
    fn unknown_names_the_input() {
        let err = "int128".parse::<Dtype>().unwrap_err();
        assert!(err.to_string().contains("`int128`"), "{err}");
        assert!("array<array<int64>>".parse::<Dtype>().is_err());
        assert!("".parse::<Dtype>().is_err());
    }

    #[test]
    fn value_types_match_feast_enum_numbers() {
        assert_eq!(Dtype::Int64.value_type() as i32, 4);
        assert_eq!(Dtype::Float32.value_type() as i32, 6);
        assert_eq!(Dtype::Float64.value_type() as i32, 5);
        assert_eq!(Dtype::UnixTimestampList.value_type() as i32, 18);
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_value_type(d.value_type()), Some(d));
        }
    }
}
