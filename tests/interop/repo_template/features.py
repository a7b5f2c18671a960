"""Feast definitions for the interop tests (copied into a temp repo and
applied with `feast apply`)."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)

users_src = FileSource(name="users_src", path="data/users.parquet", timestamp_field="event_timestamp")
um_src = FileSource(name="um_src", path="data/user_merchant.parquet", timestamp_field="event_timestamp")
gl_src = FileSource(name="gl_src", path="data/global.parquet", timestamp_field="event_timestamp")
um_push = PushSource(name="um_push", batch_source=um_src)

TTL = timedelta(days=36500)

user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=TTL,
    online=True,
    source=users_src,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="f_int32", dtype=Int32),
        Field(name="f_int64", dtype=Int64),
        Field(name="f_float32", dtype=Float32),
        Field(name="f_float64", dtype=Float64),
        Field(name="f_string", dtype=String),
        Field(name="f_bytes", dtype=Bytes),
        Field(name="f_bool", dtype=Bool),
        Field(name="f_ts", dtype=UnixTimestamp),
        Field(name="f_int64_list", dtype=Array(Int64)),
        Field(name="f_string_list", dtype=Array(String)),
        Field(name="f_float64_list", dtype=Array(Float64)),
        Field(name="f_int32_list", dtype=Array(Int32)),
        Field(name="f_bool_list", dtype=Array(Bool)),
        Field(name="f_float32_list", dtype=Array(Float32)),
        Field(name="f_bytes_list", dtype=Array(Bytes)),
        Field(name="f_ts_list", dtype=Array(UnixTimestamp)),
    ],
    tags={"owner": "interop"},
)

user_merchant = FeatureView(
    name="user_merchant",
    entities=[user, merchant],
    ttl=TTL,
    online=True,
    source=um_push,
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="merchant_id", dtype=String),
        Field(name="spend", dtype=Float64),
        Field(name="visits", dtype=Int32),
    ],
)

global_stats = FeatureView(
    name="global_stats",
    entities=[],
    ttl=TTL,
    online=True,
    source=gl_src,
    schema=[Field(name="total_users", dtype=Int64), Field(name="note", dtype=String)],
)

svc = FeatureService(
    name="svc",
    features=[user_features[["f_int64", "f_string"]], global_stats, user_merchant[["spend"]]],
)

svc_alias = FeatureService(
    name="svc_alias",
    features=[user_merchant.with_name("um_alias")[["spend"]], user_features[["f_bool", "f_bytes"]]],
)
