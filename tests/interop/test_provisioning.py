"""`hos-proxy apply` and `hos-proxy teardown` on real servers.

A hybrid repo with a Bigtable (bt), a Cassandra (cs) and a Redis (rd)
backend and views of one, two and no entities on each:
- `apply` creates Feast's storage (Cassandra: one table per view, Feast's
  columns; Bigtable: one table per entity set with family `features`, max 2
  versions; Redis: nothing); a second `apply` leaves every server exactly as
  the first left it;
- `teardown --view X` drops exactly X's storage (a Bigtable table shared with
  a remaining view stays), `teardown` alone drops every view's storage.
"""

import pytest

import backendutil as B
import hosutil as H

pytestmark = pytest.mark.filterwarnings("ignore:Connecting to Bigtable emulator:RuntimeWarning")

USER = [("user", "user_id", "int64")]
MERCHANT = [("merchant", "merchant_id", "string")]
FEATS = [("val", "string"), ("n", "int64")]

VIEWS = {
    # name: (backend, entities)
    "cs_one": ("cs", USER),
    "cs_two": ("cs", USER + MERCHANT),
    "cs_el": ("cs", []),
    "bt_one": ("bt", USER),
    "bt_two": ("bt", USER + MERCHANT),
    "bt_three": ("bt", USER),  # shares Bigtable table <project>.user with bt_one
    "bt_el": ("bt", []),
    "rd_one": ("rd", USER),
    "rd_two": ("rd", MERCHANT),
}

STORE = """\
project: {project}
provider: local
online_store:
  type: hybrid
  routing_tag: team
  online_stores:
    - type: bigtable
      name: bt
      conf:
        project_id: {bt_project}
        instance: {instance}
    - type: cassandra
      name: cs
      conf:
        hosts: [{host}]
        port: {port}
        keyspace: {keyspace}
{creds}    - type: redis
      name: rd
      conf:
        connection_string: "{redis}"
entity_key_serialization_version: 3
"""

# Feast's CassandraOnlineStore table (system_schema.columns: kind, type, position)
FEAST_CASSANDRA_COLUMNS = {
    "entity_key": ("partition_key", "text", 0),
    "feature_name": ("clustering", "text", 0),
    "value": ("regular", "blob", -1),
    "event_ts": ("regular", "timestamp", -1),
    "created_ts": ("regular", "timestamp", -1),
}


class Setup:
    def __init__(self, tmp_path):
        host, port = B.cassandra_addr()
        B.bigtable_host()
        creds = B.cassandra_creds()
        self.project = B.uniq("prov_")
        self.instance = B.uniq("prov-")
        self.keyspace = B.uniq("prov_ks_")
        self.cleanup = B.Cleanup()
        B.create_keyspace(self.keyspace)
        self.cleanup.keyspace(self.keyspace)
        self.cleanup.bigtable(self.instance)
        self.cleanup.redis(self.project)
        self.repo = tmp_path / "prov"
        (self.repo / "views").mkdir(parents=True)
        (self.repo / "feature_store.yaml").write_text(STORE.format(
            project=self.project, bt_project=B.BT_PROJECT, instance=self.instance, host=host, port=port,
            keyspace=self.keyspace, redis=B.redis_connection_string(),
            creds=f"        username: {creds[0]}\n        password: {creds[1]}\n" if creds else ""))
        for name, (team, ents) in VIEWS.items():
            B.write_yaml_view(self.repo / "views" / f"{name}.yaml", name, team, ents, FEATS)
        self.src = ["--repo", self.repo, "--feature-views", self.repo / "views"]

    def cmd(self, *args):
        p = B.run_proxy_cmd(list(args), cwd=self.repo)
        assert p.returncode == 0, (f"hos-proxy {' '.join(map(str, args))} exited {p.returncode}\n"
                                   f"--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr[-4000:]}")
        return p.stdout

    def cs_table(self, view):
        return f"{self.project}_{view}"

    def state(self):
        """Everything the servers hold for this project."""
        cs = {t: B.cassandra_columns(self.keyspace, t) for t in B.cassandra_tables(self.keyspace)}
        bt = {t: B.bigtable_families(self.instance, t) for t in B.bigtable_tables(self.instance)}
        rd = {k: B.redis_hash(k) for k in B.redis_keys(self.project)}
        return {"cassandra": cs, "bigtable": bt, "redis": rd}


def test_apply_twice_is_idempotent(tmp_path):
    s = Setup(tmp_path)
    try:
        assert s.state() == {"cassandra": {}, "bigtable": {}, "redis": {}}, "test bug: servers not empty"
        out1 = s.cmd("apply", *s.src)
        first = s.state()
        p = s.project
        want_cs = {s.cs_table(v) for v in ("cs_one", "cs_two", "cs_el")}
        assert set(first["cassandra"]) == want_cs, f"Cassandra tables after apply: {sorted(first['cassandra'])}"
        for t, cols in first["cassandra"].items():
            assert cols == FEAST_CASSANDRA_COLUMNS, f"columns of {s.keyspace}.{t}: {cols}"
        want_bt = {f"{p}.user", f"{p}.merchant-user", f"{p}.__dummy"}
        assert set(first["bigtable"]) == want_bt, f"Bigtable tables after apply: {sorted(first['bigtable'])}"
        for t, fams in first["bigtable"].items():
            assert fams == {"features": 2}, f"column families of {t}: {fams}"
        assert first["redis"] == {}, f"apply wrote Redis keys: {list(first['redis'])}"
        for name in sorted(want_cs | want_bt):
            assert name in out1, f"`hos-proxy apply` does not print {name}:\n{out1}"

        out2 = s.cmd("apply", *s.src)
        second = s.state()
        assert second == first, f"a second apply changed the servers:\n first  {first}\n second {second}"
        for name in sorted(want_cs | want_bt):
            assert name in out2, f"the second `hos-proxy apply` does not print {name}:\n{out2}"
    finally:
        s.cleanup.run()


def write(proxy, view, df):
    r = proxy.post("/write-to-online-store", {"feature_view_name": view, "df": df})
    assert r.status_code == 200, f"write {view} {df} -> {r.status_code} {r.text[:1000]}"


def test_teardown_drops_exactly_the_named_views(procs, tmp_path):
    s = Setup(tmp_path)
    try:
        p = s.project
        s.cmd("apply", *s.src)
        proxy = procs.proxy([*map(str, s.src)], name="hos-proxy-prov")
        ts = ["2024-05-01T00:00:00Z"] * 2
        for view in ("rd_one", "bt_one", "bt_three"):
            write(proxy, view, {"user_id": [1, 2], "val": ["a", "b"], "n": [1, 2], "event_timestamp": ts})
        write(proxy, "rd_two", {"merchant_id": ["m1", "m2"], "val": ["c", "d"], "n": [3, 4], "event_timestamp": ts})
        proxy.stop()
        before = s.state()
        rows = B.bigtable_rows(s.instance, f"{p}.user")
        assert {B.bigtable_row_key(H.entity_key_bytes({"user_id": u}), v) for u in (1, 2) for v in ("bt_one", "bt_three")} \
            == set(rows), f"Bigtable rows of {p}.user before teardown: {sorted(rows)}"
        rd_one_keys = {B.redis_key(H.entity_key_bytes({"user_id": u}), p) for u in (1, 2)}
        rd_two_keys = {B.redis_key(H.entity_key_bytes({"merchant_id": m}), p) for m in ("m1", "m2")}
        assert set(before["redis"]) == rd_one_keys | rd_two_keys, f"Redis keys: {sorted(before['redis'])}"

        # a Cassandra view: its table only
        out = s.cmd("teardown", *s.src, "--view", "cs_one")
        st = s.state()
        assert set(st["cassandra"]) == {s.cs_table("cs_two"), s.cs_table("cs_el")}, \
            f"Cassandra tables after teardown --view cs_one: {sorted(st['cassandra'])}"
        assert st["bigtable"] == before["bigtable"] and st["redis"] == before["redis"], \
            "teardown --view cs_one touched Bigtable or Redis"
        assert s.cs_table("cs_one") in out, f"teardown does not print what it dropped:\n{out}"
        assert s.cs_table("cs_two") not in out, f"teardown --view cs_one prints another view's table:\n{out}"

        # a Bigtable view with a table of its own
        out = s.cmd("teardown", *s.src, "--view", "bt_two")
        st = s.state()
        assert set(st["bigtable"]) == {f"{p}.user", f"{p}.__dummy"}, \
            f"Bigtable tables after teardown --view bt_two: {sorted(st['bigtable'])}"
        assert set(st["cassandra"]) == {s.cs_table("cs_two"), s.cs_table("cs_el")}
        assert f"{p}.merchant-user" in out, f"teardown does not print what it dropped:\n{out}"

        # a Bigtable view sharing its table with bt_one: the table stays,
        # with bt_one's rows
        out = s.cmd("teardown", *s.src, "--view", "bt_three")
        st = s.state()
        assert set(st["bigtable"]) == {f"{p}.user", f"{p}.__dummy"}, \
            f"teardown --view bt_three dropped a table bt_one still uses: {sorted(st['bigtable'])}"
        rows = B.bigtable_rows(s.instance, f"{p}.user")
        for u in (1, 2):
            rk = B.bigtable_row_key(H.entity_key_bytes({"user_id": u}), "bt_one")
            assert rk in rows, f"bt_one's row {rk!r} is gone after teardown --view bt_three: {sorted(rows)}"
            rk3 = B.bigtable_row_key(H.entity_key_bytes({"user_id": u}), "bt_three")
            assert rk3 not in rows, f"bt_three's row {rk3!r} survived teardown --view bt_three"
        # it prints what it dropped: not the table it kept
        false_claims = [ln for ln in out.splitlines() if "dropped" in ln and f"table {p}.user " in ln
                        and not any(w in ln for w in ("kept", "keep", "shared", "rows", "data"))]
        # (checked at the end, so that the Redis and full teardowns still run)
        bt_three_out = out

        # a Redis view: its hashes go, rd_two's stay
        s.cmd("teardown", *s.src, "--view", "rd_one")
        st = s.state()
        for k, h in st["redis"].items():
            assert b"_ts:rd_one" not in h and B.redis_field("rd_one", "val") not in h, \
                f"rd_one's data is still in Redis key {k!r}: {h}"
        assert set(st["redis"]) == rd_two_keys, f"Redis keys after teardown --view rd_one: {sorted(st['redis'])}"
        for k in rd_two_keys:
            assert st["redis"][k] == before["redis"][k], f"teardown --view rd_one changed rd_two's hash {k!r}"

        # idempotent
        s.cmd("teardown", *s.src, "--view", "cs_one")

        # everything
        s.cmd("teardown", *s.src)
        st = s.state()
        assert st == {"cassandra": {}, "bigtable": {}, "redis": {}}, f"after teardown of every view: {st}"
        assert not false_claims, (f"teardown --view bt_three reports dropping table {p}.user, which it kept "
                                  f"(bt_one uses it):\n{bt_three_out}")
    finally:
        s.cleanup.run()
