//! Feast's protobuf messages, generated at build time from `api/proto/`.

#[allow(clippy::all, missing_docs)]
pub mod feast {
    pub mod types {
        include!(concat!(env!("OUT_DIR"), "/feast.types.rs"));
    }
    pub mod serving {
        include!(concat!(env!("OUT_DIR"), "/feast.serving.rs"));
    }
    pub mod core {
        include!(concat!(env!("OUT_DIR"), "/feast.core.rs"));
    }
    pub mod registry {
        include!(concat!(env!("OUT_DIR"), "/feast.registry.rs"));
    }
}

pub use feast::serving::FieldStatus;
pub use feast::types::value::Val;
pub use feast::types::value_type::Enum as ValueType;
pub use feast::types::{EntityKey, Value};

/// The value type a set `Val` carries, for messages and type checks.
pub fn value_type_of(val: &Val) -> ValueType {
    match val {
        Val::BytesVal(_) => ValueType::Bytes,
        Val::StringVal(_) => ValueType::String,
        Val::Int32Val(_) => ValueType::Int32,
        Val::Int64Val(_) => ValueType::Int64,
        Val::DoubleVal(_) => ValueType::Double,
        Val::FloatVal(_) => ValueType::Float,
        Val::BoolVal(_) => ValueType::Bool,
        Val::UnixTimestampVal(_) => ValueType::UnixTimestamp,
        Val::BytesListVal(_) => ValueType::BytesList,
        Val::StringListVal(_) => ValueType::StringList,
        Val::Int32ListVal(_) => ValueType::Int32List,
        Val::Int64ListVal(_) => ValueType::Int64List,
        Val::DoubleListVal(_) => ValueType::DoubleList,
        Val::FloatListVal(_) => ValueType::FloatList,
        Val::BoolListVal(_) => ValueType::BoolList,
        Val::UnixTimestampListVal(_) => ValueType::UnixTimestampList,
        Val::NullVal(_) => ValueType::Null,
        Val::MapVal(_) => ValueType::Map,
        Val::MapListVal(_) => ValueType::MapList,
        Val::BytesSetVal(_) => ValueType::BytesSet,
        Val::StringSetVal(_) => ValueType::StringSet,
        Val::Int32SetVal(_) => ValueType::Int32Set,
        Val::Int64SetVal(_) => ValueType::Int64Set,
        Val::DoubleSetVal(_) => ValueType::DoubleSet,
        Val::FloatSetVal(_) => ValueType::FloatSet,
        Val::BoolSetVal(_) => ValueType::BoolSet,
        Val::UnixTimestampSetVal(_) => ValueType::UnixTimestampSet,
        Val::UuidVal(_) => ValueType::Uuid,
        Val::TimeUuidVal(_) => ValueType::TimeUuid,
        Val::UuidListVal(_) => ValueType::UuidList,
        Val::TimeUuidListVal(_) => ValueType::TimeUuidList,
    }
}
