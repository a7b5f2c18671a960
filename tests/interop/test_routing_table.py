"""`hos-proxy routing-table --repo DIR` prints a routing table; serving that
file with --routing-table answers exactly like serving the repo."""

import subprocess

import hosutil as H
from test_feast_writes_proxy_reads import CASES


def test_generated_routing_table_serves_like_the_repo(proxy, proxy_bin, base_repo, procs, tmp_path):
    p = subprocess.run([str(proxy_bin), "routing-table", "--repo", str(base_repo)], capture_output=True, text=True,
                       env=H.sub_env(), timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0, f"routing-table failed ({p.returncode}): {p.stderr}"
    assert "schema_version: 1" in p.stdout, p.stdout[:500]
    # next to the repo's files: relative SQLite paths resolve against the repo
    table = base_repo / "routing-table.yaml"
    table.write_text(p.stdout)
    other_cwd = tmp_path / "elsewhere"
    other_cwd.mkdir()
    rt = procs.proxy(["--routing-table", str(table)], name="hos-proxy-rt", cwd=other_cwd)
    bodies = [{"features": f, "entities": e, "full_feature_names": full}
              for f, e, _ in CASES.values() for full in (False, True)]
    bodies.append({"feature_service": "svc_alias", "entities": {"user_id": [1001, 2], "merchant_id": ["m-1", "m-1"]},
                   "full_feature_names": True})
    for body in bodies:
        a, b = proxy.post("/get-online-features", body), rt.post("/get-online-features", body)
        assert a.status_code == b.status_code == 200, (body, a.status_code, a.text[:300], b.status_code, b.text[:300])
        assert a.json() == b.json(), f"{body}: --repo and --routing-table answers differ"
