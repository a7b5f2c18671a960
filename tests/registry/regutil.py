"""Helpers for the Feast registry smoke tests: make a tiny repo whose
feature_store.yaml names a given registry, run the real `feast apply` on it,
and read the registry back with Feast's own SDK."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Optional

import pandas as pd

VENV_BIN = Path(sys.executable).parent
FEAST_CLI = VENV_BIN / "feast"
TEMPLATE = Path(__file__).resolve().parent / "repo_template"

# What repo_template/features.py defines.
VIEWS = {"driver_stats", "driver_daily"}
SERVICES = {"driver_svc"}
ENTITIES = {"driver"}


def project_name(kind: str) -> str:
    """A project name unique to this run (the servers outlive one test)."""
    return f"reg_{kind}_{uuid.uuid4().hex[:8]}"


def make_repo(repo: Path, project: str, registry_yaml: str) -> Path:
    """A Feast repo in `repo`: features.py, its parquet source, and a
    feature_store.yaml whose `registry:` entry is `registry_yaml` (already
    indented YAML after `registry:`, a scalar or a mapping)."""
    repo.mkdir(parents=True)
    shutil.copy(TEMPLATE / "features.py", repo / "features.py")
    (repo / "data").mkdir()
    df = pd.DataFrame(
        {
            "driver_id": pd.Series([1001, 1002], dtype="int64"),
            "conv_rate": pd.Series([0.5, 0.25], dtype="float32"),
            "trips": pd.Series([3, 4], dtype="int64"),
            "event_timestamp": pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"], utc=True),
        }
    )
    df.to_parquet(repo / "data" / "driver.parquet")
    (repo / "feature_store.yaml").write_text(
        f"""project: {project}
provider: local
registry:{registry_yaml}
online_store:
  type: sqlite
  path: {repo / "data" / "online.db"}
offline_store:
  type: file
entity_key_serialization_version: 3
"""
    )
    return repo


def sub_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["TZ"] = "UTC"
    env.update(extra or {})
    return env


def feast(repo: Path, *args: str, env: Optional[Dict[str, str]] = None, timeout: float = 300) -> str:
    """Runs the real Feast CLI on `repo`; fails the test with its output
    when it exits non-zero. Returns stdout."""
    cmd = [str(FEAST_CLI), "-c", str(repo), *args]
    p = subprocess.run(cmd, cwd=str(repo), env=sub_env(env), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {p.returncode}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"
        )
    return p.stdout


def assert_registry_contents(repo: Path) -> None:
    """Reads the registry named by repo/feature_store.yaml with Feast's SDK
    (a fresh FeatureStore, so nothing comes from a cache filled by apply)
    and asserts it holds exactly what features.py defines."""
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo))
    views = fs.list_feature_views()
    assert {v.name for v in views} == VIEWS
    by_name = {v.name: v for v in views}
    assert by_name["driver_stats"].tags == {"team": "rides"}
    assert {f.name for f in by_name["driver_stats"].features} == {"conv_rate", "trips"}
    assert by_name["driver_daily"].tags == {"team": "billing"}
    assert {s.name for s in fs.list_feature_services()} == SERVICES
    assert {e.name for e in fs.list_entities()} == ENTITIES
