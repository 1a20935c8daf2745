"""The local artifact store: formats, layout, integrity, trust and atomic publication."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from flowyml_core.errors import ConfigError, FlowymlError, IntegrityError
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local import digests, localfs
from flowyml_local.entries import ARTIFACT_MAGIC
from flowyml_local.fsstore import ArtifactNotFoundError, UntrustedPickleError
from flowyml_local.signing import user_key_path

np = pytest.importorskip("numpy")


class Point:
    """A user class: only pickle can store it."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (other.x, other.y) == (self.x, self.y)

    def __repr__(self) -> str:  # also the test's id: the same in every pytest-xdist worker
        return f"Point({self.x}, {self.y})"


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def split_entry(uri: str) -> tuple[bytes, dict, bytes]:
    """The documented layout of an artifact file: magic line, JSON header line, payload."""
    raw = Path(uri).read_bytes()
    magic_end = raw.index(b"\n") + 1
    header_end = raw.index(b"\n", magic_end)
    return raw[:magic_end], json.loads(raw[magic_end:header_end]), raw[header_end + 1:]


def write_entry(uri: str, header: dict, payload: bytes, magic: bytes = ARTIFACT_MAGIC) -> None:
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    Path(uri).write_bytes(magic + json.dumps(header).encode() + b"\n" + payload)


def payload_of(uri: str) -> bytes:
    return split_entry(uri)[2]


def edit_payload(uri: str, change) -> None:
    """Rewrite the payload of an artifact file in place, keeping its header."""
    magic, header, payload = split_entry(uri)
    Path(uri).write_bytes(magic + json.dumps(header, separators=(",", ":")).encode() + b"\n" + change(payload))


# -- formats -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "materializer"),
    [
        ({"a": 1, "b": [1.5, "x", None, True]}, "json"),
        ([1, 2, 3], "json"),
        ("héllo", "json"),
        (12345678901234567890, "json"),
        (-0.0, "json"),
        (float("inf"), "json"),
        (None, "json"),
        (True, "json"),
        (b"\x00\xffraw", "bytes"),
        (bytearray(b"mutable"), "bytes"),
        ((1, 2), "pickle"),               # a tuple is not exact JSON
        ({1: "int key"}, "pickle"),       # neither are non-string keys
        ({"nested": (1, 2)}, "pickle"),
        ({1, 2, 3}, "pickle"),
        (Point(1, 2), "pickle"),
    ],
    ids=repr,
)
def test_each_value_round_trips_with_the_expected_format(artifacts, value, materializer):
    uri = artifacts.materialize(value, "out", "run-1", "step")
    meta = artifacts.metadata(uri)
    assert meta["materializer"] == materializer
    loaded = artifacts.load(uri)
    assert loaded == value and type(loaded) is type(value)
    if materializer == "json":  # the payload is plain JSON
        assert json.loads(payload_of(uri)) == value


def test_json_keeps_lone_surrogates(artifacts):
    value = {"s": "a\udc80b"}
    assert artifacts.load(artifacts.materialize(value, "s", "r", "step")) == value


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="float32").reshape(3, 4),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.arange(20)[::2],                                     # not contiguous: copied
        np.array(7),                                            # 0-d
        np.zeros((0, 3)),                                       # empty
        np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]"),
        np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]),          # structured
        np.array(["abc", "de"]),                                # unicode
    ],
    ids=lambda a: f"{a.dtype}-{a.shape}",
)
def test_numpy_arrays_round_trip_as_npy_without_pickle(artifacts, array):
    uri = artifacts.materialize(array, "arr", "run-np", "step")
    assert artifacts.metadata(uri)["materializer"] == "npy"
    loaded = artifacts.load(uri)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    loaded_again = np.load(io.BytesIO(payload_of(uri)), allow_pickle=False)  # a standard .npy payload
    np.testing.assert_array_equal(loaded_again, array)
    if loaded.size:
        assert loaded.flags.writeable


def test_object_arrays_fall_through_to_pickle(artifacts):
    array = np.array([{"a": 1}, None], dtype=object)
    uri = artifacts.materialize(array, "objs", "run", "step")
    assert artifacts.metadata(uri)["materializer"] == "pickle"
    assert list(artifacts.load(uri)) == list(array)


def test_pandas_frames_are_parquet(artifacts):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"], "z": [0.5, None, 2.0]},
                         index=pd.Index([10, 20, 30], name="id"))
    uri = artifacts.materialize(frame, "frame", "run", "step")
    assert artifacts.metadata(uri)["materializer"] == "parquet"
    pd.testing.assert_frame_equal(artifacts.load(uri), frame)
    # A frame parquet cannot hold (non-string column names) falls through to pickle.
    odd = pd.DataFrame({1: [1], 2: [2]})
    uri = artifacts.materialize(odd, "odd", "run", "step")
    assert artifacts.metadata(uri)["materializer"] == "pickle"
    pd.testing.assert_frame_equal(artifacts.load(uri), odd)


def test_a_named_materializer_is_used(artifacts):
    uri = artifacts.materialize({"a": 1}, "forced", "run", "step", materializer="pickle")
    assert artifacts.metadata(uri)["materializer"] == "pickle"
    assert artifacts.load(uri) == {"a": 1}
    uri = artifacts.materialize(np.ones(3), "alias", "run", "step", materializer="numpy")
    assert artifacts.metadata(uri)["materializer"] == "npy"
    with pytest.raises(FlowymlError, match="materializer 'json' cannot store a builtins.tuple"):
        artifacts.materialize((1, 2), "bad", "run", "step", materializer="json")
    with pytest.raises(FlowymlError, match="no materializer named 'nope'"):
        artifacts.materialize(1, "bad", "run", "step", materializer="nope")


def test_an_unstorable_object_is_a_clear_error(artifacts):
    with pytest.raises(FlowymlError, match="cannot store a builtins.function"):
        artifacts.materialize(lambda: 1, "fn", "run", "step")
    assert not artifacts.exists(artifacts.uri_for("run", "step", "fn"))


# -- layout ----------------------------------------------------------------------------
def test_layout_and_uri(artifacts, tmp_path):
    """One file per artifact, <root>/<project>/<run>/<step>.<name>: magic line, JSON header, payload."""
    uri = artifacts.materialize([1], "metrics", "run-7", "evaluate", project_name="proj")
    assert uri == str(tmp_path / "artifacts" / "proj" / "run-7" / "evaluate.metrics")
    assert uri == artifacts.uri_for("run-7", "evaluate", "metrics", "proj")
    assert os.listdir(tmp_path / "artifacts" / "proj" / "run-7") == ["evaluate.metrics"]
    magic, header, payload = split_entry(uri)
    assert magic == ARTIFACT_MAGIC == b"FLOWYML-ARTIFACT/3\n" and payload == b"[1]"
    assert header == artifacts.metadata(uri)
    assert {"type", "materializer", "size", "digest", "created", "path"} <= set(header)
    assert list(header)[-1] == "digest"  # last, so that it can be completed in place after a parallel hash
    assert header["type"] == "builtins.list" and header["size"] == len(b"[1]")
    assert header["path"] == "proj/run-7/evaluate.metrics"
    assert (header["project"], header["run"], header["step"], header["name"]) == ("proj", "run-7", "evaluate", "metrics")
    assert artifacts.load_artifact("run-7", "evaluate", "metrics", "proj") == [1]


def test_step_and_name_split_unambiguously(artifacts):
    """Dots are escaped in the step part of ``<step>.<name>``, so no two (step, name) pairs share a file."""
    pairs = [("a.b", "c"), ("a", "b.c"), ("a", "b%2Ec"), ("a%2Eb", "c")]
    uris = [artifacts.materialize(i, name, "run", step) for i, (step, name) in enumerate(pairs)]
    assert len(set(uris)) == len(pairs)
    assert [artifacts.load(u) for u in uris] == list(range(len(pairs)))
    assert artifacts.list_artifacts(run_id="run", step_name="a.b", project_name="default") == [uris[0]]
    assert artifacts.list_artifacts(run_id="run", step_name="a", project_name="default") == sorted(uris[1:3])


def test_relative_paths_resolve_where_the_store_was_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = LocalArtifactStore(LocalArtifactStoreConfig(path=".flowyml/artifacts"))
    monkeypatch.chdir("/")
    uri = store.materialize(1, "x", "r", "s")
    assert uri.startswith(str(tmp_path / ".flowyml" / "artifacts"))
    assert pickle.loads(pickle.dumps(store)).load(uri) == 1


def test_names_cannot_escape_the_root(artifacts, tmp_path):
    uri = artifacts.materialize(1, "a/b", "run", "step")
    assert uri.startswith(str(tmp_path / "artifacts")) and uri.endswith("step.a%2Fb")
    with pytest.raises(ValueError):
        artifacts.uri_for("..", "step", "x")
    with pytest.raises(ValueError):
        artifacts.materialize_at(1, "../outside")


def test_materialize_at_relative_path(artifacts, tmp_path):
    uri = artifacts.materialize_at(np.arange(3), "models/best/weights", materializer="npy")
    assert uri == str(tmp_path / "artifacts" / "models" / "best" / "weights")
    np.testing.assert_array_equal(artifacts.load(uri), np.arange(3))
    assert artifacts.load("models/best/weights").tolist() == [0, 1, 2]


def test_listing_and_delete(artifacts):
    a = artifacts.materialize(1, "a", "run-1", "s1")
    b = artifacts.materialize(2, "b", "run-1", "s2")
    c = artifacts.materialize(3, "c", "run-2", "s1")
    d = artifacts.materialize(4, "d", "run-1", "s1", project_name="other")
    assert artifacts.list_artifacts() == sorted([a, b, c, d])
    assert artifacts.list_artifacts(project_name="default") == sorted([a, b, c])
    assert artifacts.list_artifacts(run_id="run-1") == sorted([a, b, d])
    assert artifacts.list_artifacts(run_id="run-1", project_name="default") == sorted([a, b])
    assert artifacts.list_artifacts(run_id="run-1", step_name="s1", project_name="default") == [a]
    assert artifacts.list_artifacts(project_name="other") == [d]
    assert artifacts.delete(b) and not artifacts.exists(b)
    assert artifacts.list_artifacts(run_id="run-1", project_name="default") == [a]


def test_overwrite_keeps_the_newest_and_leaves_nothing_behind(artifacts):
    uri = artifacts.materialize(b"first", "out", "run", "step")
    artifacts.materialize(b"second", "out", "run", "step")
    assert artifacts.load(uri) == b"second"
    assert os.listdir(Path(uri).parent) == ["step.out"]


# -- missing, interrupted, altered ---------------------------------------------------
def test_missing_artifact_is_a_file_not_found_error(artifacts):
    uri = artifacts.uri_for("nope", "step", "x")
    assert not artifacts.exists(uri)
    with pytest.raises(FileNotFoundError, match="no artifact at"):
        artifacts.load(uri)
    with pytest.raises(ArtifactNotFoundError):
        artifacts.load(uri)


def test_an_interrupted_write_reads_as_absent(artifacts):
    """The process killed before the rename: only a hidden temp file is there, nothing valid."""
    uri = artifacts.uri_for("run", "step", "out")
    os.makedirs(Path(uri).parent)
    Path(Path(uri).parent, ".1a2b-3c-0-abcdef.tmp").write_bytes(ARTIFACT_MAGIC + b'{"materializer": "js')
    assert not artifacts.exists(uri)
    assert artifacts.list_artifacts() == []
    with pytest.raises(FileNotFoundError):
        artifacts.load(uri)


def test_altered_bytes_are_refused_with_a_clear_error(artifacts):
    uri = artifacts.materialize(np.arange(1000.0), "arr", "run", "step")
    raw = bytearray(Path(uri).read_bytes())
    raw[-3] ^= 0x01
    Path(uri).write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=r"artifact .*arr failed its integrity check: .*does not match its recorded digest"):
        artifacts.load(uri)


def test_altered_large_bytes_are_refused(artifacts):
    """Large payloads are hashed in a helper thread while read: same guarantee."""
    value = os.urandom(6 * 1024 * 1024)
    uri = artifacts.materialize(value, "big", "run", "step")
    assert artifacts.load(uri) == value
    with open(uri, "r+b") as fh:
        fh.seek(5 * 1024 * 1024)
        byte = fh.read(1)[0]
        fh.seek(5 * 1024 * 1024)
        fh.write(bytes([byte ^ 0x01]))  # a changed byte (writing a fixed b"X" left 1 random byte in 256 as it was)
    with pytest.raises(IntegrityError, match="digest"):
        artifacts.load(uri)


@pytest.mark.parametrize(
    ("value", "algorithm"),
    [
        (np.arange(2_000_000, dtype="float64"), "xxh3-128"),  # 16 MB, safe: a fast digest, hashed while written
        ([(i, str(i)) for i in range(200_000)], "blake3"),  # pickle (tuples): a cryptographic digest, signed
    ],
    ids=["npy", "pickle"],
)
def test_the_header_records_the_digest_of_the_payload(artifacts, value, algorithm):
    """Checked with the hash libraries themselves, not with the store's own helper."""
    import blake3
    import xxhash

    uri = artifacts.materialize(value, "out", "run", "step")
    meta = artifacts.metadata(uri)
    data = payload_of(uri)
    expected = {"xxh3-128": lambda: xxhash.xxh3_128(data).hexdigest(), "blake3": lambda: blake3.blake3(data).hexdigest()}
    assert meta["digest"] == f"{algorithm}:{expected[algorithm]()}"
    assert ("signature" in meta) == (algorithm == "blake3")


def test_a_pickle_with_a_fast_digest_is_refused(artifacts, tmp_path):
    """Signatures cover the digest, so a format that runs code must carry the cryptographic one."""
    uri = artifacts.materialize((1, 2), "out", "run", "step")
    meta = artifacts.metadata(uri)
    assert meta["materializer"] == "pickle"
    meta["digest"] = digests.of(digests.FAST, payload_of(uri))
    write_entry(uri, meta, payload_of(uri))
    with pytest.raises(IntegrityError, match="for a format that runs code when loaded; such payloads must carry a 'blake3'"):
        artifacts.load(uri)


@pytest.mark.parametrize("core_free", [True, False], ids=["hashed-by-a-helper-thread", "hashed-after-each-chunk"])
def test_altered_large_array_is_refused(artifacts, monkeypatch, core_free):
    """Arrays are read into their buffer chunk by chunk and hashed as they arrive, by a helper
    thread when a core is free, else right after each chunk: either way a change anywhere is caught."""
    monkeypatch.setattr(localfs, "_a_core_is_free", lambda: core_free)
    value = np.arange(2_000_000, dtype="float64")
    assert np.array_equal(artifacts.load(artifacts.materialize(value, "arr", "run", "step")), value)
    for where in ("payload start", "middle", "last byte"):  # the header's length varies by a few bytes per write
        uri = artifacts.materialize(value, "arr", "run", "step")
        size = Path(uri).stat().st_size
        offset = {"payload start": size - len(payload_of(uri)) + 200, "middle": size // 2, "last byte": size - 1}[where]
        with open(uri, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0x10]))
        with pytest.raises(IntegrityError, match="does not match its recorded digest"):
            artifacts.load(uri)


def test_truncated_bytes_are_refused(artifacts):
    uri = artifacts.materialize(b"x" * 1000, "out", "run", "step")
    edit_payload(uri, lambda payload: payload[:500])
    with pytest.raises(IntegrityError, match="the payload is 500 bytes on disk, its header says 1000"):
        artifacts.load(uri)
    edit_payload(uri, lambda payload: payload + b"x" * 501)
    with pytest.raises(IntegrityError, match="the payload is 1001 bytes on disk, its header says 1000"):
        artifacts.load(uri)


def test_swapped_artifacts_are_refused(artifacts):
    a = artifacts.materialize(b"aaaa", "a", "run", "step")
    b = artifacts.materialize(b"bbbb", "b", "run", "step")
    raw_a, raw_b = Path(a).read_bytes(), Path(b).read_bytes()
    Path(a).write_bytes(raw_b)
    Path(b).write_bytes(raw_a)
    for uri in (a, b):
        with pytest.raises(IntegrityError, match="it was written for 'default/run/step.[ab]', not for this location"):
            artifacts.load(uri)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("digest", "xxh3-128:" + "0" * 32, "does not match its recorded digest"),
        ("digest", "sha256:" + "0" * 64, "records a 'sha256' digest; this version checks 'xxh3-128' and 'blake3' digests"),
        ("digest", "blake3:xyz", "records no valid blake3 digest"),
        ("digest", None, "records no valid digest"),
        ("size", 8, "the payload is 7 bytes on disk, its header says 8"),
        ("size", "7", "the header is malformed"),
        ("path", "default/run/step.other", "written for 'default/run/step.other', not for this location"),
    ],
)
def test_an_edited_header_is_refused_saying_what_is_wrong(artifacts, field, value, match):
    uri = artifacts.materialize(b"payload", "out", "run", "step")
    meta = artifacts.metadata(uri)
    meta[field] = value
    write_entry(uri, meta, payload_of(uri))
    with pytest.raises(IntegrityError, match=match):
        artifacts.load(uri)


def test_an_entry_of_another_format_version_says_so(artifacts):
    uri = artifacts.materialize(b"payload", "out", "run", "step")
    write_entry(uri, artifacts.metadata(uri), payload_of(uri), magic=b"FLOWYML-ARTIFACT/2\n")
    with pytest.raises(IntegrityError, match=r"format 'FLOWYML-ARTIFACT/2', this flowyml reads 'FLOWYML-ARTIFACT/3'.*"
                                             r"write the artifact again"):
        artifacts.load(uri)


def test_an_unreadable_header_is_refused(artifacts):
    uri = artifacts.materialize(b"payload", "out", "run", "step")
    Path(uri).write_bytes(ARTIFACT_MAGIC + b"not json\npayload")
    with pytest.raises(IntegrityError, match="unreadable header"):
        artifacts.load(uri)
    Path(uri).write_bytes(b"\x80\x05not an entry at all")
    with pytest.raises(IntegrityError, match="not a flowyml entry"):
        artifacts.load(uri)


def test_a_directory_of_the_earlier_layout_reads_as_absent_and_says_why(artifacts):
    uri = artifacts.uri_for("run", "step", "old")
    Path(uri).mkdir(parents=True)
    (Path(uri) / "meta.json").write_text("{}")
    with pytest.raises(ArtifactNotFoundError, match="a directory is there .*run the step again"):
        artifacts.load(uri)
    assert not artifacts.exists(uri)


def test_planted_npy_with_object_dtype_is_refused(artifacts, tmp_path):
    """A sidecar may claim 'npy' for a pickled object array: loading never unpickles it."""
    marker = tmp_path / "pwned"
    uri = artifacts.materialize(np.arange(3), "arr", "run", "step")
    out = io.BytesIO()
    np.save(out, np.array([_Planted(str(marker))], dtype=object), allow_pickle=True)
    planted = out.getvalue()
    meta = artifacts.metadata(uri)
    meta.update(size=len(planted), digest=digests.of(digests.FAST, planted))
    write_entry(uri, meta, planted)
    with pytest.raises(IntegrityError, match="object dtype"):
        artifacts.load(uri)
    assert not marker.exists()


# -- trust -------------------------------------------------------------------------
def plant_pickle(store: LocalArtifactStore, marker: Path, name: str = "planted") -> str:
    """What an attacker with write access to the store can do: a consistent header, no valid signature."""
    uri = store.uri_for("run", "step", name)
    payload = pickle.dumps(_Planted(str(marker)))
    meta = {"type": "builtins.dict", "materializer": "pickle", "size": len(payload), "created": 0.0,
            "signature": "hmac-sha256:" + "0" * 64, "digest": digests.of(digests.SECURE, payload)}
    write_entry(uri, meta, payload)
    return uri


def test_planted_unsigned_pickle_is_refused_and_says_how_to_opt_in(artifacts, tmp_path):
    marker = tmp_path / "pwned"
    uri = plant_pickle(artifacts, marker)
    with pytest.raises(UntrustedPickleError) as info:
        artifacts.load(uri)
    message = str(info.value)
    assert "allow_unsigned_pickle = true" in message and "signing_key" in message and uri in message
    assert not marker.exists()


def test_opt_in_loads_unsigned_pickles(tmp_path):
    store = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a"), allow_unsigned_pickle=True))
    marker = tmp_path / "trusted-marker"
    uri = plant_pickle(store, marker)
    store.load(uri)  # the user said they trust this store: the pickle runs
    assert marker.is_dir()


def test_pickles_are_signed_with_the_per_user_key(artifacts, tmp_path):
    uri = artifacts.materialize(Point(1, 2), "p", "run", "step")
    meta = artifacts.metadata(uri)
    assert meta["materializer"] == "pickle" and meta["signature"].startswith("hmac-sha256:")
    key = user_key_path()
    assert key.is_file() and str(key).startswith(os.environ["XDG_CONFIG_HOME"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert artifacts.load(uri) == Point(1, 2)
    # Another user (another key) refuses what this one signed.
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path / "other-user")
    other = LocalArtifactStore(LocalArtifactStoreConfig(path=artifacts.root))
    with pytest.raises(UntrustedPickleError, match="signature made with another key than this store.s signing key"):
        other.load(uri)


def test_safe_formats_need_no_key(artifacts):
    artifacts.load(artifacts.materialize({"a": 1}, "x", "r", "s"))
    artifacts.load(artifacts.materialize(np.ones(2), "y", "r", "s"))
    assert not user_key_path().exists()


def test_a_shared_signing_key_works_across_stores(tmp_path):
    root = str(tmp_path / "shared")
    writer = LocalArtifactStore(LocalArtifactStoreConfig(path=root, signing_key="team-secret"))
    uri = writer.materialize(Point(3, 4), "p", "run", "step")
    reader = LocalArtifactStore(LocalArtifactStoreConfig(path=root, signing_key="team-secret"))
    assert reader.load(uri) == Point(3, 4)
    stranger = LocalArtifactStore(LocalArtifactStoreConfig(path=root, signing_key="another-secret"))
    with pytest.raises(UntrustedPickleError):
        stranger.load(uri)
    with pytest.raises(ConfigError, match="signing_key is set but empty"):
        LocalArtifactStore(LocalArtifactStoreConfig(path=root, signing_key="")).materialize(Point(1, 1), "q", "r", "s")
    assert "team-secret" not in repr(writer.config)


def test_a_key_file_readable_by_others_is_refused(artifacts):
    key = user_key_path()
    key.parent.mkdir(parents=True)
    key.write_text("k" * 64)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        artifacts.materialize(Point(1, 1), "p", "r", "s")


def test_key_creation_race_gives_one_key(tmp_path):
    from flowyml_local import signing

    signing._cache.clear()
    keys = []

    def make():
        keys.append(signing._load_or_create_user_key(user_key_path()))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert [p.name for p in user_key_path().parent.iterdir()] == ["signing.key"]


# -- concurrency ---------------------------------------------------------------------
def test_concurrent_writers_and_readers_of_one_artifact(artifacts):
    values = [bytes([i]) * (300_000 + i) for i in range(6)]
    uri = artifacts.uri_for("run", "step", "same")
    artifacts.materialize(values[0], "same", "run", "step")
    errors, seen = [], []
    stop = threading.Event()

    def write(i: int) -> None:
        try:
            for _ in range(10):
                artifacts.materialize(values[i], "same", "run", "step")
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(artifacts.load(uri))
            except BaseException as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(i,)) for i in range(len(values))]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    assert seen and all(v in values for v in seen)
    assert artifacts.load(uri) in values
    assert os.listdir(Path(uri).parent) == ["step.same"]  # no temp file left behind


def test_an_artifact_copied_over_another_is_refused(artifacts):
    import shutil

    a = artifacts.materialize(b"value of a", "a", "run", "step")
    b = artifacts.materialize(b"value of b", "b", "run", "step")
    shutil.copyfile(a, b)
    with pytest.raises(IntegrityError, match="written for 'default/run/step.a'"):
        artifacts.load(b)
    assert artifacts.load(a) == b"value of a"


def test_a_copied_store_root_still_loads(artifacts, tmp_path):
    """Relative locations are recorded: moving the whole store keeps it valid."""
    import shutil

    uri = artifacts.materialize({"x": 1}, "x", "run", "step")
    shutil.copytree(artifacts.root, tmp_path / "moved")
    moved = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "moved")))
    assert moved.load(moved.uri_for("run", "step", "x")) == {"x": 1}
    assert uri != moved.uri_for("run", "step", "x")


def test_a_payload_its_materializer_cannot_decode_is_an_integrity_error(artifacts, tmp_path):
    """A consistent header (matching digest) that labels a pickle as JSON: refused clearly, never unpickled."""
    marker = tmp_path / "pwned"
    uri = artifacts.materialize({"a": 1}, "x", "run", "step")
    meta = artifacts.metadata(uri)
    payload = pickle.dumps(_Planted(str(marker)))
    meta.update(size=len(payload), digest=digests.of(digests.FAST, payload))
    write_entry(uri, meta, payload)
    with pytest.raises(IntegrityError, match=r"its json payload cannot be decoded \(UnicodeDecodeError"):
        artifacts.load(uri)
    assert not marker.exists()


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_prune_removes_old_temp_files_only(artifacts):
    uri = artifacts.materialize(b"kept", "out", "run", "step")
    run_dir = Path(uri).parent
    killed = run_dir / ".1-2-3-abcdef.tmp"
    killed.write_bytes(b"a writer killed before its rename")
    in_progress = run_dir / ".1-2-4-abcdef.tmp"
    in_progress.write_bytes(b"a write still in progress")
    _age(killed, 7200)
    assert artifacts.prune(dry_run=True) == {"removed": {"temp files": 1}, "bytes": 33, "dry_run": True}
    assert killed.exists()
    assert artifacts.prune() == {"removed": {"temp files": 1}, "bytes": 33, "dry_run": False}
    assert not killed.exists() and in_progress.exists()  # younger than an hour: may be a write in progress
    assert artifacts.load(uri) == b"kept"
    assert artifacts.prune()["removed"] == {}


def test_prune_keeps_the_newest_runs_and_removes_old_ones(artifacts):
    ages = {"r1": 40 * 86400, "r2": 20 * 86400, "r3": 3 * 86400, "r4": 0}
    for run, age in ages.items():
        for name in ("a", "b"):
            uri = artifacts.materialize({"run": run}, name, run, "step")
            _age(Path(uri), age)
    routed = artifacts.materialize_at(b"routed", "models/best/weights")  # not a run: never pruned
    _age(Path(routed), 90 * 86400)
    other = artifacts.materialize(1, "x", "r1", "step", project_name="other")
    _age(Path(other), 90 * 86400)
    # older than 10 days, except the newest run of each project: r1 and r2 of "default"
    dry = artifacts.prune(older_than=10 * 86400, keep_runs=1, dry_run=True)
    assert dry["removed"] == {"runs": 2, "artifacts": 4} and dry["dry_run"]
    assert len(artifacts.list_artifacts()) == 9  # a dry run deletes nothing
    # older than 30 days, but at least the 2 newest of each project kept
    assert artifacts.prune(older_than=30 * 86400, keep_runs=2)["removed"] == {"runs": 1, "artifacts": 2}
    assert artifacts.list_artifacts(run_id="r1", project_name="default") == []
    assert artifacts.load(other) == 1  # one of the 2 newest of its project
    # keep_runs alone: every run but the newest of each project
    report = artifacts.prune(keep_runs=1)
    assert report["removed"] == {"runs": 2, "artifacts": 4} and report["bytes"] > 0
    assert {Path(u).parent.name for u in artifacts.list_artifacts()} == {"r4", "r1"}
    assert artifacts.load(routed) == b"routed"


def test_a_materializer_may_hand_over_any_contiguous_buffer(tmp_path):
    """A plugin's save() returning a float64 memoryview is hashed as the bytes written, like a byte view."""
    from flowyml_local.materializers import Materializer, MaterializerSet

    class FloatView(Materializer):
        name = "floatview"
        extension = ".bin"

        def can_save(self, obj: object) -> bool:
            return isinstance(obj, np.ndarray)

        def save(self, obj):
            return [memoryview(np.ascontiguousarray(obj, dtype="float64"))]

        def load(self, data, info):
            return np.frombuffer(bytes(data), dtype="float64")

    artifacts = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a")),
                                   materializers=MaterializerSet([("floatview", FloatView, ("numpy.ndarray",), 0)]))
    value = np.linspace(0, 1, 1_000_000)  # 8 MB: hashed in the helper thread
    uri = artifacts.materialize(value, "x", "run", "step", materializer="floatview")
    assert np.array_equal(artifacts.load(uri), value)
    assert artifacts.metadata(uri)["digest"] == digests.of(digests.FAST, value.tobytes())


def test_a_large_entry_is_preallocated_to_exactly_its_size(artifacts):
    """Large writes reserve their blocks first (as ``numpy.save`` does); the entry's size is what was
    written, and no reserved block is left past its end."""
    import numpy as np

    value = np.arange(1_000_000, dtype="float64")  # 8 MB: the chunked, hashed-while-written path
    uri = artifacts.materialize(value, "x", "run", "big")
    assert np.array_equal(artifacts.load(uri), value)
    path = Path(uri)
    st = path.stat()
    assert value.nbytes < st.st_size < value.nbytes + 4096  # the header and the array, nothing more
    if hasattr(st, "st_blocks"):
        assert st.st_blocks * 512 < st.st_size + 1024 * 1024
    if sys.platform.startswith("linux"):
        assert localfs._fallocate, "libc's fallocate was not found on Linux"
