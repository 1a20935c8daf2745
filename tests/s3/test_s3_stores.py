"""S3 stores against a real S3 API (moto's server): formats, a large artifact, trust, prune,
the retry budget through a fault proxy (drops, 503s), validate() and the config checks."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_core.testing.tamper import malicious_pickle
from flowyml_local import digests
from flowyml_local.entries import ARTIFACT_MAGIC
from flowyml_local.fsstore import UntrustedPickleError
from flowyml_local.retries import StoreUnavailableError, is_transient
from flowyml_s3.config import S3ArtifactStoreConfig, S3CacheStoreConfig
from flowyml_s3.stores import S3ArtifactStore, S3CacheStore

from tests.servers.fault_proxy import FaultProxy
from tests.servers.gcs_emulator import free_port
from tests.stores.samples import MATERIALIZERS, assert_same, np, sample



def object_path(uri: str) -> str:
    return uri[len("s3://"):]


def test_every_materializer_round_trips(s3_artifacts, s3_cache, s3_fs):
    for i, materializer in enumerate(MATERIALIZERS):
        value = sample(materializer)
        uri = s3_artifacts.materialize(value, materializer, "run-1", "step")
        assert uri == s3_artifacts.uri_for("run-1", "step", materializer) and uri.endswith(f"/run-1/step.{materializer}")
        meta = s3_artifacts.metadata(uri)
        assert meta["materializer"] == materializer
        raw = s3_fs.cat_file(object_path(uri))  # one object where the layout says: magic, JSON header, payload
        assert raw.startswith(ARTIFACT_MAGIC)
        assert json.loads(raw[len(ARTIFACT_MAGIC):raw.index(b"\n", len(ARTIFACT_MAGIC))]) == meta
        key = f"{i:064d}"
        s3_cache.set_value(key, value, "step", "code", fingerprint="fp")
        cached = s3_cache.get(key)
        assert cached.fingerprint == "fp"
        for got in (s3_artifacts.load(uri), cached.value):
            assert_same(got, value, materializer)


def test_a_large_artifact(s3_artifacts):
    """64 MB: read back as concurrent ranges straight into the array's buffer, checked against its digest."""
    size = 64 * 1024 * 1024
    value = np.frombuffer(os.urandom(size), dtype="float64").copy()
    uri = s3_artifacts.materialize(value, "big", "run-big", "step")
    assert s3_artifacts.metadata(uri)["size"] >= size
    loaded = s3_artifacts.load(uri)
    np.testing.assert_array_equal(loaded, value)
    assert loaded.flags.writeable


# -- integrity and trust ----------------------------------------------------------------
def test_altered_bytes_are_refused(s3_artifacts, s3_fs):
    uri = s3_artifacts.materialize(np.arange(1000.0), "arr", "run", "step")
    raw = bytearray(s3_fs.cat_file(object_path(uri)))
    raw[-1] ^= 1
    s3_fs.pipe_file(object_path(uri), bytes(raw))
    with pytest.raises(FlowymlError, match="failed its integrity check.*digest"):
        s3_artifacts.load(uri)


def test_planted_pickle_is_refused_and_opt_in_works(moto_s3, s3_bucket, s3_fs, tmp_path):
    url = f"s3://{s3_bucket}/artifacts"
    store = S3ArtifactStore(S3ArtifactStoreConfig(url=url, **moto_s3.store_options))
    marker = tmp_path / "pwned"
    payload = malicious_pickle(str(marker))
    uri = store.uri_for("run", "step", "planted")
    meta = {"type": "builtins.int", "materializer": "pickle", "size": len(payload), "created": 0.0,
            "digest": digests.of(digests.SECURE, payload)}
    s3_fs.pipe_file(object_path(uri), ARTIFACT_MAGIC + json.dumps(meta).encode() + b"\n" + payload)
    with pytest.raises(UntrustedPickleError, match="allow_unsigned_pickle = true"):
        store.load(uri)
    assert not marker.exists()  # the planted code did not run
    trusting = S3ArtifactStore(S3ArtifactStoreConfig(url=url, allow_unsigned_pickle=True, **moto_s3.store_options))
    trusting.load(uri)
    assert marker.is_dir()


def test_prune_on_s3(s3_artifacts, s3_cache):
    """Ages come from S3's LastModified: prune removes old runs, and the cache's old entries."""
    old = s3_artifacts.materialize(b"old run", "out", "run-old", "step")
    time.sleep(1.1)  # LastModified has a resolution of a second
    new = s3_artifacts.materialize(b"new run", "out", "run-new", "step")
    report = s3_artifacts.prune(keep_runs=1)
    assert report["removed"] == {"runs": 1, "artifacts": 1} and report["bytes"] > len(b"old run")
    assert not s3_artifacts.exists(old) and s3_artifacts.load(new) == b"new run"
    s3_cache.set_value("ab" * 32, 1, "s", "c")
    assert s3_cache.prune(older_than=3600)["removed"] == {}
    assert s3_cache.prune(older_than=0)["removed"] == {"entries": 1}
    assert s3_cache.get("ab" * 32) is None


# -- the retry budget ------------------------------------------------------------------
@pytest.fixture
def s3_fault_proxy(moto_s3):
    with FaultProxy(moto_s3.url) as proxy:
        yield proxy


def faulty_artifacts(proxy, moto_s3, bucket, **options):
    cfg = {**moto_s3.store_options, "endpoint_url": proxy.url, "retry_delay": 0.05, **options}
    store = S3ArtifactStore(S3ArtifactStoreConfig(url=f"s3://{bucket}/artifacts", **cfg))
    store.backend  # import s3fs and build the filesystem before faults start
    return store


def test_drops_and_503s_are_retried(s3_fault_proxy, moto_s3, s3_bucket):
    artifacts = faulty_artifacts(s3_fault_proxy, moto_s3, s3_bucket)
    s3_fault_proxy.set_faults(drop=0.15, error503=0.15, seed=5)
    try:
        values = {artifacts.materialize({"i": i, "rows": list(range(i * 50))}, f"out{i}", "run", "step"): i
                  for i in range(8)}
        for uri, i in values.items():
            assert artifacts.load(uri) == {"i": i, "rows": list(range(i * 50))}
    finally:
        s3_fault_proxy.clear_faults()
    stats = s3_fault_proxy.stats
    assert stats["drop"] and stats["error503"], stats


def write_through_503s(proxy, artifacts):
    """Write while every upload (PUT) is answered 503: the error and how long it took."""
    proxy.set_faults(error503=1.0, methods={"PUT"})
    start = time.monotonic()
    try:
        with pytest.raises(StoreUnavailableError) as info:
            artifacts.materialize({"a": 1}, "doomed", "run", "step")
    finally:
        proxy.clear_faults()
    assert not artifacts.exists(artifacts.uri_for("run", "step", "doomed"))
    return str(info.value), time.monotonic() - start


def test_one_attempt_is_one_request(s3_fault_proxy, moto_s3, s3_bucket):
    """retries=0 and every upload answered 503: one HTTP request (s3fs's and botocore's retries are off)."""
    artifacts = faulty_artifacts(s3_fault_proxy, moto_s3, s3_bucket, retries=0)
    message, elapsed = write_through_503s(s3_fault_proxy, artifacts)
    assert "after 1 attempt " in message and "raise the retries option of the artifact_store (flavor s3)" in message
    assert s3_fault_proxy.stats["error503"] == 1, s3_fault_proxy.stats
    assert elapsed < 3


def test_an_outage_fails_within_the_deadline(s3_fault_proxy, moto_s3, s3_bucket):
    artifacts = faulty_artifacts(s3_fault_proxy, moto_s3, s3_bucket, deadline=3.0)
    message, elapsed = write_through_503s(s3_fault_proxy, artifacts)
    assert 1.0 < elapsed < 3.0 + 1.0, elapsed  # it kept trying for most of the budget, and stopped within it
    attempts = int(re.search(r"after (\d+) attempts", message).group(1))
    # How many attempts fit in the budget depends on the machine's load (each one is a botocore
    # request); what must hold is that it retried, and that each attempt was one request.
    assert attempts == s3_fault_proxy.stats["error503"] and attempts >= 2, (attempts, s3_fault_proxy.stats)
    assert "raise the deadline option of the artifact_store (flavor s3) in stacks.toml (now 3 s)" in message


def test_botocore_errors_are_classified():
    """Connection errors and 5xx answers are worth retrying; missing credentials and 403 are not."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    def client_error(status, code):
        return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                           "PutObject")

    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(client_error(503, "SlowDown"))
    translated = OSError(16, "Please reduce your request rate")  # what s3fs raises for it, with the cause
    translated.__cause__ = client_error(503, "SlowDown")
    assert is_transient(translated)
    assert not is_transient(client_error(403, "AccessDenied"))
    assert not is_transient(NoCredentialsError())


# -- validate and the config ----------------------------------------------------------------
def test_validate_passes_on_a_usable_bucket(s3_artifacts, s3_cache):
    s3_artifacts.validate()
    s3_cache.validate()


def test_validate_names_a_missing_bucket(moto_s3):
    store = S3ArtifactStore(S3ArtifactStoreConfig(url="s3://no-such-bucket-xyz/prefix", **moto_s3.store_options))
    with pytest.raises(FlowymlError, match=r"^artifact_store s3: bucket 'no-such-bucket-xyz' .* does not exist; "
                                           r"create it \(aws s3 mb s3://no-such-bucket-xyz --region us-east-1\)"):
        store.validate()


def test_validate_fails_fast_when_nothing_answers():
    store = S3CacheStore(S3CacheStoreConfig(url="s3://some-bucket/c", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                            key="k", secret="s"))
    start = time.monotonic()
    with pytest.raises(FlowymlError, match=r"bucket 'some-bucket' .*cannot reach 127.0.0.1:\d+.*check the endpoint"):
        store.validate()
    assert time.monotonic() - start < 10


def test_missing_credentials_and_unknown_profiles_are_one_line(moto_s3, s3_bucket):
    endpoint = moto_s3.url
    anonymous = S3CacheStore(S3CacheStoreConfig(url=f"s3://{s3_bucket}/c", endpoint_url=endpoint))
    with pytest.raises(FlowymlError, match=rf"bucket '{s3_bucket}' .*no usable credentials \(NoCredentialsError"):
        anonymous.validate()
    profiled = S3CacheStore(S3CacheStoreConfig(url=f"s3://{s3_bucket}/c", endpoint_url=endpoint, profile="nobody"))
    with pytest.raises(FlowymlError, match=r"no usable credentials \(ProfileNotFound: .*nobody.*set key and secret"):
        profiled.validate()


def test_config_checks_the_url_and_the_credentials():
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        S3ArtifactStoreConfig(url="gs://bucket/x")
    with pytest.raises(ValueError, match="'My_Bucket' is not an S3 bucket name"):
        S3ArtifactStoreConfig(url="s3://My_Bucket/x")
    with pytest.raises(ValueError, match=r"key is set but secret is not: give both"):
        S3ArtifactStoreConfig(url="s3://bucket/x", key="AKIA")
    with pytest.raises(ValueError, match="token .* needs key and secret"):
        S3ArtifactStoreConfig(url="s3://bucket/x", token="t")
    with pytest.raises(ValueError, match="deadline must be > 0 seconds"):
        S3ArtifactStoreConfig(url="s3://bucket/x", deadline=0)
    cfg = S3CacheStoreConfig(url="s3a://bucket", key="key-value", secret="secret-value", token="token-value")
    assert not re.search("key-value|secret-value|token-value", repr(cfg))
    shown = S3CacheStore(cfg).to_dict()
    assert (shown["key"], shown["secret"], shown["token"]) == ("****", "****", "****")
    with pytest.raises(ConfigError, match="secret is empty") as info:
        S3CacheStore(S3CacheStoreConfig(url="s3://bucket/c", key="key-value", secret=" ")).backend
    assert "key-value" not in str(info.value)
