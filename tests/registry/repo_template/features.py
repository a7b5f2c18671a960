"""Feast definitions for the registry smoke tests (copied into a temp repo
and applied with `feast apply`): one entity, two feature views on one file
source, one feature service."""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)

driver_src = FileSource(
    name="driver_src",
    path=str(Path(__file__).resolve().parent / "data" / "driver.parquet"),
    timestamp_field="event_timestamp",
)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    online=True,
    source=driver_src,
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64)],
    tags={"team": "rides"},
)

driver_daily = FeatureView(
    name="driver_daily",
    entities=[driver],
    ttl=timedelta(days=7),
    online=True,
    source=driver_src,
    schema=[Field(name="trips", dtype=Int64)],
    tags={"team": "billing"},
)

driver_svc = FeatureService(name="driver_svc", features=[driver_stats, driver_daily[["trips"]]])
