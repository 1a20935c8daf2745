"""Benchmark of the dask executor (not a test): prints a table, exits 1 if a target is missed.

    .venv/bin/python bench/bench_dask.py [--repeat 3]

Everything is measured in this one process run, on one LocalCluster of 2 worker
processes with 1 thread each (127.0.0.1, no dashboard), after a warm-up:

1. 100 independent steps that each sleep 50 ms: the ``dask`` executor against
   the ``local`` executor running them one after another. Target: dask ≥ 1.7×
   faster.
2. 1000 independent tiny steps: the ``dask`` executor against raw Dask
   (``client.submit`` of the same function 1000 times, then ``gather``).
   Target: flowyml's time ≤ 1.5× raw Dask's.
3. A 200 MB ndarray made by one step and summed by the next: the ``dask``
   executor against raw Dask (``client.submit(make)`` then
   ``client.submit(total, future).result()``). Targets: flowyml's time ≤ 1.3×
   raw Dask's, and the peak RSS of this (the client's) process grows by less
   than 50 MB during a run: the array stays on the workers.

Both sides of a comparison are measured alternately, ``--repeat`` times each,
and judged on their best time (the least disturbed by other processes on the
machine); the median is printed too. No cache or artifact store is used, so
both sides do the same work.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import uuid
from typing import Any, Callable


def nap() -> int:
    time.sleep(0.05)
    return 1


def tiny(i: int = 0) -> int:
    return i + 1


def _pipeline(name: str, func: Callable[..., Any], count: int) -> Any:
    from flowyml_core.pipeline import Pipeline
    from flowyml_core.step import Step

    steps = [Step(func=func, name=f"{func.__name__}_{i}", outputs=[f"out_{i}"], cache=False) for i in range(count)]
    return Pipeline(f"bench-{name}", steps=steps).build()


def _run(executor: Any, pipeline: Any) -> float:
    started = time.perf_counter()
    result = executor.run_pipeline(pipeline, f"bench-{uuid.uuid4().hex[:8]}")
    elapsed = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"benchmark run failed: {[(r.step_name, r.error) for r in result.failed_steps][:3]}")
    return elapsed


def _raw(client: Any, count: int) -> float:
    started = time.perf_counter()
    futures = [client.submit(tiny, i, pure=False) for i in range(count)]
    client.gather(futures)
    return time.perf_counter() - started


ARRAY_BYTES = 200_000_000


def make_array() -> Any:
    import numpy as np

    return np.full(ARRAY_BYTES // 8, 1.0)


def total(array: Any) -> float:
    return float(array.sum())


def _array_pipeline() -> Any:
    from flowyml_core.pipeline import Pipeline
    from flowyml_core.step import Step

    return Pipeline("bench-array", steps=[
        Step(func=make_array, name="make", outputs=["array"], cache=False),
        Step(func=total, name="total", inputs=["array"], outputs=["total"], cache=False),
    ]).build()


def _raw_array(client: Any) -> float:
    started = time.perf_counter()
    made = client.submit(make_array, pure=False)
    result = client.submit(total, made, pure=False).result()
    elapsed = time.perf_counter() - started
    assert result == ARRAY_BYTES // 8
    return elapsed


def _reset_peak_rss() -> bool:
    """Make the kernel's peak-RSS mark (VmHWM) start again from the current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _ours_array(executor: Any, pipeline: Any, growth: list[float]) -> float:
    """One flowyml run of the array pipeline; appends how far this process's peak RSS rose above its RSS before."""
    _reset_peak_rss()
    before = _rss_mb("VmRSS")
    started = time.perf_counter()
    result = executor.run_pipeline(pipeline, f"bench-{uuid.uuid4().hex[:8]}")
    elapsed = time.perf_counter() - started
    if not result.success or result.outputs["total"] != ARRAY_BYTES // 8:
        raise SystemExit(f"benchmark run failed: {[(r.step_name, r.error) for r in result.failed_steps][:3]}")
    growth.append(_rss_mb("VmHWM") - before)
    del result  # frees the array on its worker
    return elapsed


def _fmt(label: str, samples: list[float]) -> str:
    return f"{label} {min(samples):.3f} s (median {statistics.median(samples):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from distributed import LocalCluster

    from flowyml_dask.config import DaskExecutorConfig
    from flowyml_dask.executor import DaskExecutor
    from flowyml_local.executor import LocalExecutor

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.ERROR,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
    )
    dask = DaskExecutor(DaskExecutorConfig(address=cluster.scheduler_address))
    local = LocalExecutor()
    rows: list[tuple[str, str, str, str, str]] = []
    ok = True
    try:
        naps, tinies = _pipeline("nap", nap, 100), _pipeline("tiny", tiny, 1000)
        _run(dask, _pipeline("warm", tiny, 50))  # connect, ship code, warm the workers
        _raw(dask.client, 50)

        local_nap, dask_nap = [], []
        for _ in range(args.repeat):  # alternately, so both see the same machine state
            local_nap.append(_run(local, naps))
            dask_nap.append(_run(dask, naps))
        speedup = min(local_nap) / min(dask_nap)
        passed = speedup >= 1.7
        ok &= passed
        rows.append(("100 × sleep 50 ms", _fmt("local (sequential)", local_nap), _fmt("dask, 2 workers", dask_nap),
                     f"speed-up {speedup:.2f}× (target ≥ 1.70×)", "PASS" if passed else "FAIL"))

        raw, ours = [], []
        for _ in range(args.repeat):
            raw.append(_raw(dask.client, 1000))
            ours.append(_run(dask, tinies))
        ratio = min(ours) / min(raw)
        passed = ratio <= 1.5
        ok &= passed
        rows.append(("1000 tiny steps", _fmt("raw dask submit/gather", raw), _fmt("flowyml dask", ours),
                     f"overhead {ratio:.2f}× raw (target ≤ 1.50×)", "PASS" if passed else "FAIL"))

        if not _reset_peak_rss():
            raise SystemExit("cannot reset the peak RSS through /proc/self/clear_refs: this row needs Linux")
        arrays, growth = _array_pipeline(), []
        _ours_array(dask, arrays, growth)  # warm-up: numpy imported on the workers, code shipped
        _raw_array(dask.client)
        raw, ours, growth = [], [], []
        for _ in range(args.repeat):
            raw.append(_raw_array(dask.client))
            ours.append(_ours_array(dask, arrays, growth))
        ratio = min(ours) / min(raw)
        passed = ratio <= 1.3
        ok &= passed
        rows.append(("200 MB array, make → total", _fmt("raw submit(f) → submit(g, future)", raw),
                     _fmt("flowyml dask", ours), f"time {ratio:.2f}× raw (target ≤ 1.30×)", "PASS" if passed else "FAIL"))
        passed = max(growth) < 50
        ok &= passed
        rows.append(("  client peak RSS during a run", "", f"+{max(growth):.1f} MB (worst of {len(growth)})",
                     "target < +50 MB", "PASS" if passed else "FAIL"))
    finally:
        dask.close()
        cluster.close()

    headers = ("case", "baseline", "flowyml-dask", "result", "")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(f"flowyml-dask benchmark (best of {args.repeat}, alternating; LocalCluster 2 workers × 1 thread; "
          f"python {sys.version.split()[0]}; load average {os.getloadavg()[0]:.1f})")
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
