"""``CacheStoreContract`` and ``ArtifactStoreContract``: what flowyml relies on from a store.

Subclass one and provide the component as a fixture::

    class TestMyCache(CacheStoreContract):
        @pytest.fixture
        def cache_store(self, tmp_path):
            return MyCacheStore(MyCacheConfig(url=str(tmp_path)))

Checked: round trips of the values steps produce (``None`` included), misses,
overwrites, invalidation, persistence across instances, concurrent writers,
copies sent to other processes (executors pickle stores to their workers), and
integrity: altered, truncated or replaced bytes are refused and never
unpickled. To alter bytes the kit finds the store's files through ``store.fs``
(fsspec) and ``store.root`` or the config's ``path``/``url``; override
``stored_files`` if your store keeps them elsewhere (return ``None`` to skip
those checks, with a reason in the skip message).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from flowyml_core.components import CacheEntry
from flowyml_core.errors import FlowymlError, IntegrityError
from flowyml_core.testing import tamper

#: Values of the kinds steps commonly return; each must round trip.
SAMPLE_VALUES: dict[str, Any] = {
    "int": 42,
    "float": 3.25,
    "str": "héllo wörld",
    "bool": True,
    "list": [1, 2, [3, 4]],
    "dict": {"a": 1, "nested": {"b": [1.5, "x"]}},
    "bytes": b"\x00\x01binary\xff",
    "tuple": (1, "two", 3.0),
}


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this value cannot be pickled")


def _run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected and reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


class StoreContractBase:
    """Shared helpers: reopening a store, and finding its bytes."""

    #: Writers started at once by the concurrency checks.
    concurrent_writers = 8

    def reopen(self, store: Any) -> Any:
        """Another instance over the same storage (default: a pickled copy, as executors send to workers)."""
        return pickle.loads(pickle.dumps(store))

    def stored_files(self, store: Any) -> tamper.StoredFiles | None:
        """Where the store keeps its bytes; None when the kit cannot know (integrity checks are skipped)."""
        return tamper.locate(store)

    def _files(self, store: Any) -> tamper.StoredFiles:
        files = self.stored_files(store)
        if files is None:
            pytest.skip(
                f"the kit cannot find where {type(store).__name__} keeps its bytes: give it an `fs` and `root` "
                "attribute or a config `path`/`url`, or override `stored_files(store)`"
            )
        return files

    def _altered(self, store: Any, write: Callable[[], Any], mutate: Callable[[bytes], bytes]) -> str:
        """Perform ``write`` and alter the largest file it produced; returns that file's path."""
        files = self._files(store)
        before = files.snapshot()
        write()
        changed = files.changed_since(before)
        assert changed, f"writing created or changed no file under {files.root}"
        target = changed[0]
        files.write(target, mutate(files.read(target)))
        return target

    @staticmethod
    def big_value() -> bytes:
        """Large and incompressible, so the file that holds it is the largest the write produces."""
        return os.urandom(64 * 1024)


class CacheStoreContract(StoreContractBase):
    """Abstract test class: subclass it and provide a ``cache_store`` fixture."""

    @pytest.fixture
    def cache_store(self) -> Any:
        raise NotImplementedError("provide a `cache_store` fixture that returns your cache store")

    def test_missing_key_is_a_miss(self, cache_store: Any) -> None:
        got = cache_store.get("0" * 64)
        assert got is None, f"get() of a key never written must return None (a miss), got {got!r}"

    def test_round_trip_keeps_value_and_metadata(self, cache_store: Any) -> None:
        cache_store.set_value("a1" * 32, {"weights": [1, 2, 3]}, "train", "code-abc", fingerprint="fp-1")
        entry = cache_store.get("a1" * 32)
        assert isinstance(entry, CacheEntry), f"get() after set_value() must return a CacheEntry, got {entry!r}"
        assert entry.value == {"weights": [1, 2, 3]}, f"the entry's value changed on the way: {entry.value!r}"
        assert (entry.step_name, entry.code_hash, entry.fingerprint) == ("train", "code-abc", "fp-1"), (
            "the entry must keep the step_name, code_hash and fingerprint given to set_value(); got "
            f"{(entry.step_name, entry.code_hash, entry.fingerprint)!r}"
        )

    @pytest.mark.parametrize("kind", sorted(SAMPLE_VALUES))
    def test_values_of_common_types_round_trip(self, cache_store: Any, kind: str) -> None:
        key = hashlib.sha256(kind.encode()).hexdigest()
        cache_store.set_value(key, SAMPLE_VALUES[kind], "step", "code")
        entry = cache_store.get(key)
        assert entry is not None, f"a stored {kind} value came back as a miss"
        assert entry.value == SAMPLE_VALUES[kind], f"a {kind} value came back different: {entry.value!r}"
        assert type(entry.value) is type(SAMPLE_VALUES[kind]), (
            f"a {kind} value came back as a {type(entry.value).__name__}"
        )

    def test_none_is_a_hit_not_a_miss(self, cache_store: Any) -> None:
        cache_store.set_value("b2" * 32, None, "returns_none", "code")
        entry = cache_store.get("b2" * 32)
        assert entry is not None, "a cached None must be an entry whose value is None, not a miss"
        assert entry.value is None, f"a cached None came back as {entry.value!r}"

    def test_overwrite_keeps_the_newest(self, cache_store: Any) -> None:
        cache_store.set_value("c3" * 32, 1, "step", "code")
        cache_store.set_value("c3" * 32, 2, "step", "code")
        entry = cache_store.get("c3" * 32)
        assert entry is not None and entry.value == 2, f"set_value() twice on one key must keep the second value; got {entry!r}"

    def test_invalidate_one_key(self, cache_store: Any) -> None:
        cache_store.set_value("d4" * 32, 1, "step", "code")
        cache_store.set_value("e5" * 32, 2, "step", "code")
        dropped = cache_store.invalidate(key="d4" * 32)
        assert dropped == 1, f"invalidate(key=...) of a stored key must return 1 (entries dropped), got {dropped!r}"
        assert cache_store.get("d4" * 32) is None, "an invalidated key must be a miss"
        other = cache_store.get("e5" * 32)
        assert other is not None and other.value == 2, "invalidating one key must leave the others"
        again = cache_store.invalidate(key="d4" * 32)
        assert again == 0, f"invalidating a key already gone must return 0, got {again!r}"

    def test_invalidate_by_step_name(self, cache_store: Any) -> None:
        for i in range(3):
            cache_store.set_value(f"{i:064d}", i, "train", "code")
        cache_store.set_value("f6" * 32, "keep", "evaluate", "code")
        dropped = cache_store.invalidate(step_name="train")
        assert dropped == 3, f"invalidate(step_name='train') must drop that step's 3 entries and return 3, got {dropped!r}"
        assert all(cache_store.get(f"{i:064d}") is None for i in range(3)), "an entry of the invalidated step is still a hit"
        kept = cache_store.get("f6" * 32)
        assert kept is not None and kept.value == "keep", "invalidating one step must leave other steps' entries"

    def test_clear_and_stats(self, cache_store: Any) -> None:
        cache_store.set_value("a7" * 32, b"x" * 1000, "step", "code")
        cache_store.set_value("b8" * 32, b"y" * 1000, "step", "code")
        stats = cache_store.stats()
        assert stats["entries"] == 2 and stats["bytes"] >= 2000, (
            f"stats() after two entries of 1000 bytes must report entries=2 and bytes>=2000, got {stats!r}"
        )
        cache_store.clear()
        assert cache_store.get("a7" * 32) is None and cache_store.get("b8" * 32) is None, "clear() left entries that still hit"
        after = cache_store.stats()
        assert after["entries"] == 0, f"stats() after clear() must report 0 entries, got {after!r}"

    def test_another_instance_sees_the_entries(self, cache_store: Any) -> None:
        cache_store.set_value("c9" * 32, [1, 2], "step", "code")
        other = self.reopen(cache_store)
        seen = other.get("c9" * 32)
        assert seen is not None and seen.value == [1, 2], (
            f"a pickled copy of the store (as executors send to workers) must see the entries; got {seen!r}"
        )
        other.set_value("d0" * 32, "from the copy", "step", "code")
        back = cache_store.get("d0" * 32)
        assert back is not None and back.value == "from the copy", (
            f"an entry written through a pickled copy must be seen by the original; got {back!r}"
        )

    def test_an_unstorable_value_fails_loudly_and_leaves_no_entry(self, cache_store: Any) -> None:
        with pytest.raises(Exception):
            cache_store.set_value("e1" * 32, _Unpicklable(), "step", "code")
        assert cache_store.get("e1" * 32) is None, "a value that could not be stored left an entry behind"

    def test_concurrent_writers(self, cache_store: Any) -> None:
        """Writers on one key leave one whole value; writers on distinct keys all land; readers never see torn data."""
        values = [bytes([i]) * 200_000 for i in range(self.concurrent_writers)]
        seen: list[Any] = []

        def write(i: int) -> None:
            store = self.reopen(cache_store) if i % 2 else cache_store
            store.set_value("ab" * 32, values[i], "step", "code")
            store.set_value(f"{i:064d}", values[i], "step", "code")
            entry = store.get("ab" * 32)
            seen.append(None if entry is None else entry.value)

        errors = _run_threads(write, self.concurrent_writers)
        assert not errors, f"concurrent writers raised: {errors}"
        assert all(v is None or v in values for v in seen), "a reader saw a torn or mixed value"
        final = cache_store.get("ab" * 32)
        assert final is not None and final.value in values, "after concurrent writes to one key it holds no whole value"
        for i in range(self.concurrent_writers):
            own = cache_store.get(f"{i:064d}")
            assert own is not None and own.value == values[i], f"writer {i}'s own key lost its value under concurrency"

    def test_altered_bytes_are_a_miss(self, cache_store: Any) -> None:
        value = self.big_value()
        self._altered(cache_store, lambda: cache_store.set_value("f1" * 32, value, "step", "code"), tamper.flip_middle_byte)
        assert cache_store.get("f1" * 32) is None, "an altered cache entry must be a miss"

    def test_truncated_bytes_are_a_miss(self, cache_store: Any) -> None:
        value = self.big_value()
        self._altered(cache_store, lambda: cache_store.set_value("f2" * 32, value, "step", "code"), tamper.truncate_half)
        assert cache_store.get("f2" * 32) is None, "a truncated cache entry must be a miss"

    def test_replaced_bytes_are_never_unpickled(self, cache_store: Any, tmp_path: Path) -> None:
        marker = tmp_path / "kit-pwned"
        value = self.big_value()
        self._altered(cache_store, lambda: cache_store.set_value("f3" * 32, value, "step", "code"),
                      lambda _: tamper.malicious_pickle(str(marker)))
        entry = cache_store.get("f3" * 32)
        assert not marker.exists(), "the store unpickled bytes it did not write"
        assert entry is None, "an entry replaced by foreign bytes must be a miss"


    def test_prune_frees_what_it_is_asked_to_and_a_dry_run_nothing(self, cache_store: Any) -> None:
        """``flowyml cache prune``: complete entries survive a plain prune; ``dry_run`` deletes nothing."""
        keys = [f"{i:064d}" for i in range(3)]
        for i, key in enumerate(keys):
            cache_store.set_value(key, {"i": i}, "step", "code")
        report = cache_store.prune()
        assert set(report) >= {"removed", "bytes", "dry_run"} and report["dry_run"] is False, report
        assert [cache_store.get(k).value for k in keys] == [{"i": i} for i in range(3)]
        if report.get("supported") is False:  # the contract's default: removes nothing, and says so
            assert report["removed"] == {} and cache_store.prune(older_than=0)["removed"] == {}
            assert all(cache_store.get(k) is not None for k in keys)
            return
        assert cache_store.prune(older_than=3600)["removed"] == {}, "entries just written are not older than an hour"
        dry = cache_store.prune(older_than=0, dry_run=True)
        assert dry["dry_run"] is True and sum(dry["removed"].values()) >= 3, dry
        assert all(cache_store.get(k) is not None for k in keys), "a dry run must delete nothing"
        done = cache_store.prune(older_than=0)
        assert sum(done["removed"].values()) >= 3 and done["bytes"] > 0, done
        assert all(cache_store.get(k) is None for k in keys)


class ArtifactStoreContract(StoreContractBase):
    """Abstract test class: subclass it and provide an ``artifact_store`` fixture."""

    @pytest.fixture
    def artifact_store(self) -> Any:
        raise NotImplementedError("provide an `artifact_store` fixture that returns your artifact store")

    def test_round_trip_and_uri(self, artifact_store: Any) -> None:
        uri = artifact_store.materialize({"accuracy": 0.93}, "metrics", "run-1", "evaluate", project_name="kit")
        assert isinstance(uri, str) and uri, f"materialize() must return the artifact's URI, got {uri!r}"
        expected = artifact_store.uri_for("run-1", "evaluate", "metrics", project_name="kit")
        assert uri == expected, f"materialize() stored at {uri}, but uri_for() says {expected}"
        assert artifact_store.exists(uri), f"exists() is false for the URI materialize() just returned ({uri})"
        loaded = artifact_store.load(uri)
        assert loaded == {"accuracy": 0.93}, f"load() gave back {loaded!r}, not what was materialized"
        again = artifact_store.load_artifact("run-1", "evaluate", "metrics", project_name="kit")
        assert again == {"accuracy": 0.93}, f"load_artifact(run, step, name) gave back {again!r}"

    @pytest.mark.parametrize("kind", sorted(SAMPLE_VALUES))
    def test_values_of_common_types_round_trip(self, artifact_store: Any, kind: str) -> None:
        uri = artifact_store.materialize(SAMPLE_VALUES[kind], f"out_{kind}", "run-types", "produce")
        loaded, value = artifact_store.load(uri), SAMPLE_VALUES[kind]
        if isinstance(value, tuple):  # a JSON-like format may give back a list
            assert list(loaded) == list(value), f"a {kind} value came back as {loaded!r}"
        else:
            assert loaded == value and type(loaded) is type(value), (
                f"a {kind} value came back as a {type(loaded).__name__}: {loaded!r}"
            )

    def test_numpy_arrays_round_trip(self, artifact_store: Any) -> None:
        np = pytest.importorskip("numpy")
        array = np.arange(12, dtype="float32").reshape(3, 4)
        loaded = artifact_store.load(artifact_store.materialize(array, "array", "run-np", "produce"))
        assert loaded.dtype == array.dtype and loaded.shape == array.shape and (loaded == array).all(), (
            f"a float32 3x4 numpy array came back as {getattr(loaded, 'dtype', type(loaded).__name__)} "
            f"{getattr(loaded, 'shape', '')}"
        )

    def test_missing_artifact(self, artifact_store: Any) -> None:
        uri = artifact_store.uri_for("no-such-run", "step", "output")
        assert not artifact_store.exists(uri), f"exists() is true for an artifact never written ({uri})"
        with pytest.raises((FileNotFoundError, KeyError, FlowymlError)):
            artifact_store.load(uri)

    def test_runs_steps_and_projects_do_not_collide(self, artifact_store: Any) -> None:
        places = [("r1", "s", "n", "p"), ("r2", "s", "n", "p"), ("r1", "t", "n", "p"), ("r1", "s", "m", "p"), ("r1", "s", "n", "q")]
        uris = [artifact_store.materialize(i, name, run, step, project_name=proj) for i, (run, step, name, proj) in enumerate(places)]
        assert len(set(uris)) == len(places), (
            f"artifacts of different runs, steps, names or projects must not share a URI: {uris}"
        )
        loaded = [artifact_store.load(u) for u in uris]
        assert loaded == list(range(len(places))), f"artifacts overwrote each other: loaded {loaded}"

    def test_overwrite_keeps_the_newest(self, artifact_store: Any) -> None:
        artifact_store.materialize([1], "out", "run-ow", "step")
        uri = artifact_store.materialize([2], "out", "run-ow", "step")
        loaded = artifact_store.load(uri)
        assert loaded == [2], f"materializing one artifact twice must keep the second value; got {loaded!r}"

    def test_another_instance_reads_the_artifacts(self, artifact_store: Any) -> None:
        uri = artifact_store.materialize("shared", "out", "run-copy", "step")
        loaded = self.reopen(artifact_store).load(uri)
        assert loaded == "shared", f"a pickled copy of the store (as sent to workers) read {loaded!r} at {uri}"

    def test_concurrent_writers(self, artifact_store: Any) -> None:
        values = [bytes([i]) * 200_000 for i in range(self.concurrent_writers)]

        def write(i: int) -> None:
            store = self.reopen(artifact_store) if i % 2 else artifact_store
            store.materialize(values[i], "same", "run-race", "step")
            store.materialize(values[i], f"own_{i}", "run-race", "step")

        errors = _run_threads(write, self.concurrent_writers)
        assert not errors, f"concurrent writers raised: {errors}"
        assert artifact_store.load(artifact_store.uri_for("run-race", "step", "same")) in values, (
            "after concurrent writes to one artifact it holds no whole value"
        )
        for i in range(self.concurrent_writers):
            own = artifact_store.load(artifact_store.uri_for("run-race", "step", f"own_{i}"))
            assert own == values[i], f"writer {i}'s own artifact lost its value under concurrency"

    def test_altered_bytes_are_refused(self, artifact_store: Any) -> None:
        value = self.big_value()
        self._altered(artifact_store, lambda: artifact_store.materialize(value, "out", "run-alter", "step"), tamper.flip_middle_byte)
        with pytest.raises(IntegrityError):
            artifact_store.load(artifact_store.uri_for("run-alter", "step", "out"))

    def test_truncated_bytes_are_refused(self, artifact_store: Any) -> None:
        value = self.big_value()
        self._altered(artifact_store, lambda: artifact_store.materialize(value, "out", "run-trunc", "step"), tamper.truncate_half)
        with pytest.raises(IntegrityError):
            artifact_store.load(artifact_store.uri_for("run-trunc", "step", "out"))

    def test_replaced_bytes_are_never_unpickled(self, artifact_store: Any, tmp_path: Path) -> None:
        marker = tmp_path / "kit-pwned"
        for i, obj in enumerate([self.big_value(), {"a": list(range(5000))}]):
            uri = artifact_store.uri_for("run-replace", "step", f"out{i}")
            self._altered(artifact_store, lambda obj=obj, i=i: artifact_store.materialize(obj, f"out{i}", "run-replace", "step"),
                          lambda _: tamper.malicious_pickle(str(marker)))
            with pytest.raises(IntegrityError):
                artifact_store.load(uri)
            assert not marker.exists(), "the store unpickled bytes it did not write"

    def test_prune_keeps_the_newest_runs_and_a_dry_run_everything(self, artifact_store: Any) -> None:
        """``flowyml cache prune --keep-runs N``: older runs' artifacts go, the newest stay; ``dry_run`` deletes nothing."""
        old = artifact_store.materialize({"run": "old"}, "out", "run-old", "step")
        time.sleep(1.1)  # object stores keep modification times to about a second
        new = artifact_store.materialize({"run": "new"}, "out", "run-new", "step")
        report = artifact_store.prune()
        assert set(report) >= {"removed", "bytes", "dry_run"}, report
        assert artifact_store.load(old) == {"run": "old"} and artifact_store.load(new) == {"run": "new"}
        if report.get("supported") is False:  # the contract's default: removes nothing, and says so
            assert report["removed"] == {} and artifact_store.prune(keep_runs=0)["removed"] == {}
            assert artifact_store.exists(old) and artifact_store.exists(new)
            return
        dry = artifact_store.prune(keep_runs=1, dry_run=True)
        assert dry["dry_run"] is True and dry["removed"], dry
        assert artifact_store.exists(old), "a dry run must delete nothing"
        done = artifact_store.prune(keep_runs=1)
        assert done["removed"] == dry["removed"] and done["bytes"] > 0, (done, dry)
        assert not artifact_store.exists(old)
        assert artifact_store.load(new) == {"run": "new"}
