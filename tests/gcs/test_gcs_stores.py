"""GCS stores against the real emulator: formats, big artifacts, listing, integrity, trust,
concurrent writers, faults (drops, delays, 503) and validate()."""

from __future__ import annotations

import json
import os
import pickle
import re
import threading
import time

import pytest

from flowyml_core.errors import ConfigError, FlowymlError, IntegrityError
from flowyml_gcs.config import GcsArtifactStoreConfig, GcsCacheStoreConfig
from flowyml_gcs.stores import GcsArtifactStore, GcsCacheStore
from flowyml_local import digests
from flowyml_local.entries import ARTIFACT_MAGIC
from flowyml_local.fsstore import UntrustedPickleError
from flowyml_local.retries import StoreUnavailableError

from tests.stores.samples import Model, assert_same, np, sample


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def object_path(uri: str) -> str:
    return uri[len("gs://"):]


# -- formats -------------------------------------------------------------------------
@pytest.mark.parametrize("materializer", ["json", "bytes", "npy", "parquet", "pickle"])
def test_every_materializer_round_trips(gcs_artifacts, gcs_cache, gcs_fs, materializer):
    value = sample(materializer)
    uri = gcs_artifacts.materialize(value, materializer, "run-1", "step")
    assert uri.startswith("gs://") and uri == gcs_artifacts.uri_for("run-1", "step", materializer)
    meta = gcs_artifacts.metadata(uri)
    assert meta["materializer"] == materializer
    # one object where the layout says: magic line, JSON header line, payload
    raw = gcs_fs.cat_file(object_path(uri))
    assert uri.endswith(f"/run-1/step.{materializer}") and raw.startswith(ARTIFACT_MAGIC)
    assert json.loads(raw[len(ARTIFACT_MAGIC):raw.index(b"\n", len(ARTIFACT_MAGIC))]) == meta
    loaded = gcs_artifacts.load(uri)
    gcs_cache.set_value("ab" * 32, value, "step", "code", fingerprint="fp")
    cached = gcs_cache.get("ab" * 32)
    assert cached.fingerprint == "fp"
    for got in (loaded, cached.value):
        assert_same(got, value, materializer)


def test_none_in_the_cache_is_a_hit(gcs_cache):
    gcs_cache.set_value("ab" * 32, None, "returns_none", "code")
    entry = gcs_cache.get("ab" * 32)
    assert entry is not None and entry.value is None and entry.step_name == "returns_none"
    assert gcs_cache.get("cd" * 32) is None
    stats = gcs_cache.stats()
    assert stats["entries"] == 1 and (stats["hits"], stats["misses"]) == (1, 1)


def test_invalidate_and_clear(gcs_cache):
    for i in range(3):
        gcs_cache.set_value(f"{i:064d}", i, "train", "code")
    gcs_cache.set_value("ef" * 32, "keep", "evaluate", "code")
    assert gcs_cache.invalidate(key=f"{0:064d}") == 1
    assert gcs_cache.invalidate(step_name="train") == 2
    assert gcs_cache.get("ef" * 32).value == "keep"
    gcs_cache.clear()
    assert gcs_cache.stats()["entries"] == 0


@pytest.mark.parametrize("kind", ["bytes", "npy"])
def test_large_artifacts(gcs_artifacts, kind):
    size = 64 * 1024 * 1024
    value = os.urandom(size) if kind == "bytes" else np.frombuffer(os.urandom(size), dtype="float64").copy()
    uri = gcs_artifacts.materialize(value, "big", "run-big", "step")
    meta = gcs_artifacts.metadata(uri)
    assert meta["materializer"] == kind and meta["size"] >= size
    loaded = gcs_artifacts.load(uri)
    if kind == "bytes":
        assert loaded == value
    else:
        np.testing.assert_array_equal(loaded, value)
        assert loaded.flags.writeable


def test_listing(gcs_artifacts):
    a = gcs_artifacts.materialize(1, "a", "run-1", "s1")
    b = gcs_artifacts.materialize(2, "b", "run-1", "s2")
    c = gcs_artifacts.materialize(3, "c", "run-2", "s1")
    assert gcs_artifacts.list_artifacts() == sorted([a, b, c])
    assert gcs_artifacts.list_artifacts(run_id="run-1", project_name="default") == sorted([a, b])
    assert gcs_artifacts.list_artifacts(run_id="run-2", step_name="s1", project_name="default") == [c]
    assert gcs_artifacts.delete(a) and not gcs_artifacts.exists(a)
    assert gcs_artifacts.list_artifacts(run_id="run-1", project_name="default") == [b]


# -- integrity and trust ----------------------------------------------------------------
def test_altered_bytes_are_refused(gcs_artifacts, gcs_fs):
    uri = gcs_artifacts.materialize(np.arange(1000.0), "arr", "run", "step")
    raw = bytearray(gcs_fs.cat_file(object_path(uri)))
    raw[-1] ^= 1
    gcs_fs.pipe_file(object_path(uri), bytes(raw))
    with pytest.raises(IntegrityError, match="failed its integrity check.*digest"):
        gcs_artifacts.load(uri)


def test_objects_of_the_earlier_layout_read_as_absent(gcs_artifacts, gcs_fs):
    """An upload either completes (one object) or leaves nothing; an old per-artifact prefix is not an artifact."""
    uri = gcs_artifacts.uri_for("run", "step", "out")
    gcs_fs.pipe_file(object_path(uri) + "/data-0000000000000000.bin", b"an earlier version's data object")
    assert not gcs_artifacts.exists(uri)
    with pytest.raises(FileNotFoundError):
        gcs_artifacts.load(uri)


def test_planted_pickle_is_refused_and_opt_in_works(gcs_emulator, gcs_bucket, gcs_fs, tmp_path):
    url = f"gs://{gcs_bucket}/artifacts"
    store = GcsArtifactStore(GcsArtifactStoreConfig(url=url, endpoint=gcs_emulator.url))
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Planted(str(marker)))
    uri = store.uri_for("run", "step", "planted")
    meta = {"type": "builtins.int", "materializer": "pickle", "size": len(payload), "created": 0.0,
            "digest": digests.of(digests.SECURE, payload)}
    gcs_fs.pipe_file(object_path(uri), ARTIFACT_MAGIC + json.dumps(meta).encode() + b"\n" + payload)
    with pytest.raises(UntrustedPickleError, match="allow_unsigned_pickle = true"):
        store.load(uri)
    assert not marker.exists()
    trusting = GcsArtifactStore(GcsArtifactStoreConfig(url=url, endpoint=gcs_emulator.url, allow_unsigned_pickle=True))
    trusting.load(uri)
    assert marker.is_dir()


def test_pickles_signed_with_a_shared_key_load_elsewhere(gcs_emulator, gcs_bucket, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWYML_SIGNING_KEY", "team-key")
    cfg = dict(url=f"gs://{gcs_bucket}/c", endpoint=gcs_emulator.url, signing_key=os.environ["FLOWYML_SIGNING_KEY"])
    GcsCacheStore(GcsCacheStoreConfig(**cfg)).set_value("ab" * 32, Model([1]), "s", "c")
    # another machine (another user's config dir) with the same key reads it
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
    assert GcsCacheStore(GcsCacheStoreConfig(**cfg)).get("ab" * 32).value == Model([1])
    # without the key (the per-user key of that machine) it is a miss, not code execution
    assert GcsCacheStore(GcsCacheStoreConfig(url=cfg["url"], endpoint=cfg["endpoint"])).get("ab" * 32) is None


# -- concurrency ---------------------------------------------------------------------
def test_concurrent_writers_to_one_key_last_complete_write_wins(gcs_artifacts, gcs_cache):
    values = [bytes([i]) * (2_000_000 + i) for i in range(4)]
    uri = gcs_artifacts.uri_for("run", "step", "same")
    gcs_artifacts.materialize(values[0], "same", "run", "step")
    gcs_cache.set_value("ab" * 32, values[0], "step", "code")
    errors, seen = [], []
    stop = threading.Event()

    def write(i):
        try:
            artifacts, cache = pickle.loads(pickle.dumps(gcs_artifacts)), pickle.loads(pickle.dumps(gcs_cache))
            for _ in range(3):
                artifacts.materialize(values[i], "same", "run", "step")
                cache.set_value("ab" * 32, values[i], "step", "code")
        except BaseException as exc:
            errors.append(exc)

    def read():
        while not stop.is_set():
            try:
                seen.append(gcs_artifacts.load(uri))
                entry = gcs_cache.get("ab" * 32)
                assert entry is not None
                seen.append(entry.value)
            except BaseException as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(i,)) for i in range(len(values))]
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert not errors, errors[:3]
    assert seen and all(v in values for v in seen), "a reader saw a mixed or torn value"
    assert gcs_artifacts.load(uri) in values
    assert gcs_cache.stats()["corrupt"] == 0


# -- faults --------------------------------------------------------------------------
def faulty_stores(fault_proxy, bucket, **options):
    cfg = dict(endpoint=fault_proxy.url, retry_delay=0.05, **options)
    return (GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{bucket}/artifacts", **cfg)),
            GcsCacheStore(GcsCacheStoreConfig(url=f"gs://{bucket}/cache", **cfg)))


def test_drops_delays_and_503s_are_retried(fault_proxy, gcs_bucket, gcs_emulator):
    artifacts, cache = faulty_stores(fault_proxy, gcs_bucket)
    direct = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/artifacts", endpoint=gcs_emulator.url))
    artifacts.backend  # import gcsfs and build the filesystem before faults start
    fault_proxy.set_faults(drop=0.1, error503=0.1, delay=0.1, delay_ms=100, seed=3)
    expected = {}
    for i in range(6):
        value = {"i": i, "rows": list(range(i * 100))} if i % 2 else np.arange(i * 1000.0)
        uri = artifacts.materialize(value, f"out{i}", "run", "step")
        expected[uri] = value
        cache.set_value(f"{i:064d}", value, "step", "code")
    big = os.urandom(8 * 1024 * 1024)
    expected[artifacts.materialize(big, "big", "run", "step")] = big
    for uri, value in expected.items():
        for store in (artifacts, direct):
            got = store.load(uri)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(got, value)
            else:
                assert got == value
    for i in range(6):
        assert cache.get(f"{i:064d}") is not None
    fault_proxy.clear_faults()
    stats = fault_proxy.stats
    assert stats["drop"] and stats["error503"] and stats["delay"], stats


def test_readers_never_see_half_written_data_under_faults(fault_proxy, gcs_bucket, gcs_emulator):
    """A writer going through a faulty network, a reader on a clean one: every read is complete or absent."""
    artifacts, cache = faulty_stores(fault_proxy, gcs_bucket)
    artifacts.backend
    reader_store = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/artifacts", endpoint=gcs_emulator.url))
    values = [bytes([i]) * (1_500_000 + i) for i in range(3)]
    uri = artifacts.uri_for("run", "step", "x")
    seen, errors = [], []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.append(reader_store.load(uri))
            except FileNotFoundError:
                seen.append(None)
            except BaseException as exc:
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    fault_proxy.set_faults(drop=0.15, error503=0.15, seed=11)
    try:
        for value in values:
            try:
                artifacts.materialize(value, "x", "run", "step")
            except Exception as exc:  # a write may fail cleanly after its retries: fine, but it must be whole or absent
                print("write failed cleanly:", type(exc).__name__)
    finally:
        fault_proxy.clear_faults()
        stop.set()
        reader.join()
    assert not errors, errors[:3]
    assert all(v is None or v in values for v in seen)
    assert reader_store.load(uri) in values


#: The methods of object uploads (gcsfs: POST for simple and resumable uploads, PUT for their chunks).
UPLOADS = {"POST", "PUT"}


def test_a_persistent_outage_fails_cleanly(fault_proxy, gcs_bucket):
    """Every upload answered 503, retries=0: one request, one clear error, nothing reads as valid."""
    artifacts, _ = faulty_stores(fault_proxy, gcs_bucket, retries=0)
    artifacts.backend
    fault_proxy.set_faults(error503=1.0, methods=UPLOADS)
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        artifacts.materialize({"a": 1}, "doomed", "run", "step")
    elapsed = time.monotonic() - start
    fault_proxy.clear_faults()
    message = str(info.value)
    assert "after 1 attempt " in message and "503" in message and "raise the retries option" in message, message
    assert fault_proxy.stats["error503"] == 1  # gcsfs's own retries are off: the store's policy is the only layer
    assert elapsed < 5, elapsed  # was ~35 s with gcsfs's 6 tries and their 1-16 s backoff
    uri = artifacts.uri_for("run", "step", "doomed")
    assert not artifacts.exists(uri)
    with pytest.raises(FileNotFoundError):
        artifacts.load(uri)


def test_an_outage_fails_within_the_deadline(fault_proxy, gcs_bucket):
    """A sustained outage (every upload answered 503) ends the write when the deadline is spent, not minutes later."""
    artifacts, _ = faulty_stores(fault_proxy, gcs_bucket, deadline=3.0)  # retries unset: the deadline decides
    artifacts.backend
    fault_proxy.set_faults(error503=1.0, methods=UPLOADS)
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        artifacts.materialize({"a": 1}, "doomed", "run", "step")
    elapsed = time.monotonic() - start
    fault_proxy.clear_faults()
    message = str(info.value)
    assert 1.0 < elapsed < 3.0 + 1.0, elapsed  # it kept trying for most of the budget, and stopped within it
    attempts = int(re.search(r"after (\d+) attempts", message).group(1))
    # how many fit in the budget depends on the machine's load; each attempt must be one request
    assert attempts == fault_proxy.stats["error503"] and attempts >= 3, (attempts, fault_proxy.stats)
    uri = artifacts.uri_for("run", "step", "doomed")
    assert message.startswith(f"the store at {uri} did not answer"), message  # one object: the artifact
    assert " did not answer a write within 3 s (gave up after " in message, message
    assert "last error: HttpError: FaultProxy: injected 503 Service Unavailable" in message, message
    assert "raise the deadline option of the artifact_store (flavor gcs) in stacks.toml (now 3 s)" in message, message
    assert isinstance(info.value.__cause__, Exception) and "503" in str(info.value.__cause__)
    assert not artifacts.exists(uri)


def test_a_request_that_hangs_is_abandoned_at_the_deadline(fault_proxy, gcs_bucket):
    """An answer that never comes in time (the proxy holds each upload 8 s) is cut off at the deadline."""
    artifacts, _ = faulty_stores(fault_proxy, gcs_bucket, deadline=2.0)
    artifacts.backend
    fault_proxy.set_faults(delay=1.0, delay_ms=8000, methods=UPLOADS)
    start = time.monotonic()
    try:
        with pytest.raises(StoreUnavailableError, match=r"did not answer a write within 2 s \(gave up after 1 attempt "
                                                        r"in 2\.\d s; last error: FSTimeoutError"):
            artifacts.materialize({"a": 1}, "slow", "run", "step")
        elapsed = time.monotonic() - start
    finally:
        fault_proxy.clear_faults()
    assert 2.0 <= elapsed < 2.0 + 1.0, elapsed


def test_a_read_through_an_outage_fails_within_the_deadline(fault_proxy, gcs_bucket):
    """Reads share the budget: an artifact that cannot be fetched ends the load at the deadline, with the object named."""
    artifacts, _ = faulty_stores(fault_proxy, gcs_bucket, deadline=2.0)
    uri = artifacts.materialize(np.arange(1000.0), "x", "run", "step")
    fault_proxy.set_faults(drop=1.0, path_contains="step.x")
    start = time.monotonic()
    try:
        with pytest.raises(StoreUnavailableError, match=r"did not answer a read within 2 s .*last error: "):
            artifacts.load(uri)
    finally:
        fault_proxy.clear_faults()
    assert time.monotonic() - start < 2.0 + 1.0
    np.testing.assert_array_equal(artifacts.load(uri), np.arange(1000.0))  # and it reads again once GCS is back


def test_once_a_request_gave_up_the_next_ones_are_tried_once(fault_proxy, gcs_bucket):
    """In an outage a step must not wait one deadline for the cache and another for its output: after a request
    gives up, the requests that follow (from any store on that filesystem) are tried once, until one is answered."""
    artifacts, cache = faulty_stores(fault_proxy, gcs_bucket, deadline=2.0)
    assert artifacts.backend.fs.storage_options == cache.backend.fs.storage_options  # one service, same options
    fault_proxy.set_faults(error503=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"did not answer a write within 2 s \(gave up after \d+ attempts"):
            artifacts.materialize({"a": 1}, "first", "run", "step")
        assert 0.5 < time.monotonic() - start < 3.0  # retried until the next backoff would overrun the deadline
        before = fault_proxy.stats["error503"]
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"did not answer a write \(tried once: another request to this "
                                                        r"service gave up \d+\.\d s ago, after its whole retry budget; "
                                                        r"last error: HttpError: .*503"):
            artifacts.materialize({"a": 2}, "second", "run", "step")
        assert cache.get("0" * 64) is None  # the cache store shares the filesystem: a miss, at once
        assert time.monotonic() - start < 1.0
        assert fault_proxy.stats["error503"] - before == 2  # one request each
    finally:
        fault_proxy.clear_faults()
    uri = artifacts.materialize({"a": 3}, "third", "run", "step")  # the first answer ends it...
    assert artifacts.load(uri) == {"a": 3}
    fault_proxy.set_faults(error503=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"within 2 s \(gave up after"):  # ...so a new outage gets the whole budget
            artifacts.materialize({"a": 4}, "fourth", "run", "step")
        assert time.monotonic() - start > 0.5
    finally:
        fault_proxy.clear_faults()


def test_an_expired_token_is_retried_other_auth_errors_are_not():
    """gcsfs's own retry layer (now off) retried 401 "Invalid Credentials" (a token that expired in flight); ours does."""
    from gcsfs.retry import HttpError

    from flowyml_local.retries import is_transient

    assert is_transient(HttpError({"code": 401, "message": "Invalid Credentials"}))
    assert not is_transient(HttpError({"code": 401, "message": "Anonymous caller does not have storage.objects.get access"}))
    assert not is_transient(HttpError({"code": 403, "message": "Forbidden"}))
    assert is_transient(HttpError({"code": 503, "message": "Service Unavailable"}))


def test_store_budget_options_are_checked():
    with pytest.raises(ValueError, match="deadline must be > 0 seconds"):
        GcsArtifactStoreConfig(url="gs://b/p", deadline=0)
    with pytest.raises(ValueError, match="retries must be >= 0"):
        GcsArtifactStoreConfig(url="gs://b/p", retries=-1)


# -- validate ------------------------------------------------------------------------
def test_validate_passes_on_a_usable_bucket(gcs_artifacts, gcs_cache):
    gcs_artifacts.validate()
    gcs_cache.validate()


def test_validate_names_a_missing_bucket(gcs_emulator):
    store = GcsArtifactStore(GcsArtifactStoreConfig(url="gs://no-such-bucket-xyz/prefix", endpoint=gcs_emulator.url))
    with pytest.raises(FlowymlError, match=r"bucket 'no-such-bucket-xyz' .* does not exist; create it"):
        store.validate()
    cache = GcsCacheStore(GcsCacheStoreConfig(url="gs://no-such-bucket-xyz/cache", endpoint=gcs_emulator.url))
    with pytest.raises(FlowymlError, match="no-such-bucket-xyz"):
        cache.validate()


def test_bad_credentials_are_reported_with_the_bucket(gcs_emulator, gcs_bucket, tmp_path):
    missing = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/a", endpoint=gcs_emulator.url,
                                                      token=str(tmp_path / "missing.json")))
    with pytest.raises(ConfigError, match=f"bucket '{gcs_bucket}'.*credentials file") as info:
        missing.validate()
    assert "missing.json" not in str(info.value)  # the token option is a secret: never echoed
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "service_account", "private_key": "not a key"}')
    store = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/a", endpoint=gcs_emulator.url,
                                                    token=str(broken)))
    with pytest.raises(ConfigError, match=f"bucket '{gcs_bucket}': credentials could not be loaded"):
        store.validate()
    with pytest.raises(ConfigError, match="does not parse"):
        GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/a", token="{not json")).validate()


def test_config_checks_the_url():
    with pytest.raises(ValueError, match="gs://BUCKET/PREFIX"):
        GcsArtifactStoreConfig(url="s3://bucket/x")
    cfg = GcsCacheStoreConfig(url="gs://bucket", token="secret-value")
    assert "secret-value" not in repr(cfg)
    assert GcsCacheStore(cfg).to_dict()["token"] == "****"


def test_validate_fails_fast_when_nothing_answers(gcs_emulator):
    from tests.servers.gcs_emulator import free_port

    store = GcsCacheStore(GcsCacheStoreConfig(url="gs://some-bucket/c", endpoint=f"http://127.0.0.1:{free_port()}"))
    start = time.monotonic()
    with pytest.raises(FlowymlError, match=r"bucket 'some-bucket' .*cannot reach 127.0.0.1:\d+"):
        store.validate()
    assert time.monotonic() - start < 10


def test_prune_on_gcs(gcs_artifacts, gcs_cache):
    """Uploads are atomic, so GCS has no temp files; prune removes old runs, and the cache's old entries."""
    old = gcs_artifacts.materialize(b"old run", "out", "run-old", "step")
    time.sleep(1.1)  # object times have a resolution of a second or so
    new = gcs_artifacts.materialize(b"new run", "out", "run-new", "step")
    assert gcs_artifacts.prune() == {"removed": {}, "bytes": 0, "dry_run": False}
    assert gcs_artifacts.prune(keep_runs=1, dry_run=True)["removed"] == {"runs": 1, "artifacts": 1}
    assert gcs_artifacts.exists(old)
    report = gcs_artifacts.prune(keep_runs=1)
    assert report["removed"] == {"runs": 1, "artifacts": 1} and report["bytes"] > len(b"old run")
    assert not gcs_artifacts.exists(old) and gcs_artifacts.load(new) == b"new run"
    gcs_cache.set_value("ab" * 32, 1, "s", "c")
    assert gcs_cache.prune(older_than=3600)["removed"] == {}
    assert gcs_cache.prune(older_than=0)["removed"] == {"entries": 1}
    assert gcs_cache.get("ab" * 32) is None
