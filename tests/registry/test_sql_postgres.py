"""Feast's SQL registry (`registry_type: sql`) on a real PostgreSQL server
(tests/scripts/postgres-up.sh)."""

import psycopg

from regutil import VIEWS, assert_registry_contents, feast, make_repo, project_name


def sqlalchemy_url(url: str) -> str:
    # SQLAlchemy's bare postgresql:// means psycopg2; Feast's [postgres]
    # extra installs psycopg 3, which SQLAlchemy names postgresql+psycopg.
    assert url.startswith("postgresql://"), url
    return "postgresql+psycopg://" + url[len("postgresql://"):]


def test_sql_registry_on_postgres(tmp_path, postgres_url):
    project = project_name("sql")
    repo = make_repo(
        tmp_path / "repo",
        project,
        f"""
  registry_type: sql
  path: {sqlalchemy_url(postgres_url)}
  cache_ttl_seconds: 60
""",
    )
    out = feast(repo, "apply")
    assert "Created feature view driver_stats" in out, out
    assert_registry_contents(repo)

    # The views are rows of Feast's tables in PostgreSQL itself.
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT feature_view_name FROM feature_views WHERE project_id = %s", (project,)
        ).fetchall()
        server = conn.execute("SHOW server_version_num").fetchone()[0]
    assert {r[0] for r in rows} == VIEWS
    assert int(server) >= 140000, server
