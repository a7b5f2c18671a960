"""Feast's `gs://` file registry on fake-gcs-server (tests/scripts/gcs-up.sh):
google-cloud-storage talks to it through STORAGE_EMULATOR_HOST."""

from urllib.parse import quote

import requests

from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from regutil import VIEWS, assert_registry_contents, feast, make_repo, project_name

BUCKET = "feast-registry"


def test_gcs_registry_on_fake_gcs_server(tmp_path, gcs_endpoint):
    project = project_name("gcs")
    key = f"{project}/registry.pb"
    repo = make_repo(tmp_path / "repo", project, f" gs://{BUCKET}/{key}\n")

    out = feast(repo, "apply")
    assert "Created feature view driver_stats" in out, out
    assert_registry_contents(repo)

    # The object, fetched over the JSON API without any SDK.
    r = requests.get(f"{gcs_endpoint}/storage/v1/b/{BUCKET}/o/{quote(key, safe='')}", params={"alt": "media"},
                     timeout=10)
    assert r.status_code == 200, r.text
    registry = RegistryProto()
    registry.ParseFromString(r.content)
    assert {fv.spec.name for fv in registry.feature_views if fv.spec.project == project} == VIEWS
