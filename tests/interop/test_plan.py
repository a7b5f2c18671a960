"""`hos-proxy plan`: what `apply` would change, without changing anything.

A hybrid repo with a SQLite backend and a Cassandra backend (the real server
started by the test command). Two rounds:
1. fresh: plan lists every table to create and every route as new; nothing
   changes on the servers; apply; the tables that appeared are exactly the
   planned ones; a second plan is empty.
2. a view removed, a view moved to the other backend, a view added: plan
   --prune lists creates, drops and route changes; apply --prune; the
   tables that appeared and disappeared are exactly the planned ones.
"""

import json
import subprocess

import backendutil as B
import hosutil as H


def store_yaml(project, keyspace):
    host, port = B.cassandra_addr()
    return f"""\
project: {project}
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - {{name: local, type: sqlite, conf: {{path: local.db}}}}
    - {{name: cass, type: cassandra, conf: {{hosts: [{host}], port: {port}, keyspace: {keyspace}}}}}
"""


def view(path, name, team):
    B.write_yaml_view(path, name, team, [("user", "user_id", "int64")], [("val", "string")])


def observed(repo, keyspace):
    """Every table the two backends hold: {(backend, table)}."""
    sqlite_tables = H.tables(repo / "local.db") if (repo / "local.db").exists() else []
    return {("local", t) for t in sqlite_tables} | {("cass", t) for t in B.cassandra_tables(keyspace)}


def cmd(repo, *args, ok=(0,)):
    p = B.run_proxy_cmd(["--log-format", "text", *args, "--repo", repo, "--feature-views", repo / "views"], cwd=repo)
    assert p.returncode in ok, f"hos-proxy {args} exited {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}"
    return p


def planned(plan):
    creates = {(c["backend"], c["name"]) for c in plan["create"]}
    drops = {(c["backend"], c["name"]) for c in plan["drop"]}
    routes = {(r["view"], r["from"], r["to"]) for r in plan["routes"]}
    return creates, drops, routes


def test_plan_then_apply_matches(tmp_path):
    project = B.uniq("plan")
    keyspace = B.uniq("plan_ks")
    cleanup = B.Cleanup()
    cleanup.keyspace(keyspace)
    B.create_keyspace(keyspace)
    try:
        repo = tmp_path / "repo"
        (repo / "views").mkdir(parents=True)
        (repo / "feature_store.yaml").write_text(store_yaml(project, keyspace))
        view(repo / "views" / "a.yaml", "a_view", "local")
        view(repo / "views" / "b.yaml", "b_view", "cass")
        view(repo / "views" / "c.yaml", "c_view", "cass")

        # round 1: everything new
        before = observed(repo, keyspace)
        p = cmd(repo, "plan", "--output", "json", "--exit-code", ok=(2,))
        creates, drops, routes = planned(json.loads(p.stdout))
        assert creates == {("local", f"{project}_a_view"), ("cass", f"{project}_b_view"),
                           ("cass", f"{project}_c_view")}, creates
        assert drops == set()
        assert routes == {("a_view", None, "local"), ("b_view", None, "cass"), ("c_view", None, "cass")}, routes
        assert observed(repo, keyspace) == before, "plan changed the servers"
        text = cmd(repo, "plan").stdout
        assert f"+ create cassandra table {project}_b_view" in text, text
        assert "~ route b_view: (new) -> cass" in text, text

        cmd(repo, "apply")
        after = observed(repo, keyspace)
        assert after - before == creates and before - after == set(), (before, after)
        p = cmd(repo, "plan", "--output", "json", "--exit-code")
        assert planned(json.loads(p.stdout)) == (set(), set(), set()), p.stdout
        assert "No changes" in cmd(repo, "plan").stdout

        # round 2: remove a_view, move b_view to SQLite, add d_view on Cassandra
        (repo / "views" / "a.yaml").unlink()
        view(repo / "views" / "b.yaml", "b_view", "local")
        view(repo / "views" / "d.yaml", "d_view", "cass")
        before = observed(repo, keyspace)
        p = cmd(repo, "plan", "--prune", "--output", "json", "--exit-code", ok=(2,))
        creates, drops, routes = planned(json.loads(p.stdout))
        assert creates == {("local", f"{project}_b_view"), ("cass", f"{project}_d_view")}, creates
        assert drops == {("local", f"{project}_a_view"), ("cass", f"{project}_b_view")}, drops
        assert routes == {("a_view", "local", None), ("b_view", "cass", "local"), ("d_view", None, "cass")}, routes
        # without --prune nothing would be dropped
        p = cmd(repo, "plan", "--output", "json")
        assert planned(json.loads(p.stdout))[1] == set()
        assert observed(repo, keyspace) == before, "plan changed the servers"

        cmd(repo, "apply", "--prune")
        after = observed(repo, keyspace)
        assert after - before == creates, (after - before, creates)
        assert before - after == drops, (before - after, drops)
        p = cmd(repo, "plan", "--prune", "--output", "json", "--exit-code")
        assert planned(json.loads(p.stdout)) == (set(), set(), set()), p.stdout
    finally:
        cleanup.run()
