"""Benchmark of the docker executor (not a test): prints a table, exits 1 if a target is missed.

    sudo .venv/bin/python bench/bench_docker.py [--repeat 10]

It starts its own dockerd (tests/servers/docker_engine.py: root, the flags
this machine needs) and runs the units in the busybox image with this
interpreter and venv mounted read-only, as the tests do. Stores are local
(bind-mounted); steps have ``cache=False`` so every unit runs.

1. **Per unit**: one unit of a one-step pipeline, started by the executor's
   launcher (create, copy the private files, start, follow the output, wait,
   inspect, read the records, remove) against a bare ``docker run`` of the
   same container (same image, command, environment and mounts: create,
   start, wait, remove), alternately. Target: median ≤ 1.3× the bare run's.
2. **Parallel units**: 8 independent units that each sleep 1 s, with
   ``max_parallel = 8`` against ``max_parallel = 1``, whole runs (image
   found, run handle, walk). Target: ≤ 0.6× the sequential time.
3. **Process isolation** (local ``isolation = "process"``): the row of
   ``bench/bench_isolation.py``, when that file exists (see ``_isolation_rows``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
#: The units import this file as a module (``bench_docker``): keep its import free of side effects.
MODULE = "bench_docker"


def _pipelines() -> dict[str, Any]:
    from flowyml_core import Pipeline, step

    @step(outputs=["one"], cache=False)
    def tiny() -> int:
        return 1

    def sleeper(i: int) -> Any:
        @step(outputs=[f"s{i}"], name=f"sleep{i}", cache=False)
        def nap() -> float:
            time.sleep(1.0)
            return 1.0

        return nap

    return {"single": Pipeline("bench-single", [tiny]),
            "parallel": Pipeline("bench-parallel", [sleeper(i) for i in range(8)])}


PIPELINES = _pipelines()
single = PIPELINES["single"]
parallel = PIPELINES["parallel"]


class Bench:
    """An engine, the busybox image with this Python mounted, and stacks on local stores."""

    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(REPO))
        from tests.servers.docker_engine import DockerEngine, build_busybox_image, host_python_options

        self.engine = DockerEngine().start()
        self.client = self.engine.client()
        self.image = build_busybox_image(self.client)
        self.root = root
        self.options = {"docker_host": self.engine.base_url, "image": self.image, "network": "none",
                        "env_vars": {"PYTHONPATH": str(BENCH)}, **host_python_options(REPO)}

    def stack(self, **options: Any) -> Any:
        from flowyml_core.testing.project import KitProject

        project = KitProject(self.root / uuid.uuid4().hex[:8])
        project.add_stack("bench", "docker", {**self.options, **options},
                          artifact_store={"flavor": "local", "path": str(self.root / "artifacts")},
                          cache_store={"flavor": "local", "path": str(self.root / "cache")})
        return project.resolve("bench")

    def close(self) -> None:
        self.engine.stop()


def per_unit(bench: Bench, repeat: int) -> tuple[list[float], list[float]]:
    """Seconds per unit: the executor's launcher, and a bare run of the same container."""
    from flowyml_core.remote import RemoteRun

    stack = bench.stack()
    executor = stack.executor

    def prepared() -> tuple[Any, Any]:
        remote = RemoteRun(single, uuid.uuid4().hex[:16], pipeline_module=f"{MODULE}:single", stack=stack)
        return executor.launcher(remote), remote.tasks[0]

    def ours() -> float:
        launcher, task = prepared()
        started = time.perf_counter()
        failure = launcher(task)
        elapsed = time.perf_counter() - started
        if failure is not None:
            raise SystemExit(f"benchmark unit failed: {failure}")
        return elapsed

    def bare() -> float:
        launcher, task = prepared()
        kwargs = {**launcher.common, "environment": {**launcher.common["environment"], **task.env}}
        started = time.perf_counter()
        container = bench.client.containers.create(launcher.image, **kwargs)
        container.start()
        code = container.wait()["StatusCode"]
        container.remove(force=True)
        elapsed = time.perf_counter() - started
        if code != 0:
            raise SystemExit(f"bare docker run exited with {code}")
        return elapsed

    ours()  # warm-up: page cache, the engine's image layers
    bare()
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    for i in range(repeat):
        for name, func in (("ours", ours), ("bare", bare)) if i % 2 == 0 else (("bare", bare), ("ours", ours)):
            times[name].append(func())
    return times["ours"], times["bare"]


def whole_run(bench: Bench, max_parallel: int) -> float:
    from flowyml_core.pipeline import run_on_stack

    stack = bench.stack(max_parallel=max_parallel)
    started = time.perf_counter()
    result = run_on_stack(parallel, stack, source=f"{MODULE}:parallel")
    elapsed = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"benchmark run failed: {[(n, r.error) for n, r in result.steps.items() if not r.success]}")
    return elapsed


def _isolation_rows(repeat: int) -> list[tuple[str, float, float, float, str]]:
    """Rows of ``bench/bench_isolation.py`` (local ``isolation = "process"``), when it exists.

    Its author provides ``rows(repeat) -> [(case, ours_s, floor_s, target_ratio, note)]``;
    until then this section prints that the benchmark is not there yet.
    """
    path = BENCH / "bench_isolation.py"
    if not path.exists():
        return []
    sys.path.insert(0, str(BENCH))
    import bench_isolation  # noqa: PLC0415  (only when the file exists)

    return list(bench_isolation.rows(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="rounds of the per-unit comparison (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[tuple[str, float, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-docker-") as tmp:
        bench = Bench(Path(tmp))
        try:
            ours, bare = per_unit(bench, args.repeat)
            rows.append((f"per unit: launcher vs bare docker run (median of {args.repeat})",
                         statistics.median(ours), statistics.median(bare), 1.3,
                         f"min {min(ours):.3f}s vs {min(bare):.3f}s"))
            sequential = whole_run(bench, 1)
            concurrent = whole_run(bench, 8)
            rows.append(("8 units x 1 s sleep: max_parallel 8 vs 1", concurrent, sequential, 0.6,
                         f"{os.cpu_count()} cpus"))
        finally:
            bench.close()
    rows.extend(_isolation_rows(args.repeat))
    print(f"flowyml docker executor (python {sys.version.split()[0]}, {os.cpu_count()} cpus)")
    print(f"{'case':<58} {'flowyml':>9} {'baseline':>9} {'ratio':>7} {'target':>7}  verdict")
    print("-" * 104)
    missed = 0
    for case, value, baseline, target, note in rows:
        ratio = value / baseline
        verdict = "ok" if ratio <= target else "OVER TARGET"
        missed += verdict != "ok"
        print(f"{case:<58} {value:>8.3f}s {baseline:>8.3f}s {ratio:>6.2f}x {target:>6.1f}x  {verdict}  ({note})")
    if not (BENCH / "bench_isolation.py").exists():
        print("process isolation: bench/bench_isolation.py is not there yet (issue 12, item 5)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
