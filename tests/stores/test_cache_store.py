"""The local cache store: hits, misses, None, invalidation, damage, trust and concurrent processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import time
from pathlib import Path

import pytest

from flowyml_core.components import CacheEntry
from flowyml_core.errors import FlowymlError
from flowyml_local import digests
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
from flowyml_local import fsstore
from flowyml_local.entries import CACHE_MAGIC

KEY = "ab" * 32


def entry_file(cache: LocalCacheStore, key: str) -> Path:
    return Path(cache._entry_path(key))


class Model:
    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.weights == self.weights

    def __repr__(self) -> str:  # also the test's id: the same in every pytest-xdist worker
        return f"Model({self.weights})"


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_round_trip_with_metadata(cache):
    cache.set_value(KEY, {"acc": 0.9}, "evaluate", "code-1", fingerprint="fp")
    entry = cache.get(KEY)
    assert isinstance(entry, CacheEntry)
    assert (entry.value, entry.step_name, entry.code_hash, entry.fingerprint) == ({"acc": 0.9}, "evaluate", "code-1", "fp")
    assert abs(entry.created - time.time()) < 60


@pytest.mark.parametrize(
    "value",
    [None, 0, "", [], {}, (1, "two"), {"k": (1, 2)}, b"\x00" * 10, bytearray(b"ba"), Model([0.5, 1.5]),
     float("nan")],
    ids=repr,
)
def test_values_round_trip_and_none_is_a_hit(cache, value):
    cache.set_value(KEY, value, "step", "code")
    entry = cache.get(KEY)
    assert entry is not None, "a stored value (even None) is a hit"
    if value != value:  # NaN
        assert entry.value != entry.value
    else:
        assert entry.value == value and type(entry.value) is type(value)


def test_numpy_values_round_trip_writable(cache):
    np = pytest.importorskip("numpy")
    for i, array in enumerate([np.arange(10.0), np.arange(200_000, dtype="int64").reshape(400, 500)]):
        key = f"{i:064d}"
        cache.set_value(key, array, "step", "code")
        loaded = cache.get(key).value
        np.testing.assert_array_equal(loaded, array)
        assert loaded.dtype == array.dtype and loaded.flags.writeable


def test_missing_keys_and_stats(cache):
    assert cache.get(KEY) is None
    cache.set_value(KEY, 1, "s", "c")
    cache.get(KEY)
    cache.get("cd" * 32)
    stats = cache.stats()
    assert stats["entries"] == 1 and stats["bytes"] > 0
    assert (stats["hits"], stats["misses"]) == (1, 2)


def test_keys_are_stored_safely(cache, tmp_path):
    cache.set_value("../../escape", 1, "s", "c")
    assert cache.get("../../escape").value == 1
    assert all(str(p).startswith(str(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*"))
    assert not (tmp_path / "escape").exists()


def test_invalidate_by_key_and_step(cache):
    for i in range(3):
        cache.set_value(f"{i:064d}", i, "train", "code")
    cache.set_value(KEY, "keep", "evaluate", "code")
    assert cache.invalidate(key=f"{0:064d}") == 1
    assert cache.invalidate(key=f"{0:064d}") == 0
    assert cache.invalidate(key=KEY, step_name="train") == 0  # that key belongs to another step
    assert cache.invalidate(step_name="train") == 2
    assert cache.get(KEY).value == "keep"
    with pytest.raises(ValueError, match="clear"):
        cache.invalidate()
    cache.clear()
    assert cache.get(KEY) is None and cache.stats()["entries"] == 0


def test_unstorable_value_raises_and_leaves_nothing(cache):
    with pytest.raises(FlowymlError, match="cannot store"):
        cache.set_value(KEY, lambda: 1, "s", "c")
    assert cache.get(KEY) is None
    assert cache.stats()["entries"] == 0


# -- damage --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],                         # truncated
        lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]),              # a payload bit flipped
        lambda raw: b"",                                          # empty
        lambda raw: b"garbage" * 10,                              # not an entry
        lambda raw: CACHE_MAGIC + b"{not json\n" + raw[-5:],      # broken header
        lambda raw: CACHE_MAGIC + b'{"size": 1}\n' + b"x",        # header missing fields
    ],
    ids=["truncated", "bitflip", "empty", "garbage", "bad-header", "incomplete-header"],
)
def test_a_corrupt_entry_is_a_miss_with_a_warning(cache, caplog, damage):
    cache.set_value(KEY, {"value": list(range(100))}, "s", "c")
    path = entry_file(cache, KEY)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="flowyml.stores"):
        assert cache.get(KEY) is None
    assert any("is corrupt" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert cache.stats()["corrupt"] == 1
    cache.set_value(KEY, 2, "s", "c")  # the next write repairs it
    assert cache.get(KEY).value == 2


def test_an_entry_of_the_previous_format_is_a_quiet_miss(cache, caplog):
    """Entries written by the sha256 version (FLOWYML-CACHE/1) are recomputed without a corruption warning."""
    cache.set_value(KEY, {"v": 1}, "step", "code")
    path = entry_file(cache, KEY)
    raw = path.read_bytes()
    assert raw.startswith(CACHE_MAGIC)
    path.write_bytes(b"FLOWYML-CACHE/1\n" + raw[len(CACHE_MAGIC):])
    with caplog.at_level(logging.INFO, logger="flowyml.stores"):
        assert cache.get(KEY) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("written by another flowyml version" in r.getMessage() for r in caplog.records)
    stats = cache.stats()
    assert (stats["misses"], stats["corrupt"]) == (1, 0)


def test_a_directory_in_place_of_an_entry_is_a_miss(cache, caplog):
    path = entry_file(cache, KEY)
    path.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="flowyml.stores"):
        assert cache.get(KEY) is None
    assert caplog.records


# -- trust ---------------------------------------------------------------------------
def plant(cache: LocalCacheStore, key: str, marker: Path) -> None:
    payload = pickle.dumps(_Planted(str(marker)))
    header = {"key": key, "materializer": "pickle", "type": "builtins.int", "size": len(payload),
              "digest": digests.of(digests.SECURE, payload), "step_name": "s", "code_hash": "c"}
    path = entry_file(cache, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CACHE_MAGIC + json.dumps(header).encode() + b"\n" + payload)


def test_a_planted_pickle_is_a_quiet_miss_reported_once_with_how_to_opt_in(cache, caplog, tmp_path):
    fsstore.report_untrusted()  # nothing left over from earlier tests
    marker = tmp_path / "pwned"
    plant(cache, KEY, marker)
    with caplog.at_level(logging.WARNING, logger="flowyml.stores"):
        assert cache.get(KEY) is None
    assert not marker.exists()
    assert not caplog.records, "refused entries are counted, and reported once per run"
    line = fsstore.report_untrusted()
    assert line is not None and "recomputed 1 pickled cache entry" in line and "1 unsigned" in line
    assert "allow_unsigned_pickle = true" in line and "cache_store" in line and "\n" not in line


def test_entries_signed_with_a_previous_key_make_one_line_with_a_count(tmp_path, monkeypatch, caplog):
    """After XDG_CONFIG_HOME (the per-user key) changed, every pickled entry is refused: one line says so."""
    fsstore.report_untrusted()
    root = str(tmp_path / "c")
    writer = LocalCacheStore(LocalCacheStoreConfig(path=root))
    for i in range(5):
        writer.set_value(f"{i:064d}", Model([float(i)]), "train", "code")
    writer.set_value(KEY, {"json": "needs no key"}, "s", "c")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another-config"))
    reader = LocalCacheStore(LocalCacheStoreConfig(path=root))
    with caplog.at_level(logging.DEBUG, logger="flowyml.stores"):
        assert all(reader.get(f"{i:064d}") is None for i in range(5))
        assert reader.get(KEY).value == {"json": "needs no key"}
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        caplog.clear()
        line = fsstore.report_untrusted()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [line]
    assert line.startswith("recomputed 5 pickled cache entries whose signature does not match this store's signing "
                           f"key (the per-user key {tmp_path / 'another-config'}")
    assert "5 signed with another key" in line and "set signing_key on the cache_store" in line
    assert "allow_unsigned_pickle" not in line  # they are signed: the key is what differs
    assert reader.stats()["corrupt"] == 0
    assert fsstore.report_untrusted() is None  # reported once, then counted afresh


def test_opt_in_loads_unsigned_pickles(tmp_path):
    cache = LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "c"), allow_unsigned_pickle=True))
    marker = tmp_path / "ran"
    plant(cache, KEY, marker)
    assert cache.get(KEY) is not None
    assert marker.is_dir()


def test_signed_pickles_load_and_other_keys_refuse(tmp_path):
    root = str(tmp_path / "c")
    mine = LocalCacheStore(LocalCacheStoreConfig(path=root, signing_key="k1"))
    mine.set_value(KEY, Model([1.0]), "s", "c")
    assert mine.get(KEY).value == Model([1.0])
    assert LocalCacheStore(LocalCacheStoreConfig(path=root, signing_key="k2")).get(KEY) is None


# -- processes -----------------------------------------------------------------------
def _writer(root: str, xdg: str, index: int, rounds: int, ready) -> None:
    os.environ["XDG_CONFIG_HOME"] = xdg
    store = LocalCacheStore(LocalCacheStoreConfig(path=root))
    value = {"writer": index, "payload": [index] * 20_000, "tuple": (index,)}  # pickle: signed, multi-KB
    ready.wait()
    for _ in range(rounds):
        store.set_value(KEY, value, "shared", "code")


def test_two_processes_writing_one_key(tmp_path):
    """Separate processes (own stores) hammer one key while this one reads: every read is whole."""
    root = str(tmp_path / "cache")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    xdg = os.environ["XDG_CONFIG_HOME"]
    procs = [ctx.Process(target=_writer, args=(root, xdg, i, 150, ready)) for i in range(2)]
    for p in procs:
        p.start()
    reader = LocalCacheStore(LocalCacheStoreConfig(path=root))
    ready.set()
    seen = set()
    while any(p.is_alive() for p in procs):
        entry = reader.get(KEY)
        if entry is not None:
            value = entry.value
            assert value["payload"] == [value["writer"]] * 20_000 and value["tuple"] == (value["writer"],)
            seen.add(value["writer"])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    final = reader.get(KEY)
    assert final is not None and final.value["writer"] in (0, 1)
    assert reader.stats()["corrupt"] == 0
    assert not [p for p in Path(root).rglob("*.tmp")], "temp files left behind"
    assert seen  # the reader saw complete values while the writers raced


def test_speed_of_small_entries(cache):
    """A guard against per-call overheads (a filesystem object or an import per get cost milliseconds).

    Quiet machines do ~20 µs per get (bench/bench_local.py measures the pipeline); the bound is
    loose because this machine is shared with other test runs.
    """
    keys = [f"{i:064x}" for i in range(300)]
    for i, key in enumerate(keys):
        cache.set_value(key, {"i": i}, "step", "code", fingerprint="f" * 64)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for key in keys:
            cache.get(key)
        best = min(best, (time.perf_counter() - start) / len(keys))
    assert best < 400e-6, f"get took {best * 1e6:.1f} µs"


def test_an_entry_moved_to_another_key_is_a_miss(cache, caplog):
    other = "cd" * 32
    cache.set_value(KEY, "the value of KEY", "s", "c")
    target = entry_file(cache, other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(entry_file(cache, KEY).read_bytes())
    with caplog.at_level(logging.WARNING, logger="flowyml.stores"):
        assert cache.get(other) is None
    assert "written for key" in caplog.text
    assert cache.get(KEY).value == "the value of KEY"


def test_a_signed_pickle_cannot_be_replayed_under_another_key(cache):
    """Even with the header's key edited to match, the signature binds the entry to its key."""
    other = "cd" * 32
    cache.set_value(KEY, Model([9.0]), "s", "c")
    raw = entry_file(cache, KEY).read_bytes()
    header_end = raw.index(b"\n", len(CACHE_MAGIC))
    header = json.loads(raw[len(CACHE_MAGIC):header_end])
    header["key"] = other
    target = entry_file(cache, other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(CACHE_MAGIC + json.dumps(header).encode() + raw[header_end:])
    assert cache.get(other) is None


# -- housekeeping --------------------------------------------------------------------
def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_leftover_temp_files_are_reported_and_old_ones_pruned(cache, tmp_path):
    """What kill -9 in the middle of a large write leaves: a hidden temp file, counted by stats(), removed by prune()."""
    cache.set_value(KEY, b"x" * 100, "s", "c")
    root = tmp_path / "cache"
    killed = root / ".3f2-1-0-a1b2c3.tmp"
    killed.write_bytes(b"\0" * 12_000_000)
    in_progress = root / ".3f2-1-1-a1b2c3.tmp"
    in_progress.write_bytes(b"\0" * 1000)
    _age(killed, 2 * 3600)
    stats = cache.stats()
    assert (stats["entries"], stats["temp_files"], stats["temp_bytes"]) == (1, 2, 12_001_000)
    assert stats["bytes"] < 1000  # temp files are not entries
    assert cache.prune(dry_run=True) == {"removed": {"temp files": 1}, "bytes": 12_000_000, "dry_run": True}
    assert killed.exists()
    assert cache.prune() == {"removed": {"temp files": 1}, "bytes": 12_000_000, "dry_run": False}
    assert not killed.exists() and in_progress.exists()  # younger than an hour: may be a write in progress
    assert cache.get(KEY).value == b"x" * 100


def test_clear_removes_the_entries_and_nothing_a_person_put_beside_them(cache, tmp_path):
    """A cache directory may be one a person keeps other files in (``path = "cache"``)."""
    for i in range(3):
        cache.set_value(f"{i:064d}", i, "s", "c")
    root = tmp_path / "cache"
    notes = root / "notes.txt"
    notes.write_text("why the cache lives here\n")
    leftover = root / ".3f2-1-0-a1b2c3.tmp"  # what a killed write leaves
    leftover.write_bytes(b"\0" * 100)
    cache.clear()
    assert [cache.get(f"{i:064d}") for i in range(3)] == [None, None, None]
    assert not leftover.exists()
    assert notes.read_text() == "why the cache lives here\n"


def test_prune_older_than_removes_old_entries(cache):
    for i in range(3):
        cache.set_value(f"{i:064d}", i, "s", "c")
    _age(entry_file(cache, f"{0:064d}"), 10 * 86400)
    _age(entry_file(cache, f"{1:064d}"), 3 * 86400)
    report = cache.prune(older_than=7 * 86400)
    assert report["removed"] == {"entries": 1} and report["bytes"] > 0
    assert cache.get(f"{0:064d}") is None
    assert [cache.get(f"{i:064d}").value for i in (1, 2)] == [1, 2]
    assert cache.prune(older_than=86400, dry_run=True)["removed"] == {"entries": 1}
    assert cache.get(f"{1:064d}").value == 1


def test_a_large_value_just_written_as_an_artifact_is_not_written_twice(cache, artifacts, caplog):
    """The cache entry refers to the artifact (same format, size and digest) instead of holding a second copy."""
    np = pytest.importorskip("numpy")
    array = np.arange(1_000_000, dtype="float64")  # 8 MB
    uri = artifacts.materialize(array, "out", "run", "step")
    cache.set_value(KEY, array, "step", "code", fingerprint="fp")
    path = entry_file(cache, KEY)
    assert path.stat().st_size < 1000
    header = json.loads(path.read_bytes()[len(CACHE_MAGIC):].split(b"\n")[0])
    assert Path(os.path.normpath(path.parent / header["ref"])) == Path(uri)
    entry = cache.get(KEY)
    np.testing.assert_array_equal(entry.value, array)
    assert entry.value.flags.writeable and entry.fingerprint == "fp"
    # another value of the same size is written out in full
    cache.set_value("cd" * 32, array + 1, "step", "code")
    assert entry_file(cache, "cd" * 32).stat().st_size > array.nbytes
    # the artifact rewritten with other bytes, then deleted: quiet misses, and prune removes the entry
    artifacts.materialize(array * 2, "out", "run", "step")
    with caplog.at_level(logging.INFO, logger="flowyml.stores"):
        assert cache.get(KEY) is None
        artifacts.delete(uri)
        assert cache.get(KEY) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "which was rewritten" in caplog.text and "which is gone" in caplog.text
    assert cache.stats()["corrupt"] == 0
    assert cache.prune()["removed"] == {"dangling references": 1}
    assert not path.exists() and entry_file(cache, "cd" * 32).exists()


def test_a_reference_is_checked_against_the_entrys_own_digest(cache, artifacts, tmp_path):
    """A reference edited to name another artifact of the same size never serves that artifact's bytes."""
    np = pytest.importorskip("numpy")
    array = np.arange(300_000, dtype="int64")
    artifacts.materialize(array, "a", "run", "step")
    other = artifacts.materialize(array[::-1].copy(), "b", "run", "step")
    cache.set_value(KEY, array, "step", "code")
    path = entry_file(cache, KEY)
    raw = path.read_bytes()
    header_end = raw.index(b"\n", len(CACHE_MAGIC))
    header = json.loads(raw[len(CACHE_MAGIC):header_end])
    header["ref"] = os.path.relpath(other, path.parent)
    path.write_bytes(CACHE_MAGIC + json.dumps(header).encode() + b"\n")
    assert cache.get(KEY) is None
    header["ref"] = "../../../../etc/passwd"
    path.write_bytes(CACHE_MAGIC + json.dumps(header).encode() + b"\n")
    assert cache.get(KEY) is None


def test_the_memory_of_recent_large_artifacts_is_bounded(artifacts):
    """A loop of steps each writing a large output of one size must not grow the process's memory of them."""
    np = pytest.importorskip("numpy")
    size = None
    for i in range(fsstore._RECENT_MAX + 8):
        uri = artifacts.materialize(np.full(150_000, float(i)), "out", "run", f"step{i}")
        size = artifacts.metadata(uri)["size"]
    remembered = fsstore.recent_large("npy", size)
    assert len(remembered) == fsstore._RECENT_MAX
    assert uri in remembered.values()  # the newest are the ones kept


def test_a_large_cache_hit_is_read_into_the_array_and_checked_while_read(cache, caplog):
    """Above 4 MB a hit is read chunk by chunk into the array, hashed behind the read: a change anywhere is caught."""
    np = pytest.importorskip("numpy")
    value = np.arange(1_000_000, dtype="float64")  # 8 MB, a full entry (no artifact to refer to)
    cache.set_value(KEY, value, "s", "c")
    hit = cache.get(KEY).value
    np.testing.assert_array_equal(hit, value)
    assert hit.flags.writeable and hit.flags.owndata is False  # a view of the buffer read into, not a copy
    path = entry_file(cache, KEY)
    for where in ("payload start", "middle", "last byte"):  # the header's length varies by a few bytes per write
        cache.set_value(KEY, value, "s", "c")
        size = path.stat().st_size
        offset = {"payload start": size - value.nbytes + 10, "middle": size // 2, "last byte": size - 1}[where]
        with open(path, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0x04]))
        with caplog.at_level(logging.WARNING, logger="flowyml.stores"):
            assert cache.get(KEY) is None
        assert "does not match its recorded digest" in caplog.text
