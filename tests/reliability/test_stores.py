"""kill -9 during writes, several processes on the same keys, and tampered bytes: local stores."""

from __future__ import annotations

import json

import attrs
import pytest

from tests.reliability.stores import concurrency_test, crash_test, tamper_test

pytest.importorskip("flowyml_local.fsstore", reason="flowyml-local's stores are not installed")


def test_kill_9_during_1000_writes_20_times(tmp_path):
    report = crash_test(tmp_path, rounds=20, count=1000)
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.completed_writes > 20, summary
    assert report.cache_hits_verified > 0 and report.artifact_loads_verified > 0, summary
    assert report.torn == 0, summary
    assert report.detected_corrupt == 0, summary
    assert report.lost_acknowledged == 0, summary


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 300 s per-test limit is for default-size tests
def test_kill_9_long(tmp_path):
    report = crash_test(tmp_path, rounds=200, count=1000, seed=1234)
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.torn == 0 and report.detected_corrupt == 0 and report.lost_acknowledged == 0, summary


def test_2_to_4_processes_on_the_same_keys(tmp_path):
    report = concurrency_test(tmp_path, processes=(2, 3, 4), ops=400)
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.verified_reads > 100 and report.writes > 100, summary
    assert report.corrupt == 0, summary
    assert report.integrity_errors == 0, summary


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the suite's 300 s per-test limit is for default-size tests
def test_processes_on_the_same_keys_long(tmp_path):
    report = concurrency_test(tmp_path, processes=(2, 3, 4, 4), ops=5000, seconds=120, keys=3, seed=99)
    summary = json.dumps(attrs.asdict(report), indent=1)
    assert report.corrupt == 0 and report.integrity_errors == 0, summary


@pytest.fixture(scope="module")
def tamper_report(tmp_path_factory):
    return tamper_test(tmp_path_factory.mktemp("tamper"))


def test_planted_pickles_never_run(tamper_report):
    assert tamper_report.control_executed, "the planted pickle is not live: the test would prove nothing"
    assert not tamper_report.executed, [attrs.asdict(c) for c in tamper_report.executed]


def test_tampered_bytes_are_refused(tamper_report):
    """Including an entry moved to another key and an artifact copied over another (both were served once)."""
    failed = [attrs.asdict(c) for c in tamper_report.failed]
    assert not failed, json.dumps(failed, indent=1)
    assert len(tamper_report.cases) >= 25


def test_undecodable_payloads_are_clear_errors(tamper_report):
    """A planted payload labelled json or parquet (with a matching digest) is an IntegrityError naming the artifact,
    not the decoder's own UnicodeDecodeError/ArrowInvalid (it was, once)."""
    raw = [f"{c.name}: {c.outcome}" for c in tamper_report.cases if "(raw)" in c.outcome]
    assert not raw, raw


_BIG_WRITER = """
import sys
import numpy as np
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
store = LocalCacheStore(LocalCacheStoreConfig(path=sys.argv[1], signing_key="k"))
value = np.ones(40 * 1024 * 1024 // 8)  # 40 MB: several writes of it are in flight for a while
for i in range(1000):
    store.set_value(f"{i:064d}", value + i, "big", "code")
"""


def _large_temps(root) -> list:
    """Temp files over 1 MB in ``root``: a write in flight (one renamed meanwhile is not)."""
    found = []
    for path in root.glob(".*.tmp") if root.exists() else []:
        try:
            if path.stat().st_size > 1024 * 1024:
                found.append(path)
        except FileNotFoundError:  # renamed into place between the listing and the stat
            continue
    return found


def _kill_9_during_a_large_write(root) -> None:
    """Start the writer, kill -9 it while a large write is in flight; retried when the kill
    landed just after a write completed (the next one had not opened its temp file yet)."""
    import subprocess
    import sys
    import time

    for _attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _BIG_WRITER, str(root)])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if _large_temps(root) and len(list(root.glob("0*"))) >= 1:
                    break
                time.sleep(0.005)
            else:
                pytest.fail("the writer never had a large write in flight")
        finally:
            proc.kill()
            proc.wait()
        if any(p.name.endswith(".tmp") for p in root.iterdir()):
            return
    pytest.fail("five kills in a row all landed between two writes")


def test_kill_9_in_a_large_cache_write_leaves_a_temp_file_that_stats_shows_and_prune_removes(tmp_path):
    """What the issue saw: kill -9 in the middle of large writes left .tmp files of tens of MB for ever."""
    import os
    import time

    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

    pytest.importorskip("numpy")
    root = tmp_path / "cache"
    _kill_9_during_a_large_write(root)
    store = LocalCacheStore(LocalCacheStoreConfig(path=str(root), signing_key="k"))
    leftovers = [p for p in root.iterdir() if p.name.endswith(".tmp")]
    stats = store.stats()
    assert stats["temp_files"] == len(leftovers) >= 1, stats
    assert stats["temp_bytes"] == sum(p.stat().st_size for p in leftovers)
    entries = stats["entries"]
    assert store.prune()["removed"] == {}  # just written: could be a write in progress of another process
    old = time.time() - 2 * 3600
    for path in leftovers:
        os.utime(path, (old, old))
    report = store.prune()
    assert report["removed"] == {"temp files": len(leftovers)} and report["bytes"] == stats["temp_bytes"]
    after = store.stats()
    assert (after["temp_files"], after["temp_bytes"], after["entries"]) == (0, 0, entries)
    assert store.get(f"{0:064d}") is not None  # complete entries are untouched
