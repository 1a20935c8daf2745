"""Benchmark of the kubernetes executor on the fake cluster (not a test): prints a table, exits 1 if a target is missed.

    .venv/bin/python bench/bench_kubernetes.py [--repeat 5]

The fake API server (tests/servers/fake_kubernetes.py) runs each Job's pod as
a local process, so what is timed is flowyml's own work around the units: the
orchestrator pod (start, stack, pipeline import, the walk through the API)
and the client's polling. Steps have ``cache=False`` so every unit runs.

1. **Whole run**: a diamond of 4 units (2 in parallel), ``run()`` to its
   result, against the kit's subprocess executor running the same units as
   ``flowyml step-runner`` processes with the same parallelism (no API, no
   orchestrator). Target: ≤ the subprocess run + 3 s (one orchestrator pod
   and the polls, at ``poll_interval = 0.1``).
2. **Fully cached run**: the same pipeline with the cache on, second run:
   nothing is created. Target: ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
MODULE = "bench_kubernetes"


def _pipelines() -> dict[str, Any]:
    from flowyml_core import Pipeline, step

    def diamond(name: str, cache: bool) -> Any:
        @step(outputs=["a"], name="source", cache=cache)
        def source() -> int:
            return 1

        @step(inputs=["a"], outputs=["b"], name="left", cache=cache)
        def left(a: int) -> int:
            return a + 1

        @step(inputs=["a"], outputs=["c"], name="right", cache=cache)
        def right(a: int) -> int:
            return a + 2

        @step(inputs=["b", "c"], outputs=["d"], name="join", cache=cache)
        def join(b: int, c: int) -> int:
            return b + c

        return Pipeline(name, [source, left, right, join])

    return {"uncached": diamond("bench-k8s", False), "cached": diamond("bench-k8s-cached", True)}


PIPELINES = _pipelines()
uncached = PIPELINES["uncached"]
cached = PIPELINES["cached"]


def _timed(run: Any) -> float:
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    if not result.success:
        raise SystemExit(f"a benchmark run failed: { {n: r.error for n, r in result.steps.items()} }")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path[:0] = [str(REPO), str(BENCH)]
    from flowyml_core.testing.project import KitProject
    from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin
    from tests.servers.fake_kubernetes import FakeKubernetes

    import bench_kubernetes  # the units import it under this name: use that copy of the pipelines

    logging.getLogger("flowyml.kubernetes").setLevel(logging.ERROR)  # the local-store warning, once per run
    work = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    os.chdir(BENCH)
    os.environ["XDG_CONFIG_HOME"] = str(work / "xdg")
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]), "HOME": str(work),
           "XDG_CONFIG_HOME": str(work / "xdg"), "PYTHONPATH": str(BENCH)}
    with FakeKubernetes(BENCH, env) as fake:
        project = KitProject(work / "project", plugins={"kit-subprocess": SubprocessExecutorPlugin()})
        stores = {"artifact_store": {"flavor": "local", "path": str(work / "artifacts")},
                  "cache_store": {"flavor": "local", "path": str(work / "cache")}}
        project.add_stack("k8s", "kubernetes", {"api_server": fake.url, "orchestrator_api_server": fake.url,
                                                "image": "bench:local", "poll_interval": 0.1, "max_parallel": 2}, **stores)
        project.add_stack("sub", "kit-subprocess", {"max_parallel": 2}, **stores)
        k8s, sub = project.resolve("k8s"), project.resolve("sub")
        pipe = bench_kubernetes.uncached
        ours, floor = [], []
        for i in range(args.repeat):
            pair = [("ours", k8s), ("floor", sub)] if i % 2 == 0 else [("floor", sub), ("ours", k8s)]
            for name, stack in pair:
                (ours if name == "ours" else floor).append(_timed(lambda s=stack: project.run(pipe, s)))
        project.run(bench_kubernetes.cached, k8s)
        if project.run(bench_kubernetes.cached, k8s).status.value != "cached":
            raise SystemExit("the second run of the cached pipeline was not fully cached")
        created = len(fake.calls_to("POST", r"/jobs$"))
        cached_times = [_timed(lambda: project.run(bench_kubernetes.cached, k8s)) for _ in range(args.repeat)]
        if len(fake.calls_to("POST", r"/jobs$")) != created:
            raise SystemExit("a fully cached run created Jobs")
    shutil.rmtree(work, ignore_errors=True)
    best_ours, best_floor, best_cached = min(ours), min(floor), min(cached_times)
    rows = [
        ("whole run, 4 units (2 parallel)", f"{best_ours:.2f} s", f"{best_floor:.2f} s (subprocess units)",
         "≤ floor + 3 s", best_ours <= best_floor + 3.0),
        ("fully cached run", f"{best_cached:.3f} s", "-", "≤ 0.5 s", best_cached <= 0.5),
    ]
    print(f"{'case':34} {'kubernetes':>12} {'floor':>28} {'target':>14}  ok")
    for case, value, base, target, ok in rows:
        print(f"{case:34} {value:>12} {base:>28} {target:>14}  {'yes' if ok else 'NO'}")
    return 0 if all(row[-1] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
