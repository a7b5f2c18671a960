"""Feast's `s3://` file registry on a local S3-compatible server (moto in
server mode, tests/scripts/s3-up.sh), through either endpoint override:
FEAST_S3_ENDPOINT_URL (read by Feast's S3RegistryStore) or AWS_ENDPOINT_URL
(botocore's own)."""

import boto3
import pytest

from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from regutil import VIEWS, assert_registry_contents, feast, make_repo, project_name

BUCKET = "feast-registry"


@pytest.mark.parametrize("endpoint_var", ["FEAST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"])
def test_s3_registry_on_moto(tmp_path, monkeypatch, s3_endpoint, endpoint_var):
    for name in ("FEAST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(endpoint_var, s3_endpoint)
    project = project_name("s3")
    key = f"{project}/registry.pb"
    repo = make_repo(tmp_path / "repo", project, f" s3://{BUCKET}/{key}\n")

    out = feast(repo, "apply")
    assert "Created feature view driver_daily" in out, out
    assert_registry_contents(repo)

    # The registry is one object in the server's bucket: Feast's Registry proto.
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    registry = RegistryProto()
    registry.ParseFromString(body)
    assert {fv.spec.name for fv in registry.feature_views if fv.spec.project == project} == VIEWS
