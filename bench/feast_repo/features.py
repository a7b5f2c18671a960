"""Feast definitions of the benchmark repo (bench/run.sh copies this file
into each generated repo and runs `feast apply` there).

- user_stats:   50 features (f00..f49; even: Float64, odd: Int64), the
                single-view scenarios' view; routed to backend `sqlite_a`
                in the hybrid repo.
- user_stats_b: 16 features (b00..b15), backend `sqlite_b` (a second
                SQLite file) in the hybrid repo.
- user_stats_c: 16 features (c00..c15), backend `redis` in the hybrid repo.

All keyed by the entity `user` (join key user_id, Int64). The `team` tag is
the hybrid repo's routing tag; the plain sqlite/redis repos ignore it.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)

TTL = timedelta(days=36500)


def fields(prefix, n):
    return [Field(name=f"{prefix}{i:02d}", dtype=Float64 if i % 2 == 0 else Int64) for i in range(n)]


def view(name, prefix, n, team):
    src = FileSource(name=f"{name}_src", path=f"data/{name}.parquet", timestamp_field="event_timestamp")
    return FeatureView(
        name=name,
        entities=[user],
        ttl=TTL,
        online=True,
        source=src,
        schema=[Field(name="user_id", dtype=Int64), *fields(prefix, n)],
        tags={"team": team},
    )


user_stats = view("user_stats", "f", 50, "sqlite_a")
user_stats_b = view("user_stats_b", "b", 16, "sqlite_b")
user_stats_c = view("user_stats_c", "c", 16, "redis")
