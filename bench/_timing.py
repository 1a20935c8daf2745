"""What the benchmarks share: flowyml and its baseline timed alternately; for the artifact ones, fresh artifacts per write and the table."""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from typing import Any, Callable

Timing = tuple[float, float]  # (best, median) seconds


def compare(ours: Callable[[], object], raw: Callable[[], object], repeat: int,
            before_ours: Callable[[], object] | None = None,
            before_raw: Callable[[], object] | None = None) -> tuple[Timing, Timing]:
    """(best, median) of ``ours`` and of ``raw`` (flowyml and its baseline) over ``repeat`` rounds each.

    The two alternate (ours-raw, then raw-ours, ...) so that drift on a shared
    machine (page cache, CPU frequency, a neighbour's load) hits both alike
    instead of whichever ran second. ``before_*`` runs untimed before each call.
    """
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    cases = {"ours": (ours, before_ours), "raw": (raw, before_raw)}
    for i in range(repeat):
        for name in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
            func, before = cases[name]
            if before is not None:
                before()
            times[name].append(_time_once(func))
    return _summary(times["ours"]), _summary(times["raw"])


def _time_once(func: Callable[[], object]) -> float:
    """One timed call, with the garbage collector run before and kept out of it (µs-scale cases)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        func()
        return time.perf_counter() - start
    finally:
        gc.enable()


def timed(func: Callable[[], object], repeat: int) -> Timing:
    """(best, median) seconds of ``func`` alone (for reference rows)."""
    return _summary([_time_once(func) for _ in range(repeat)])


def _summary(times: list[float]) -> Timing:
    return min(times), statistics.median(times)


class FreshArtifacts:
    """Store writes that go to a new artifact (a new run) each time, as in real runs.

    ``write(obj, step)`` is the timed call; ``drop(step)`` removes the
    previous copy outside the timed part (like unlinking the raw file), which
    also keeps an in-memory emulator small.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._runs = itertools.count()
        self._current: dict[str, str] = {}

    def write(self, obj: object, step: str) -> Callable[[], None]:
        def write() -> None:
            self._current[step] = self._store.materialize(obj, "out", f"run-{next(self._runs)}", step)
        return write

    def drop(self, step: str) -> Callable[[], None]:
        def remove() -> None:
            if step in self._current:
                self._store.delete(self._current.pop(step))
        return remove

    def drop_all(self) -> None:
        for step in list(self._current):
            self.drop(step)()


def store_vs_filesystem(store: Any, fs: Any, root: str, data: bytes, array: Any, repeat: int,
                        bytes_only: bool = False) -> list[tuple[str, Timing, Timing]]:
    """The four rows of a bucket store against its raw fsspec filesystem (``root``: a writable ``bucket/dir``).

    bytes write/read: ``store.materialize``/``store.load`` vs ``fs.pipe_file``/``fs.cat_file``; npy
    write/read: the same vs ``np.save`` into memory + ``fs.pipe_file``, ``fs.cat_file`` + ``np.load``.
    Both sides are checked to round-trip before anything is timed. ``bytes_only``: the filesystem
    takes no memoryview (s3fs), so the raw npy write pays for a copy of the buffer.
    """
    import io

    import numpy as np

    raw_path, npy_path = f"{root}/data.bin", f"{root}/data.npy"
    writes = FreshArtifacts(store)

    def raw_npy_write() -> None:
        buf = io.BytesIO()
        np.save(buf, array)
        fs.pipe_file(npy_path, buf.getvalue() if bytes_only else buf.getbuffer())

    def raw_npy_read() -> object:
        return np.load(io.BytesIO(fs.cat_file(npy_path)))

    uri_bytes = store.materialize(data, "payload", "bench", "bytes")
    uri_npy = store.materialize(array, "array", "bench", "npy")
    fs.pipe_file(raw_path, data)
    raw_npy_write()
    assert store.load(uri_bytes) == data and fs.cat_file(raw_path) == data
    assert np.array_equal(store.load(uri_npy), array, equal_nan=True)
    assert np.array_equal(raw_npy_read(), array, equal_nan=True)
    rows = [
        ("bytes write", *compare(writes.write(data, "bytes"), lambda: fs.pipe_file(raw_path, data), repeat,
                                 writes.drop("bytes"))),
        ("bytes read", *compare(lambda: store.load(uri_bytes), lambda: fs.cat_file(raw_path), repeat)),
        ("npy write", *compare(writes.write(array, "npy"), raw_npy_write, repeat, writes.drop("npy"))),
        ("npy read", *compare(lambda: store.load(uri_npy), raw_npy_read, repeat)),
    ]
    writes.drop_all()
    return rows


def print_table(title: str, raw_label: str, rows: list[tuple[str, Timing, Timing]], target: float,
                digits: int = 4) -> None:
    """The benchmark's table: best [median] of the store and of the raw call, their ratio and the verdict."""
    print(title)
    print(f"{'case':<14}{'store':>18}{raw_label:>18}{'ratio':>8}{'target':>8}  verdict")
    print("-" * 76)
    for name, (s_best, s_med), (r_best, r_med) in rows:
        ratio = s_best / r_best
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(f"{name:<14}{s_best:>8.{digits}f}s [{s_med:.3f}]{r_best:>8.{digits}f}s [{r_med:.3f}]"
              f"{ratio:>7.2f}x{target:>7.1f}x  {verdict}")


def bucket_bench(doc: str, argv: list[str] | None, service: str, raw_label: str,
                 rows_on_server: Callable[[bytes, Any, int], list[tuple[str, Timing, Timing]]]) -> int:
    """``main()`` of a bucket store benchmark: options, the payloads, the rows measured on a server, the table.

    ``rows_on_server(data, array, repeat)`` starts the service, builds the
    store and returns :func:`store_vs_filesystem`'s rows.
    """
    import argparse
    import os
    import sys
    import tempfile

    import numpy as np

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="flowyml-bench-xdg-"))
    size = args.size_mb * 1024 * 1024
    data = os.urandom(size)
    array = np.frombuffer(os.urandom(size), dtype="float64").copy()
    rows = rows_on_server(data, array, args.repeat)
    print_table(f"flowyml {service} artifact store vs {raw_label}, {args.size_mb} MB payloads "
                f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, best of {args.repeat}; median in brackets)",
                raw_label.split(" on ")[0], rows, BUCKET_TARGET, digits=3)
    return 0


#: Store read or write against the raw fsspec call on the same server (bench_gcs, bench_s3).
BUCKET_TARGET = 1.3
