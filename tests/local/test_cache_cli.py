"""``flowyml cache prune`` and the one-line report of cache entries under another signing key, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

PIPELINE = '''
from flowyml_core import Pipeline, step


class Box:
    """Only pickle stores it: cache entries of this step are signed."""

    def __init__(self, n):
        self.n = n


@step(outputs=["rows"])
def load(n: int = 5) -> list:
    return list(range(n))


@step(inputs=["rows"], outputs=["boxed"])
def box(rows: list) -> Box:
    return Box(len(rows))


@step(inputs=["boxed"], outputs=["pair"])
def pair(boxed: Box) -> tuple:
    return (boxed.n, "rows")


pipeline = Pipeline("prunable").add_step(load).add_step(box).add_step(pair)
'''


def _age_tree(root: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


def test_cache_prune_dry_run_then_for_real(project: Path, run_cli) -> None:
    (project / "pipe.py").write_text(PIPELINE)
    for n in (1, 2, 3):  # three runs with different parameters: three sets of artifacts and entries
        done = run_cli("run", "pipe.py:pipeline", "--param", f"n={n}", cwd=project)
        assert done.returncode == 0, done.stderr
    artifacts, cache = project / ".flowyml" / "artifacts", project / ".flowyml" / "cache"
    runs = sorted((artifacts / "default").iterdir(), key=lambda p: p.stat().st_mtime)
    assert len(runs) == 3 and len(list(cache.iterdir())) == 9
    for age, run in zip((30, 20, 1), runs):
        _age_tree(run, age * 86400)
    (cache / ".1f-2-0-abcdef.tmp").write_bytes(b"\0" * 5000)  # a write killed before its rename
    os.utime(cache / ".1f-2-0-abcdef.tmp", (time.time() - 7200, time.time() - 7200))

    dry = run_cli("cache", "prune", "--older-than", "7d", "--keep-runs", "1", "--dry-run", cwd=project)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == f"artifact store (local, {artifacts}): would remove 2 runs, 6 artifacts; would free " \
                       f"{lines[0].rsplit('would free ', 1)[1]}", lines
    assert lines[1].startswith(f"cache store (local, {cache}): would remove 1 temp file; would free 5.0 KB"), lines
    assert lines[2].startswith("dry run: nothing was deleted; would free "), lines
    assert len(list((artifacts / "default").iterdir())) == 3 and (cache / ".1f-2-0-abcdef.tmp").exists()

    done = run_cli("cache", "prune", "--older-than", "7d", "--keep-runs", "1", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is False and report["bytes"] > 5000
    assert report["stores"]["artifact_store"]["removed"] == {"runs": 2, "artifacts": 6}
    assert report["stores"]["cache_store"]["removed"] == {"temp files": 1}
    assert [p.name for p in (artifacts / "default").iterdir()] == [runs[2].name]
    assert not (cache / ".1f-2-0-abcdef.tmp").exists()

    again = run_cli("cache", "prune", cwd=project)
    assert again.returncode == 0 and "nothing to remove" in again.stdout and "freed 0 bytes in total" in again.stdout


def test_cache_prune_refuses_a_bad_age_in_one_line(project: Path, run_cli) -> None:
    bad = run_cli("cache", "prune", "--older-than", "a week", cwd=project)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("error: --older-than 'a week': give a number and a unit (s, m, h, d or w), "
                                  "e.g. 7d or 12h")
    negative = run_cli("cache", "prune", "--keep-runs", "-1", cwd=project)
    assert negative.returncode == 1 and "--keep-runs -1" in negative.stderr and "\n" not in negative.stderr.strip()


def test_entries_under_another_signing_key_make_one_line_per_run(project: Path, run_cli, tmp_path: Path) -> None:
    """After XDG_CONFIG_HOME changed (another per-user key), every pickled entry is refused: one line with the count."""
    (project / "pipe.py").write_text(PIPELINE)
    first = run_cli("run", "pipe.py:pipeline", cwd=project, env={"XDG_CONFIG_HOME": str(tmp_path / "config-a")})
    assert first.returncode == 0, first.stderr
    second = run_cli("run", "pipe.py:pipeline", cwd=project, env={"XDG_CONFIG_HOME": str(tmp_path / "config-b")})
    assert second.returncode == 0, second.stderr
    noise = [line for line in second.stderr.splitlines() if line.strip()]
    key = tmp_path / "config-b" / "flowyml" / "signing.key"
    assert noise == [
        f"WARNING flowyml.stores: recomputed 2 pickled cache entries whose signature does not match this store's "
        f"signing key (the per-user key {key}): 2 signed with another key. If they were written with another key, "
        "set signing_key on the cache_store in stacks.toml to that key"
    ], second.stderr
    assert re.search(r"^\[1/3\] load +cached", second.stdout, re.M)  # JSON: needs no key
    assert re.search(r"^\[2/3\] box +done", second.stdout, re.M)
    third = run_cli("run", "pipe.py:pipeline", cwd=project, env={"XDG_CONFIG_HOME": str(tmp_path / "config-b")})
    assert third.returncode == 0 and third.stderr.strip() == ""  # rewritten under the new key: nothing to say
    assert "fully cached" in third.stdout


def test_cache_prune_never_shows_a_secret_from_the_stack(project: Path, run_cli) -> None:
    """A store path built from a ``${env:…}`` value is scrubbed from the summary, as on ``flowyml run``."""
    (project / "stacks.toml").write_text(
        '[stacks.s]\nexecutor = { flavor = "local" }\n'
        'artifact_store = { flavor = "local", path = "art-${env:PRUNE_TOKEN}" }\n'
        'cache_store = { flavor = "local", path = "cache-${env:PRUNE_TOKEN}", signing_key = "${env:PRUNE_TOKEN}" }\n'
    )
    env = {"PRUNE_TOKEN": "SECRETTOKEN987"}
    (project / "pipe.py").write_text(PIPELINE)
    assert run_cli("run", "pipe.py:pipeline", "--stack", "s", cwd=project, env=env).returncode == 0
    for extra in ([], ["--json"]):
        out = run_cli("cache", "prune", "--stack", "s", "--older-than", "0s", *extra, cwd=project, env=env)
        assert out.returncode == 0, out.stderr
        assert "cache store" in out.stdout or '"cache_store"' in out.stdout
        assert "SECRETTOKEN987" not in out.stdout + out.stderr
        assert "****" in out.stdout


def test_cache_prune_json_error_names_the_command(project: Path, run_cli) -> None:
    out = run_cli("cache", "prune", "--older-than", "soon", "--json", cwd=project)
    assert out.returncode == 1
    assert json.loads(out.stdout) == {
        "command": "cache prune",
        "error": "--older-than 'soon': give a number and a unit (s, m, h, d or w), e.g. 7d or 12h",
    }
    assert out.stderr.strip() == "error: --older-than 'soon': give a number and a unit (s, m, h, d or w), e.g. 7d or 12h"
