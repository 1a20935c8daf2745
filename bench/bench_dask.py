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

Each figure is the median of ``--repeat`` runs. No cache or artifact store is
used, so both sides do the same work.
"""

from __future__ import annotations

import argparse
import logging
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


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
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

        local_nap = _median([_run(local, naps) for _ in range(args.repeat)])
        dask_nap = _median([_run(dask, naps) for _ in range(args.repeat)])
        speedup = local_nap / dask_nap
        passed = speedup >= 1.7
        ok &= passed
        rows.append(("100 × sleep 50 ms", f"local (sequential) {local_nap:.3f} s", f"dask, 2 workers {dask_nap:.3f} s",
                     f"speed-up {speedup:.2f}× (target ≥ 1.70×)", "PASS" if passed else "FAIL"))

        raw, ours = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            raw.append(_raw(dask.client, 1000))
            ours.append(_run(dask, tinies))
        raw_t, ours_t = _median(raw), _median(ours)
        ratio = ours_t / raw_t
        passed = ratio <= 1.5
        ok &= passed
        rows.append(("1000 tiny steps", f"raw dask submit/gather {raw_t:.3f} s", f"flowyml dask {ours_t:.3f} s",
                     f"overhead {ratio:.2f}× raw (target ≤ 1.50×)", "PASS" if passed else "FAIL"))
    finally:
        dask.close()
        cluster.close()

    headers = ("case", "baseline", "flowyml-dask", "result", "")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(f"flowyml-dask benchmark (median of {args.repeat}; LocalCluster 2 workers × 1 thread; python {sys.version.split()[0]})")
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
