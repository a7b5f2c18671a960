"""[I] item 5, TokenReview against the real kube-apiserver (tests/run.sh runs
this file in its Kubernetes section, with KUBECONFIG set): reviewed tokens
must carry the proxy's audience, answers are reused only for
--auth-cache-seconds, and a revoked token stops working after that."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import hosutil as H
import secutil

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG (tests/run.sh k8s section)")

NS = "sec-tokenreview"
READ = "/get-online-features"


def kubectl(*args: str, check: bool = True) -> str:
    r = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout.strip()


def test_token_review_audiences_cache_and_revocation(tmp_path):
    # The namespace stays (without a namespace controller a deleted one
    # would stay Terminating); its service account is what the test uses.
    kubectl("create", "namespace", NS, check=False)
    kubectl("-n", NS, "delete", "serviceaccount", "trainer", "--ignore-not-found")
    kubectl("-n", NS, "create", "serviceaccount", "trainer")
    ours = kubectl("-n", NS, "create", "token", "trainer", "--audience", "hos-proxy")
    theirs = kubectl("-n", NS, "create", "token", "trainer", "--audience", "someone-else")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: tr\nprovider: local\nregistry: data/registry.db\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n")
    (repo / "views").mkdir()
    (repo / "views" / "v.yaml").write_text(
        "name: v\nentities:\n  - name: user\n    join_keys: [user_id]\n    dtype: int64\n"
        "schema:\n  - name: x\n    dtype: int64\nonline: true\n")
    (repo / "auth.yaml").write_text(
        f"principals:\n  - name: trainer\n    users: [\"system:serviceaccount:{NS}:trainer\"]\n")
    proxy = H.start_proxy(["--repo", str(repo), "--feature-views", str(repo / "views"), "--apply",
                           "--auth-config", str(repo / "auth.yaml"), "--auth-token-review",
                           "--auth-audience", "hos-proxy", "--auth-cache-seconds", "2"],
                          tmp_path / "logs", name="hos-proxy-tokenreview")
    body = {"features": ["v:x"], "entities": {"user_id": [1]}}
    try:
        r = proxy.post(READ, body, headers={"Authorization": f"Bearer {ours}"})
        assert r.status_code == 200, r.text[:300]
        r = proxy.post(READ, body, headers={"Authorization": f"Bearer {theirs}"})
        assert r.status_code == 401, f"a token for another audience was accepted: {r.status_code} {r.text[:300]}"
        # Revoke: the service account goes; the cached answer lasts at most
        # --auth-cache-seconds.
        kubectl("-n", NS, "delete", "serviceaccount", "trainer")
        revoked_at = time.monotonic()
        deadline = revoked_at + 15
        while time.monotonic() < deadline:
            r = proxy.post(READ, body, headers={"Authorization": f"Bearer {ours}"})
            if r.status_code == 401:
                break
            assert r.status_code == 200, r.text[:300]
            time.sleep(0.2)
        took = time.monotonic() - revoked_at
        secutil.report(f"TokenReview: wrong audience 401; a revoked token refused {took:.1f} s after revocation "
                       f"(--auth-cache-seconds 2, plus the API server's own 10 s token cache)")
        assert r.status_code == 401, "a revoked token still works"
        # Ours (2 s) plus kube-apiserver's own cache of authenticated
        # tokens (10 s), plus slack.
        assert took <= 15, took
    finally:
        proxy.stop()
