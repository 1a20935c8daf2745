"""Crash, concurrency and tamper tests of the cache and artifact stores (local, and gcs on the emulator).

* :func:`crash_test`: a separate process writes ``count`` cache entries and
  artifacts (self-verifying values of every format, overwriting earlier
  rounds' keys and names); it is killed with SIGKILL at a random point;
  everything is then read back. Repeated ``rounds`` times on the same root.
* :func:`concurrency_test`: 2, 3 and 4 processes write and read the same few
  cache keys and artifact names at once; every read is verified.
* :func:`tamper_test`: stored bytes altered, truncated, extended; headers
  edited; artifacts swapped and replayed; entries moved between keys; pickles planted
  (unsigned, with a forged signature, with another key's signature, under
  every materializer's name) whose unpickling would create a marker file.

Stores are built through the plugin registry from a flavor and its options,
as a stack would build them. Figures are returned as plain dicts.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attrs

from flowyml_local import digests
from flowyml_local.backends import is_temp_name
from flowyml_local.entries import ARTIFACT_MAGIC
from flowyml_local.fsstore import report_untrusted

from tests.reliability.kit import REPO, record_logs
from tests.reliability.store_worker import Payload, build_stores, cache_key, verify

SIGNING_KEY = "rl-signing-key-" + "0" * 16


def local_spec(root: Path) -> dict[str, Any]:
    return {
        "flavor": "local",
        "cache_store": {"path": str(root / "cache"), "signing_key": SIGNING_KEY},
        "artifact_store": {"path": str(root / "artifacts"), "signing_key": SIGNING_KEY},
    }


def _worker(mode: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.store_worker", mode, json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=str(REPO),
    )


# -- kill -9 in the middle of writes -------------------------------------------------------------
@attrs.define
class CrashReport:
    rounds: int = 0
    writes_per_round: int = 0
    completed_writes: int = 0  # writes acknowledged before the kill, all rounds
    cache_reads: int = 0
    cache_hits_verified: int = 0
    artifact_reads: int = 0
    artifact_loads_verified: int = 0
    torn: int = 0  # a value returned that is not complete: must be 0
    detected_corrupt: int = 0  # refused as corrupt (a miss or IntegrityError): must be 0 with atomic publication
    lost_acknowledged: int = 0  # an acknowledged write that reads as absent: must be 0
    orphan_files: int = 0  # temp files left by killed writers (storage, not correctness; prune() removes them)
    examples: list[str] = attrs.Factory(list)
    seconds: float = 0.0


def crash_test(root: Path, rounds: int = 20, count: int = 1000, names: int = 50, seed: int = 7,
               spec: dict[str, Any] | None = None, worker_env: dict[str, str] | None = None) -> CrashReport:
    spec = dict(spec or local_spec(root))
    rng = random.Random(seed)
    report = CrashReport(rounds=rounds, writes_per_round=count)
    started = time.perf_counter()
    ever_written_keys: set[int] = set()
    ever_written_names: set[int] = set()
    for gen in range(1, rounds + 1):
        target = rng.randrange(1, count)
        proc = _worker("crash", {**spec, "seed": rng.randrange(2**31), "gen": gen, "count": count,
                                 "keys": count, "names": names}, worker_env)
        done = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("w "):
                done = int(line.split()[1]) + 1
                if done >= target:
                    break
            elif line.startswith("done"):
                break
        time.sleep(rng.random() * 0.003)  # land anywhere inside the next write
        proc.kill()
        proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        if done == 0:
            raise RuntimeError(f"the writer wrote nothing before it was killed: {stderr[-2000:]}")
        report.completed_writes += done
        ever_written_keys.update(range(min(done, count)))
        ever_written_names.update(i % names for i in range(done))
        _check_after_crash(report, spec, count, names, ever_written_keys, ever_written_names)
    report.orphan_files = _orphans(spec)
    report.seconds = time.perf_counter() - started
    return report


def _check_after_crash(report: CrashReport, spec: dict[str, Any], count: int, names: int,
                       keys_written: set[int], names_written: set[int]) -> None:
    from flowyml_core.errors import IntegrityError

    with record_logs() as logs:
        cache, artifacts = build_stores(spec)
        for k in range(count):
            key = cache_key(k)
            report.cache_reads += 1
            try:
                entry = cache.get(key)
            except Exception as exc:  # a get must never raise
                _torn(report, f"cache get({key}) raised {type(exc).__name__}: {exc}")
                continue
            if entry is None:
                if k in keys_written:
                    report.lost_acknowledged += 1
                    _example(report, f"acknowledged cache write of key {k} reads as a miss")
                continue
            ok, what = verify(entry.value, key)
            if ok:
                report.cache_hits_verified += 1
            else:
                _torn(report, f"cache {key}: {what}")
        for n in range(names):
            name = f"n{n}"
            report.artifact_reads += 1
            try:
                value = artifacts.load(artifacts.uri_for("run", "step", name))
            except FileNotFoundError:
                if n in names_written:
                    report.lost_acknowledged += 1
                    _example(report, f"acknowledged artifact {name} reads as absent")
                continue
            except IntegrityError as exc:
                report.detected_corrupt += 1
                _example(report, f"artifact {name}: {exc}")
                continue
            except Exception as exc:
                _torn(report, f"artifact {name}: load raised {type(exc).__name__}: {exc}")
                continue
            ok, what = verify(value, name)
            if ok:
                report.artifact_loads_verified += 1
            else:
                _torn(report, f"artifact {name}: {what}")
        corrupt = cache.stats().get("corrupt", 0)
    report.detected_corrupt += corrupt
    for text in logs.texts:
        if "corrupt" in text or "refusing" in text:
            _example(report, f"log: {text[:300]}")


def _torn(report: CrashReport, message: str) -> None:
    report.torn += 1
    _example(report, message)


def _example(report: Any, message: str) -> None:
    if len(report.examples) < 10:
        report.examples.append(message)


def _orphans(spec: dict[str, Any]) -> int:
    """Files no reader will ever use: the temp files of writes killed before their rename."""
    if spec["flavor"] != "local":
        return 0
    count = 0
    for kind in ("cache_store", "artifact_store"):
        for _, _, files in os.walk(spec[kind]["path"]):
            count += sum(1 for f in files if is_temp_name(f))
    return count


# -- several processes on the same keys ----------------------------------------------------------
@attrs.define
class ConcurrencyReport:
    runs: list[dict[str, Any]] = attrs.Factory(list)
    reads: int = 0
    writes: int = 0
    verified_reads: int = 0
    corrupt: int = 0  # a read that returned a wrong/torn value or raised: must be 0
    integrity_errors: int = 0  # artifact loads refused as corrupt while racing writers: must be 0
    examples: list[str] = attrs.Factory(list)
    seconds: float = 0.0


def concurrency_test(root: Path, processes: tuple[int, ...] = (2, 3, 4), ops: int = 400, seconds: float = 20.0,
                     keys: int = 4, seed: int = 11, spec_for: Callable[[Path], dict[str, Any]] = local_spec,
                     worker_env: dict[str, str] | None = None) -> ConcurrencyReport:
    report = ConcurrencyReport()
    started = time.perf_counter()
    for n in processes:
        spec = spec_for(root / f"p{n}")
        start_at = time.time() + 1.5  # every worker imported and ready before the first op
        procs = [_worker("mixed", {**spec, "seed": seed * 100 + n * 10 + i, "gen": i + 1, "ops": ops,
                                   "keys": keys, "start_at": start_at, "seconds": seconds}, worker_env)
                 for i in range(n)]
        totals: dict[str, Any] = {"processes": n, "reads": 0, "writes": 0, "hits": 0, "misses": 0, "not_found": 0,
                                  "corrupt": 0, "integrity_errors": 0}
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"a concurrent worker failed (exit {proc.returncode}): {err[-3000:]}")
            stats = json.loads(out.strip().splitlines()[-1])
            for key in ("reads", "writes", "hits", "misses", "not_found", "corrupt", "integrity_errors"):
                totals[key] += stats[key]
            for example in stats["examples"]:
                _example(report, f"{n} processes: {example}")
        report.runs.append(totals)
        report.reads += totals["reads"]
        report.writes += totals["writes"]
        report.verified_reads += totals["hits"]
        report.corrupt += totals["corrupt"]
        report.integrity_errors += totals["integrity_errors"]
    report.seconds = time.perf_counter() - started
    return report


# -- tampering -------------------------------------------------------------------------------------
class Boom:
    """Unpickling this creates the marker file: proof that planted code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@attrs.define
class TamperCase:
    name: str
    target: str  # "cache" | "artifact"
    expectation: str
    ok: bool
    outcome: str
    executed: bool = False


@attrs.define
class TamperReport:
    cases: list[TamperCase] = attrs.Factory(list)
    control_executed: bool = False  # the planted pickle does run when a store opts in: it is live
    seconds: float = 0.0

    @property
    def failed(self) -> list[TamperCase]:
        return [c for c in self.cases if not c.ok]

    @property
    def executed(self) -> list[TamperCase]:
        return [c for c in self.cases if c.executed]


def _files(root: str) -> dict[str, bytes]:
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            found[os.path.join(dirpath, f)] = Path(dirpath, f).read_bytes()
    return found


def _written(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return [p for p in after if before.get(p) != after[p]]


def _flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:]


def _split_entry(raw: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    """The documented layout of artifacts and cache entries: magic line, JSON header line, payload."""
    magic_end = raw.index(b"\n") + 1
    header_end = raw.index(b"\n", magic_end)
    return raw[:magic_end], json.loads(raw[magic_end:header_end]), raw[header_end + 1:]


def _join_entry(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    return magic + json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def tamper_test(root: Path, spec: dict[str, Any] | None = None) -> TamperReport:
    from flowyml_core.errors import FlowymlError, IntegrityError

    report = TamperReport()
    started = time.perf_counter()
    spec = spec or local_spec(root)
    cache, artifacts = build_stores(spec)
    cache_root = spec["cache_store"]["path"]
    art_root = spec["artifact_store"]["path"]
    marker_dir = root / "markers"
    marker_dir.mkdir(parents=True, exist_ok=True)

    def case(name: str, target: str, expectation: str, run: Callable[[str], tuple[bool, str]]) -> None:
        marker = str(marker_dir / f"{len(report.cases)}-ran")
        with record_logs() as logs:
            try:
                ok, outcome = run(marker)
            except Exception as exc:  # the case itself broke: report it, do not hide it
                ok, outcome = False, f"tamper case crashed: {type(exc).__name__}: {exc}"
            report_untrusted()  # what a run's end says about entries refused for their signature
        executed = os.path.exists(marker)
        warnings = [t for t, r in zip(logs.texts, logs.records) if r.levelno >= logging.WARNING]
        if warnings and target == "cache":
            outcome += f" | warning: {warnings[-1][:200]}"
        report.cases.append(TamperCase(name, target, expectation, ok and not executed, outcome, executed))

    # ---- cache entries -----------------------------------------------------------------------
    def cache_file(key: str, value: Any) -> str:
        before = _files(cache_root)
        cache.set_value(key, value, step_name="rl", code_hash="c")
        changed = _written(before, _files(cache_root))
        assert len(changed) == 1, changed
        return changed[0]

    def expect_miss(key: str) -> tuple[bool, str]:
        fresh, _ = build_stores(spec)  # no in-process memory of what was written
        try:
            entry = fresh.get(key)
        except Exception as exc:
            return False, f"get raised {type(exc).__name__}: {exc}"
        if entry is not None:
            return False, f"served a value: {str(entry.value)[:80]!r}"
        return True, "miss"

    def cache_mutation(mutate: Callable[[bytes, str], bytes], value: Any = None) -> Callable[[str], tuple[bool, str]]:
        def run(marker: str) -> tuple[bool, str]:
            key = "rltamper" + secrets.token_hex(8)
            path = cache_file(key, value if value is not None else {"v": list(range(50))})
            Path(path).write_bytes(mutate(Path(path).read_bytes(), marker))
            return expect_miss(key)
        return run

    def planted_cache(signature: Callable[[str, int], str | None], label: str = "pickle") -> Callable[[bytes, str], bytes]:
        def mutate(raw: bytes, marker: str) -> bytes:
            magic, header, _ = _split_entry(raw)
            payload = pickle.dumps(Boom(marker))
            sha = digests.of(digests.algorithm_for(label == "pickle"), payload)  # what the store accepts for the label
            header.update(materializer=label, size=len(payload), digest=sha, type="builtins.object")
            header.pop("signature", None)
            sig = signature(sha, len(payload))
            if sig:
                header["signature"] = sig
            return _join_entry(magic, header, payload)
        return mutate

    def other_key_signature(sha: str, size: int) -> str:
        from flowyml_local.signing import Signer

        return Signer(b"someone-else's key", "test").sign("pickle", sha, size)

    case("cache: one payload byte changed", "cache", "miss + warning", cache_mutation(lambda raw, m: _flip(raw, len(raw) - 3)))
    case("cache: header byte changed", "cache", "miss + warning", cache_mutation(lambda raw, m: _flip(raw, 20)))
    case("cache: truncated", "cache", "miss + warning", cache_mutation(lambda raw, m: raw[: len(raw) * 2 // 3]))
    case("cache: bytes appended", "cache", "miss + warning", cache_mutation(lambda raw, m: raw + b"xx"))
    case("cache: planted pickle, unsigned", "cache", "miss, never executed",
         cache_mutation(planted_cache(lambda sha, size: None)))
    case("cache: planted pickle, forged signature", "cache", "miss, never executed",
         cache_mutation(planted_cache(lambda sha, size: "hmac-sha256:" + "0" * 64)))
    case("cache: planted pickle, another key's signature", "cache", "miss, never executed",
         cache_mutation(planted_cache(other_key_signature)))

    def signed_pickle_relabelled(raw: bytes, marker: str) -> bytes:
        magic, header, payload = _split_entry(raw)
        header["materializer"] = "json"
        header.pop("signature", None)
        return _join_entry(magic, header, payload)

    case("cache: signed pickle relabelled json", "cache", "miss",
         cache_mutation(signed_pickle_relabelled, value=Payload("k", 1, b"signed")))

    def cache_swap(marker: str) -> tuple[bool, str]:
        k1, k2 = "rlswap1" + secrets.token_hex(8), "rlswap2" + secrets.token_hex(8)
        p1 = cache_file(k1, {"belongs_to": "k1"})
        p2 = cache_file(k2, {"belongs_to": "k2"})
        Path(p2).write_bytes(Path(p1).read_bytes())
        fresh, _ = build_stores(spec)
        entry = fresh.get(k2)
        if entry is None:
            return True, "miss (entry recognised as another key's)"
        return False, f"get(k2) served k1's value {entry.value!r}"

    case("cache: entry file moved to another key", "cache", "miss (not another key's value)", cache_swap)

    def cache_control(marker: str) -> tuple[bool, str]:
        key = "rlctrl" + secrets.token_hex(8)
        value = {"control": True}
        cache_file(key, value)
        fresh, _ = build_stores(spec)
        entry = fresh.get(key)
        return (entry is not None and entry.value == value), f"control read: {entry.value if entry else None!r}"

    case("cache: untouched entry (control)", "cache", "served", cache_control)

    # ---- artifacts -----------------------------------------------------------------------------
    def art_write(name: str, value: Any) -> str:
        """The file of a fresh artifact (its URI): the only file the write created."""
        before = _files(art_root)
        uri = artifacts.materialize(value, name=name, run_id="tamper", step_name="s")
        changed = _written(before, _files(art_root))
        assert changed == [uri], changed
        return uri

    def expect_refused(uri: str, *words: str, error: type = IntegrityError) -> tuple[bool, str]:
        _, fresh = build_stores(spec)
        try:
            value = fresh.load(uri)
        except error as exc:
            text = str(exc)
            missing = [w for w in words if w not in text.lower()]
            one_line = "\n" not in text
            return (not missing and one_line), f"{type(exc).__name__}: {text[:300]}" + (
                f" (message lacks {missing})" if missing else "") + ("" if one_line else " (not one line)")
        except Exception as exc:
            return False, f"{type(exc).__name__} (not a {error.__name__}): {str(exc)[:300]}"
        return False, f"served a value: {str(value)[:80]!r}"

    def art_mutation(mutate: Callable[[bytes, dict[str, Any], bytes], bytes], *words: str, value: Any = None,
                     error: type = IntegrityError) -> Callable[[str], tuple[bool, str]]:
        """Write an artifact, rewrite its file as ``mutate(magic, header, payload)`` says, expect a refusal."""
        def run(marker: str) -> tuple[bool, str]:
            uri = art_write("a" + secrets.token_hex(6), value if value is not None else os.urandom(5000))
            Path(uri).write_bytes(mutate(*_split_entry(Path(uri).read_bytes())))
            return expect_refused(uri, *words, error=error)
        return run

    def edit_header(**changes: Any) -> Callable[[bytes, dict[str, Any], bytes], bytes]:
        def mutate(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
            header.update(changes)
            return _join_entry(magic, header, payload)
        return mutate

    def edit_payload(change: Callable[[bytes], bytes]) -> Callable[[bytes, dict[str, Any], bytes], bytes]:
        return lambda magic, header, payload: _join_entry(magic, header, change(payload))

    case("artifact: one payload byte changed", "artifact", "IntegrityError", art_mutation(edit_payload(_flip), "digest"))
    case("artifact: payload truncated", "artifact", "IntegrityError",
         art_mutation(edit_payload(lambda p: p[:100]), "bytes"))
    case("artifact: payload extended", "artifact", "IntegrityError",
         art_mutation(edit_payload(lambda p: p + b"!"), "bytes"))
    case("artifact: file emptied", "artifact", "IntegrityError", art_mutation(lambda m, h, p: b"", "entry"))
    case("artifact: header digest edited", "artifact", "IntegrityError",
         art_mutation(edit_header(digest="blake3:" + "0" * 64), "digest"))
    case("artifact: header size edited", "artifact", "IntegrityError", art_mutation(edit_header(size=4999), "bytes"))
    case("artifact: header not JSON", "artifact", "IntegrityError",
         art_mutation(lambda m, h, p: m + b"{not json\n" + p, "header"))
    case("artifact: header names another location", "artifact", "IntegrityError",
         art_mutation(edit_header(path="../../../../etc/passwd"), "written for"))
    case("artifact: signature stripped from a signed pickle", "artifact", "refused: unsigned pickle",
         art_mutation(edit_header(signature=None), "signature", "allow_unsigned_pickle", value=Payload("k", 1, b"signed")))
    case("artifact: json relabelled pickle (unsigned)", "artifact", "refused: unsigned pickle",
         art_mutation(edit_header(materializer="pickle"), "signature", value={"x": 1}))

    def files_swapped(marker: str) -> tuple[bool, str]:
        uri_a = art_write("swapa" + secrets.token_hex(4), os.urandom(3000))
        uri_b = art_write("swapb" + secrets.token_hex(4), os.urandom(3000))
        a, b = Path(uri_a).read_bytes(), Path(uri_b).read_bytes()
        Path(uri_a).write_bytes(b)
        Path(uri_b).write_bytes(a)
        return expect_refused(uri_b, "written for")

    case("artifact: files of two artifacts swapped", "artifact", "IntegrityError", files_swapped)

    def payload_swap(marker: str) -> tuple[bool, str]:
        uri_a = art_write("dsa" + secrets.token_hex(4), os.urandom(3000))
        uri_b = art_write("dsb" + secrets.token_hex(4), os.urandom(3000))
        magic, header, _ = _split_entry(Path(uri_b).read_bytes())
        Path(uri_b).write_bytes(_join_entry(magic, header, _split_entry(Path(uri_a).read_bytes())[2]))
        return expect_refused(uri_b, "digest")

    case("artifact: another artifact's payload under this header", "artifact", "IntegrityError", payload_swap)

    def replay(marker: str) -> tuple[bool, str]:
        uri_a = art_write("rpa" + secrets.token_hex(4), {"belongs_to": "a"})
        uri_b = art_write("rpb" + secrets.token_hex(4), {"belongs_to": "b"})
        Path(uri_b).write_bytes(Path(uri_a).read_bytes())
        return expect_refused(uri_b)

    case("artifact: another artifact copied over this one", "artifact", "IntegrityError (not a's value)", replay)

    def planted_artifact(label: str, signature: Callable[[str, int], str | None]) -> Callable[[str], tuple[bool, str]]:
        def run(marker: str) -> tuple[bool, str]:
            uri = artifacts.uri_for("tamper", "s", "planted" + secrets.token_hex(4))
            payload = pickle.dumps(Boom(marker))
            sha = digests.of(digests.algorithm_for(label == "pickle"), payload)  # what the store accepts for the label
            meta = {"type": "builtins.object", "materializer": label, "size": len(payload), "created": time.time()}
            sig = signature(sha, len(payload))
            if sig:
                meta["signature"] = sig
            meta["digest"] = sha
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            Path(uri).write_bytes(_join_entry(ARTIFACT_MAGIC, meta, payload))
            _, fresh = build_stores(spec)
            try:
                value = fresh.load(uri)
            except FlowymlError as exc:
                return True, f"{type(exc).__name__}: {str(exc)[:300]}"
            except Exception as exc:  # refused by the format's own loader: not executed, but not a FlowymlError
                return True, f"{type(exc).__module__}.{type(exc).__name__} (raw): {str(exc)[:200]}"
            if label in unsafe:
                return False, f"served {type(value).__name__}"
            return True, f"served as {label}: {type(value).__name__} (inert data)"
        return run

    from flowyml_local.materializers import default_materializers

    mset = default_materializers()
    unsafe = {n for n in mset.names() if mset.by_name(n).unsafe}
    case("artifact: planted pickle, unsigned", "artifact", "refused, never executed", planted_artifact("pickle", lambda s, n: None))
    case("artifact: planted pickle, forged signature", "artifact", "refused, never executed",
         planted_artifact("pickle", lambda s, n: "hmac-sha256:" + "f" * 64))
    case("artifact: planted pickle, another key's signature", "artifact", "refused, never executed",
         planted_artifact("pickle", lambda sha, size: other_key_signature(sha, size)))
    for label in mset.names():
        if label != "pickle":
            case(f"artifact: planted pickle labelled {label!r}", "artifact", "never executed",
                 planted_artifact(label, lambda s, n: None))

    # The control: a store that opts in to unsigned pickles does run the planted one.
    control_marker = str(marker_dir / "control-ran")
    opt_in = dict(spec)
    opt_in["artifact_store"] = {**spec["artifact_store"], "allow_unsigned_pickle": True}
    _, trusting = build_stores(opt_in)
    uri = trusting.uri_for("tamper", "s", "control")
    payload = pickle.dumps(Boom(control_marker))
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    Path(uri).write_bytes(_join_entry(ARTIFACT_MAGIC, {
        "type": "x", "materializer": "pickle", "size": len(payload), "created": 0,
        "digest": digests.of(digests.SECURE, payload)}, payload))
    try:
        trusting.load(uri)
    except Exception as exc:  # recorded below: the control must run
        logging.getLogger(__name__).info("control load raised %r", exc)
    report.control_executed = os.path.exists(control_marker)
    report.seconds = time.perf_counter() - started
    return report
