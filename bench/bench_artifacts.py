"""Large data through the local stores vs numpy and raw files, measured side by side in one run.

Run:  .venv/bin/python bench/bench_artifacts.py [--size-mb 100] [--large-mb 512] [--repeat 15] [--dir PATH]

Cases (each the best of ``--repeat`` runs, store and raw alternating; the median
is shown too):

* bytes write: ``store.materialize(data)`` vs ``open(p, "wb").write(data)`` on a new file
* bytes read:  ``store.load(uri)``       vs ``open(p, "rb").read()``
* npy write:   ``store.materialize(arr)`` vs ``numpy.save(p, arr)``
* npy read:    ``store.load(uri)``        vs ``numpy.load(p)``  (a *verified* read: the digest is checked)
* cache hit:   ``cache.get(key)`` of the same array vs ``numpy.load(p)``
* npy read, busy: ``npy read`` while another process keeps one core busy (what a
  shared 2-core machine looks like when the test suite runs): the helper thread
  that hashes then competes for the CPU.

The store also computes the payload's digest on write and checks it on read
(see ``flowyml_local/digests.py``): XXH3-128 for these safe formats, BLAKE3 for
pickles, in a helper thread while the bytes move. The ``alone`` rows time each
hash on the same bytes; ``sha256 alone`` shows why it is not SHA-256.
Target: 1.2x.

Then ``--large-mb`` (512 MB by default, 0 to skip) through a two-step pipeline
on the default local stack (``make`` returns the array, ``total`` sums it;
cache and artifact store on, fresh directories each time: a cold run) against
the floor of the same two functions with ``np.save`` + ``np.load`` of the array
between them. Target: 1.3x. ``no cache store``: the same with the artifact store
only (no output fingerprint, no cache entry), to show the artifact store's part.
And the peak RSS of a process that does one cold run on the default stack,
against the array's size (target: 1.2x).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import FreshArtifacts, compare, print_table, timed  # noqa: E402

TARGET = 1.2
LARGE_TARGET = 1.3
RSS_TARGET = 1.2


class BusyCore:
    """Another process spinning on one core while a case runs (as a concurrent test run does)."""

    def __enter__(self) -> "BusyCore":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


# -- the large pipeline -------------------------------------------------------------------
def make_array(mb: int) -> Any:
    import numpy as np

    return np.arange(mb * 1024 * 1024 // 8, dtype="float64")


def total(x: Any) -> float:
    return float(x.sum())


def large_pipeline(mb: int) -> Any:
    from flowyml_core import Pipeline
    from flowyml_core.step import Step

    def make() -> Any:
        return make_array(mb)

    return Pipeline("large", [Step(func=make, name="make", outputs=("array",)),
                              Step(func=total, name="total", inputs=("array",), outputs=("total",))])


def default_stack(root: str, cache: bool = True) -> Any:
    """The built-in local stack's components on ``root`` (what ``flowyml run`` uses with no stacks.toml).

    ``cache=False``: no cache store, so the executor neither fingerprints outputs nor writes cache entries.
    """
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
    from flowyml_local.executor import LocalExecutor

    cache_store = LocalCacheStore(LocalCacheStoreConfig(path=os.path.join(root, "cache"))) if cache else None
    return SimpleNamespace(name="bench", executor=LocalExecutor(), router=None, cache_store=cache_store,
                           artifact_store=LocalArtifactStore(LocalArtifactStoreConfig(path=os.path.join(root, "artifacts"))))


def run_large(pipeline: Any, root: str, cache: bool = True) -> float:
    from flowyml_core.pipeline import run_on_stack

    result = run_on_stack(pipeline, default_stack(root, cache), run_id="large")
    if not result.success:
        raise SystemExit(f"the large pipeline failed: {result.failed_steps[0].error}")
    return result.outputs["total"]


def rss_child(mb: int, root: str) -> None:
    """One cold run in this fresh process; prints the peak RSS in bytes.

    From ``VmHWM`` (this process's own high-water mark), not ``getrusage``: Linux
    carries ``ru_maxrss`` over from the parent that forked this process, so a
    child of the benchmark would report the benchmark's own peak.
    """
    run_large(large_pipeline(mb), root)
    with open("/proc/self/status") as fh:
        peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(peak_kb * 1024)


def large_cases(mb: int, repeat: int, base: str) -> None:
    import numpy as np

    pipeline = large_pipeline(mb)
    root, floor_path = os.path.join(base, "large"), os.path.join(base, "large-floor.npy")

    def fresh() -> None:
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)

    def floor() -> float:
        array = make_array(mb)
        np.save(floor_path, array)
        del array
        return total(np.load(floor_path))

    fresh()
    assert run_large(pipeline, root) == floor()
    def unlink_floor() -> None:
        if os.path.exists(floor_path):
            os.unlink(floor_path)

    rows = [(f"{mb} MB cold", *compare(lambda: run_large(pipeline, root), floor, repeat, fresh, unlink_floor)),
            ("no cache store", *compare(lambda: run_large(pipeline, root, cache=False), floor, repeat, fresh,
                                        unlink_floor))]
    print_table(f"{mb} MB array through make -> total on the default local stack, cold (cache + artifacts) vs "
                "the same functions with np.save + np.load between them", "floor", rows, LARGE_TARGET)
    # Where the time goes, measured on the same array in this run: the executor fingerprints
    # each output once (flowyml_core.fingerprint); the stores hash it for their integrity record.
    from flowyml_core.fingerprint import fingerprint
    from flowyml_local import digests

    array = make_array(mb)
    parts = [("core fingerprint", timed(lambda: fingerprint(array), repeat)),
             ("store digest", timed(lambda: digests.of(digests.FAST, array), repeat)),
             ("np.save alone", timed(lambda: np.save(floor_path, array), repeat)),
             ("np.load alone", timed(lambda: np.load(floor_path), repeat))]
    del array
    for name, (best, median) in parts:
        print(f"{name:<16}{best:>7.4f}s [{median:.3f}]")
    fresh()
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(mb), "--dir", root],
                         capture_output=True, text=True, check=True)
    peak = int(out.stdout.strip().splitlines()[-1])
    size = mb * 1024 * 1024
    ratio = peak / size
    print(f"{'peak RSS':<14}{peak / 2**20:>10.0f} MB  array {size / 2**20:.0f} MB{ratio:>10.2f}x{RSS_TARGET:>7.1f}x  "
          f"{'ok' if ratio <= RSS_TARGET else 'OVER TARGET'}  (whole process, one cold run)")
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--large-mb", type=int, default=512, help="the pipeline case's array (0: skip it)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        rss_child(args.rss_child, args.dir)
        return 0

    import numpy as np

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="flowyml-bench-xdg-"))
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

    size = args.size_mb * 1024 * 1024
    base = tempfile.mkdtemp(prefix="flowyml-bench-art-", dir=args.dir)
    try:
        store = LocalArtifactStore(LocalArtifactStoreConfig(path=os.path.join(base, "store")))
        cache = LocalCacheStore(LocalCacheStoreConfig(path=os.path.join(base, "cache")))
        raw_dir = os.path.join(base, "raw")
        os.makedirs(raw_dir)
        data = os.urandom(size)
        array = np.frombuffer(os.urandom(size), dtype="float64").copy()
        raw_path = os.path.join(raw_dir, "data.bin")
        npy_path = os.path.join(raw_dir, "data.npy")

        def fresh(path: str) -> Callable[[], None]:
            def remove() -> None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            return remove

        def raw_write() -> None:
            with open(raw_path, "wb") as fh:
                fh.write(data)

        def raw_read() -> bytes:
            with open(raw_path, "rb") as fh:
                return fh.read()

        uri_bytes = store.materialize(data, "payload", "bench", "bytes")
        uri_npy = store.materialize(array, "array", "bench", "npy")
        cache.set_value("bench" * 8, array + 1, "bench", "code")  # not the artifact's bytes: a full entry
        raw_write()
        np.save(npy_path, array)
        assert store.load(uri_bytes) == data and np.array_equal(store.load(uri_npy), array, equal_nan=True)
        assert np.array_equal(cache.get("bench" * 8).value, array + 1, equal_nan=True)

        writes = FreshArtifacts(store)
        rows = [
            ("bytes write", *compare(writes.write(data, "bytes"), raw_write, args.repeat, writes.drop("bytes"),
                                     fresh(raw_path))),
            ("bytes read", *compare(lambda: store.load(uri_bytes), raw_read, args.repeat)),
            ("npy write", *compare(writes.write(array, "npy"), lambda: np.save(npy_path, array), args.repeat,
                                   writes.drop("npy"), fresh(npy_path))),
            ("npy read", *compare(lambda: store.load(uri_npy), lambda: np.load(npy_path), args.repeat)),
            ("cache hit", *compare(lambda: cache.get("bench" * 8), lambda: np.load(npy_path), args.repeat)),
        ]
        with BusyCore():
            rows.append(("npy read, busy", *compare(lambda: store.load(uri_npy), lambda: np.load(npy_path),
                                                    args.repeat)))
        writes.drop_all()
        import blake3
        import xxhash

        hashes = [("xxh3-128 alone", timed(lambda: xxhash.xxh3_128(data).digest(), args.repeat), "safe formats' digest"),
                  ("blake3 alone", timed(lambda: blake3.blake3(data).digest(), args.repeat), "pickles' digest"),
                  ("sha256 alone", timed(lambda: hashlib.sha256(data).digest(), args.repeat), "for comparison")]

        print_table(f"flowyml local artifact store, {args.size_mb} MB payloads (python {sys.version.split()[0]}, "
                    f"{os.cpu_count()} cpus, best of {args.repeat}; median in brackets)", "raw", rows, TARGET)
        for name, (best, median), what in hashes:
            print(f"{name:<14}{best:>8.4f}s [{median:.3f}]  ({what}, {size / best / 1e9:.2f} GB/s on one core)")
        if args.large_mb:
            print()
            large_cases(args.large_mb, max(3, args.repeat // 3), base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
