"""Issue [M]: the quickstart's feature_store.yaml is a file Feast's own
commands accept (`feast apply`, `feast materialize`, `feast serve`), while
the proxy serves the same repo with its two named SQLite backends (the
names live in the top-level `hybrid_online_store` block Feast ignores)."""

import shutil
from datetime import datetime, timezone
from pathlib import Path

import hosutil as H

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def test_feast_commands_accept_the_quickstart_file(procs, tmp_path):
    repo = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, repo, ignore=shutil.ignore_patterns("data"))
    (repo / "data").mkdir()
    applied = H.run([H.FEAST_CLI, "apply"], cwd=repo)
    assert (repo / "data" / "registry.db").is_file(), applied.stdout
    H.run([H.FEAST_CLI, "materialize", "2024-01-01T00:00:00", "2024-01-02T00:00:00"], cwd=repo)
    feast = procs.feast_serve(repo)
    assert feast.get("/health").status_code == 200

    proxy = procs.proxy(["--repo", str(repo), "--feature-views", str(repo / "feature_views"), "--apply"])
    ready = proxy.get("/ready").json()
    assert ready["feature_views"] == 3 and sorted(ready["backends"]) == ["team_a", "team_b"], ready
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    r = proxy.post("/write-to-online-store", {"feature_view_name": "user_features", "df": {
        "user_id": [7], "age": [33], "country": ["fr"], "lifetime_value": [1.5],
        "recent_categories": [["a"]], "event_timestamp": [now]}})
    assert r.status_code == 200, r.text
    r = proxy.post("/get-online-features", {"features": ["user_features:age"], "entities": {"user_id": [7]}})
    assert r.status_code == 200 and H.columns(r.json())["age"]["values"] == [33], r.text
    assert H.tables(repo / "data" / "team_a.db") == ["quickstart_user_features"]
