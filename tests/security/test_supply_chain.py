"""Supply chain (issue item 7): deny.toml keeps crates with known RustSec
advisories, unreviewed licenses and non-crates.io sources out of the build,
checked offline by cargo-deny.

Each refusal is shown on a throw-away crate that has exactly the problem
(a banned dependency, a license off the allow-list, a git dependency),
checked against the workspace's own deny.toml; the workspace itself passes
and its lock file holds none of the banned crates.

cargo-deny comes from tests/scripts/cargo-deny.sh (cached build), or
HOS_CARGO_DENY_BIN.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DENY_TOML = ROOT / "deny.toml"
BANNED = ["serde_yaml", "unsafe-libyaml", "serde_yml", "libyml", "yaml-rust"]


@pytest.fixture(scope="module")
def deny_bin():
    path = os.environ.get("HOS_CARGO_DENY_BIN")
    if not path:
        out = subprocess.run(
            [str(ROOT / "tests/scripts/cargo-deny.sh")],
            check=True, capture_output=True, text=True,
        ).stdout
        path = out.strip().splitlines()[-1]
    assert Path(path).is_file(), path
    return path


def deny(deny_bin, manifest, *checks):
    """`cargo deny check` offline against the workspace's deny.toml: the exit
    code and everything it printed (diagnostics on stderr, the `bans ok` /
    `bans FAILED` summary on stdout)."""
    r = subprocess.run(
        [deny_bin, "deny", "--offline", "--manifest-path", str(manifest),
         "--config", str(DENY_TOML), "check", *checks],
        capture_output=True, text=True, timeout=300,
    )
    return r.returncode, r.stderr + r.stdout


def cargo(*args, cwd):
    subprocess.run(["cargo", *args], cwd=cwd, check=True, capture_output=True,
                   text=True, timeout=300)


def crate(dirpath, name, deps="", license="Apache-2.0"):
    """A one-file library crate with its own workspace and lock file."""
    (dirpath / "src").mkdir(parents=True)
    (dirpath / "src/lib.rs").write_text("")
    (dirpath / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n'
        f'license = "{license}"\npublish = false\n\n[workspace]\n\n'
        f"[dependencies]\n{deps}"
    )
    return dirpath / "Cargo.toml"


def test_workspace_passes_and_holds_no_banned_crate(deny_bin):
    rc, out = deny(deny_bin, ROOT / "Cargo.toml", "bans", "licenses", "sources")
    assert rc == 0, out[-4000:]
    assert "bans ok, licenses ok, sources ok" in out, out
    lock = (ROOT / "Cargo.lock").read_text()
    locked = set(re.findall(r'^name = "([^"]+)"', lock, re.M))
    assert not locked & set(BANNED), locked & set(BANNED)
    # The separate fuzz and benchmark workspaces build the api crate too.
    for other in ["fuzz/Cargo.lock", "bench/loadgen/Cargo.lock"]:
        names = set(re.findall(r'^name = "([^"]+)"', (ROOT / other).read_text(), re.M))
        assert not names & set(BANNED), (other, names & set(BANNED))


def test_serde_yaml_is_refused_with_its_advisory(deny_bin, tmp_path):
    # serde_yaml 0.9.34 is in the local registry cache when this repo was
    # ever built before the move; resolve and fetch offline, else download it
    # from crates.io (cargo-deny itself runs offline, so the sources must be
    # on disk: resolving online alone leaves them undownloaded).
    manifest = crate(tmp_path / "c", "uses-serde-yaml", 'serde_yaml = "=0.9.34"\n')
    try:
        cargo("generate-lockfile", "--offline", cwd=manifest.parent)
        cargo("fetch", "--offline", cwd=manifest.parent)
    except subprocess.CalledProcessError:
        cargo("generate-lockfile", cwd=manifest.parent)
        cargo("fetch", cwd=manifest.parent)
    rc, out = deny(deny_bin, manifest, "bans")
    assert rc != 0, out
    assert "crate 'serde_yaml = 0.9.34+deprecated' is explicitly banned" in out, out
    assert "crate 'unsafe-libyaml = 0.2.11' is explicitly banned" in out, out
    assert "RUSTSEC-2024-0449" in out and "bans FAILED" in out, out


def test_license_off_the_list_is_refused(deny_bin, tmp_path):
    manifest = crate(tmp_path / "c", "copyleft", license="GPL-3.0-only")
    cargo("generate-lockfile", "--offline", cwd=manifest.parent)
    rc, out = deny(deny_bin, manifest, "licenses")
    assert rc != 0, out
    assert "GPL-3.0-only" in out and "licenses FAILED" in out, out
    # The same crate under Apache-2.0 passes: the refusal is the license.
    (tmp_path / "d").mkdir()
    ok = crate(tmp_path / "d" / "c", "permissive")
    cargo("generate-lockfile", "--offline", cwd=ok.parent)
    rc, out = deny(deny_bin, ok, "licenses")
    assert rc == 0 and "licenses ok" in out, out


def test_git_dependency_is_refused(deny_bin, tmp_path):
    # A local git repository (file://, no network) stands in for GitHub.
    repo = tmp_path / "gitdep"
    crate(repo, "gitdep")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    manifest = crate(tmp_path / "c", "uses-git",
                     f'gitdep = {{ git = "file://{repo}" }}\n')
    cargo("generate-lockfile", cwd=manifest.parent)
    rc, out = deny(deny_bin, manifest, "sources")
    assert rc != 0, out
    assert "gitdep" in out and "sources FAILED" in out, out
