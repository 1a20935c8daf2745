"""A separate process that writes (and reads) a store, for the crash and concurrency tests.

Values verify themselves: each carries its key, the generation that wrote it
and a sha256 of its body, in every format the stores choose from (raw bytes,
JSON, a pickled object — signed —, numpy, None). A reader can therefore tell a
complete value from a torn or mixed one without knowing what was written last.

Usage (see stores.py)::

    python -m tests.reliability.store_worker crash  SPEC_JSON   # prints "w N" after each write
    python -m tests.reliability.store_worker mixed  SPEC_JSON   # prints one JSON summary line
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from typing import Any

SIZES = [0, 1, 100, 1000, 4096, 20_000, 65536]
LARGE = 300_000
BIG = 5 * 1024 * 1024  # above the stores' parallel-hash threshold


class Payload:
    """A value only pickle can store (signed by the store's key)."""

    def __init__(self, key: str, gen: int, blob: bytes) -> None:
        self.key, self.gen, self.blob = key, gen, blob
        self.check = hashlib.sha256(blob).hexdigest()


def make_value(key: str, gen: int, rng: random.Random) -> Any:
    kind = rng.randrange(10)
    roll = rng.random()
    size = BIG if roll < 0.003 else LARGE if roll < 0.03 else rng.choice(SIZES)
    blob = rng.randbytes(size)
    if kind <= 3:  # raw bytes: header | body | sha256(header+body)
        head = f"{key}|{gen}|".encode()
        return head + blob + hashlib.sha256(head + blob).digest()
    if kind <= 5:
        body = blob[: min(size, 65536)].hex()
        return {"key": key, "gen": gen, "blob": body, "check": hashlib.sha256(body.encode()).hexdigest()}
    if kind <= 7:
        return Payload(key, gen, blob)
    if kind == 8:
        try:
            import numpy as np
        except ImportError:
            return Payload(key, gen, blob)
        arr = np.frombuffer(blob[: size - size % 8] or b"\0" * 8, dtype=np.uint64).copy()
        tag = int.from_bytes(hashlib.sha256(f"{key}|{gen}".encode() + arr.tobytes()).digest()[:7], "big")
        return np.concatenate([arr, np.array([gen, tag], dtype=np.uint64)])
    return None


def verify(value: Any, key: str) -> tuple[bool, str]:
    """(complete and of this key, what it is)."""
    if value is None:
        return True, "none"
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) < 32:
            return False, "bytes too short"
        body, digest = raw[:-32], raw[-32:]
        if hashlib.sha256(body).digest() != digest:
            return False, "bytes: sha256 mismatch"
        if not body.startswith(f"{key}|".encode()):
            return False, "bytes: another key's value"
        return True, "bytes"
    if isinstance(value, dict):
        ok = value.get("key") == key and hashlib.sha256(str(value.get("blob")).encode()).hexdigest() == value.get("check")
        return ok, "json" if ok else "json: mismatch"
    if isinstance(value, Payload):
        ok = value.key == key and hashlib.sha256(value.blob).hexdigest() == value.check
        return ok, "pickle" if ok else "pickle: mismatch"
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype != np.uint64 or value.size < 2:
            return False, "numpy: bad shape"
        arr, gen, tag = value[:-2], int(value[-2]), int(value[-1])
        want = int.from_bytes(hashlib.sha256(f"{key}|{gen}".encode() + arr.tobytes()).digest()[:7], "big")
        return tag == want, "numpy" if tag == want else "numpy: mismatch"
    return False, f"unexpected type {type(value).__name__}"


def build_stores(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The cache and artifact stores named by the spec, built through the plugin registry."""
    from flowyml_core.plugins import get_registry
    from flowyml_core.structuring import structure_config

    registry = get_registry()
    built = []
    for kind in ("cache_store", "artifact_store"):
        impl, config_cls = registry.flavor(kind, spec["flavor"]).load()
        problems: list[str] = []
        config = structure_config(config_cls, dict(spec[kind]), kind, set(), problems)
        if problems:
            raise SystemExit(f"bad store options: {problems}")
        built.append(impl(config))
    return built[0], built[1]


def cache_key(k: int) -> str:
    return f"rlkey{k:040x}"


def crash(spec: dict[str, Any]) -> None:
    cache, artifacts = build_stores(spec)
    rng = random.Random(spec["seed"])
    gen = spec["gen"]
    out = sys.stdout
    for i in range(spec["count"]):
        k = i % spec["keys"]
        key = cache_key(k)
        cache.set_value(key, make_value(key, gen, rng), step_name="rl", code_hash="c")
        name = f"n{k % spec['names']}"
        artifacts.materialize(make_value(name, gen, rng), name=name, run_id="run", step_name="step")
        out.write(f"w {i}\n")
        out.flush()
    out.write("done\n")
    out.flush()


def mixed(spec: dict[str, Any]) -> None:
    """Write and read a few shared keys and names as fast as possible; report what the reads saw."""
    from flowyml_core.errors import IntegrityError

    cache, artifacts = build_stores(spec)
    rng = random.Random(spec["seed"])
    stats = {"writes": 0, "reads": 0, "hits": 0, "misses": 0, "not_found": 0, "corrupt": 0, "integrity_errors": 0,
             "examples": []}
    delay = spec["start_at"] - time.time()
    if delay > 0:
        time.sleep(delay)
    deadline = time.time() + spec.get("seconds", 1e9)
    for i in range(spec["ops"]):
        if time.time() > deadline:
            break
        k = rng.randrange(spec["keys"])
        key, name = cache_key(k), f"n{k}"
        uri = artifacts.uri_for("run", "step", name)
        if rng.random() < 0.5:
            cache.set_value(key, make_value(key, spec["gen"] * 1_000_000 + i, rng), step_name="rl", code_hash="c")
            artifacts.materialize(make_value(name, spec["gen"] * 1_000_000 + i, rng), name=name, run_id="run",
                                  step_name="step")
            stats["writes"] += 1
            continue
        stats["reads"] += 1
        try:
            entry = cache.get(key)
        except Exception as exc:  # a read must never raise: count it as corrupt
            _bad(stats, f"cache get raised {type(exc).__name__}: {exc}")
            entry = None
        else:
            if entry is None:
                stats["misses"] += 1
            else:
                ok, what = verify(entry.value, key)
                if ok:
                    stats["hits"] += 1
                else:
                    _bad(stats, f"cache {key}: {what}")
        try:
            value = artifacts.load(uri)
        except FileNotFoundError:
            stats["not_found"] += 1
        except IntegrityError as exc:
            stats["integrity_errors"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append(f"artifact {name}: IntegrityError: {exc}")
        except Exception as exc:
            _bad(stats, f"artifact load raised {type(exc).__name__}: {exc}")
        else:
            ok, what = verify(value, name)
            if not ok:
                _bad(stats, f"artifact {name}: {what}")
    print(json.dumps(stats), flush=True)


def _bad(stats: dict[str, Any], message: str) -> None:
    stats["corrupt"] += 1
    if len(stats["examples"]) < 5:
        stats["examples"].append(message)


if __name__ == "__main__":
    # Run the importable module's functions, so that Payload pickles as
    # tests.reliability.store_worker.Payload (not __main__.Payload).
    from tests.reliability import store_worker

    mode, spec_json = sys.argv[1], sys.argv[2]
    {"crash": store_worker.crash, "mixed": store_worker.mixed}[mode](json.loads(spec_json))
