"""Overhead of the local executor against a plain-Python floor measured in the same run.

    .venv/bin/python bench/bench_local.py            # the table
    .venv/bin/python bench/bench_local.py --profile chain   # cProfile of one case

Each case runs a pipeline of trivial steps, so what is timed is flowyml's own
work. The floor is what a person would write by hand for the same job, in the
same process, so the ratio does not depend on the machine:

* no cache: a topological sort of the steps (Kahn, from the declared
  inputs/outputs) and, per step, a call with the available values filtered by
  the function's signature (signatures computed beforehand, as ``@step`` does
  at import time);
* fully cached: the same walk, but per step the inputs are hashed (sha256 of
  their pickle) and the result is read from a file and unpickled;
* cold with cache writes: the walk with calls, hashing inputs, and the result
  pickled and written to a file.
* cold with cache and artifacts (the default ``local`` stack): the walk with
  calls, hashing inputs, and per step two files written *atomically* (a temp
  file and a rename, as any store that survives a kill must) into one
  directory: the cache entry and the artifact.

flowyml's time is ``run_on_stack`` on a pre-resolved stack (plugin loading and
``stacks.toml`` parsing happen once per process and are not counted), and it
includes building the pipeline (graph checks, topological order, units).
Times are the best of several repetitions, flowyml and its floor measured
alternately so both see the same machine; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare  # noqa: E402

from flowyml_core import Context, Pipeline  # noqa: E402
from flowyml_core.history import flush as flush_history  # noqa: E402
from flowyml_core.pipeline import run_on_stack  # noqa: E402
from flowyml_core.plugins import get_registry  # noqa: E402
from flowyml_core.step import Step  # noqa: E402
from flowyml_local.executor import LocalExecutor  # noqa: E402

CHAIN = 1000
FANOUT = 100


# -- workloads ------------------------------------------------------------------------
def chain_steps(n: int = CHAIN) -> list[Step]:
    """``s0(seed) -> a0``, then ``s{i}(x) -> a{i}`` consuming ``a{i-1}`` by position."""

    def first(seed: int) -> int:
        return seed

    def nxt(x: int) -> int:
        return x + 1

    steps = [Step(func=first, name="s0", outputs=("a0",))]
    steps += [Step(func=nxt, name=f"s{i}", inputs=(f"a{i - 1}",), outputs=(f"a{i}",)) for i in range(1, n)]
    return steps


def fanout_steps(n: int = FANOUT) -> list[Step]:
    """One source, ``n`` independent consumers of its output."""

    def source(seed: int) -> int:
        return seed

    def leaf(x: int) -> int:
        return x * 2

    steps = [Step(func=source, name="source", outputs=("x",))]
    steps += [Step(func=leaf, name=f"leaf{i}", inputs=("x",), outputs=(f"y{i}",)) for i in range(n)]
    return steps


# -- the plain-Python floor -----------------------------------------------------------
class Plain:
    """A hand-written runner: what any orchestration costs at the very least."""

    def __init__(self, steps: list[Step]) -> None:
        # Plain functions and declarations, signatures computed ahead (as @step does).
        self.steps = [
            (s.name, s.func, list(s.inputs), list(s.outputs), [p for p in inspect.signature(s.func).parameters])
            for s in steps
        ]

    def order(self) -> list[tuple[Any, ...]]:
        producer = {o: i for i, (_, _, _, outs, _) in enumerate(self.steps) for o in outs}
        deps = [{producer[a] for a in ins} for (_, _, ins, _, _) in self.steps]
        children: list[list[int]] = [[] for _ in self.steps]
        for i, ds in enumerate(deps):
            for d in ds:
                children[d].append(i)
        missing = [len(d) for d in deps]
        ready = [i for i, m in enumerate(missing) if m == 0]
        out = []
        while ready:
            i = ready.pop()
            out.append(self.steps[i])
            for c in children[i]:
                missing[c] -= 1
                if missing[c] == 0:
                    ready.append(c)
        return out

    @staticmethod
    def _args(ins: list[str], params: list[str], values: dict[str, Any], params_in: dict[str, Any]) -> dict[str, Any]:
        kwargs = {}
        for pos, asset in enumerate(ins):  # declared inputs by name, else by position
            kwargs[asset if asset in params else params[pos]] = values[asset]
        for p in params:
            if p not in kwargs and p in params_in:
                kwargs[p] = params_in[p]
        return kwargs

    def run(self, params: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for _, func, ins, outs, sig in self.order():
            values[outs[0]] = func(**self._args(ins, sig, values, params))
        return values

    def run_writing(self, params: dict[str, Any], directory: str, atomic: bool = False) -> dict[str, Any]:
        """Per step: the result pickled into a file named by the hash of the inputs.

        ``atomic``: also the output as an artifact, and each of the two files a temp
        file renamed into place, in one directory (what a store that survives kill -9 does).
        """
        values: dict[str, Any] = {}
        for name, func, ins, outs, sig in self.order():
            kwargs = self._args(ins, sig, values, params)
            key = hashlib.sha256(pickle.dumps((name, kwargs))).hexdigest()
            values[outs[0]] = value = func(**kwargs)
            data = pickle.dumps(value)
            if not atomic:
                with open(os.path.join(directory, key), "wb") as fh:
                    fh.write(data)
                continue
            for target in (os.path.join(directory, f"{name}.{outs[0]}"), os.path.join(directory, key)):
                with open(target + ".tmp", "wb") as fh:
                    fh.write(data)
                os.replace(target + ".tmp", target)
        return values

    def run_cached(self, params: dict[str, Any], directory: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, _, ins, outs, sig in self.order():
            kwargs = self._args(ins, sig, values, params)
            key = hashlib.sha256(pickle.dumps((name, kwargs))).hexdigest()
            with open(os.path.join(directory, key), "rb") as fh:
                values[outs[0]] = pickle.loads(fh.read())
        return values


# -- flowyml ------------------------------------------------------------------------------
def stack(cache_path: str | None = None, artifact_path: str | None = None) -> Any:
    components: dict[str, Any] = {"executor": LocalExecutor(), "cache_store": None, "artifact_store": None, "router": None}
    if cache_path is not None:
        from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

        components["cache_store"] = LocalCacheStore(LocalCacheStoreConfig(path=cache_path))
    if artifact_path is not None:
        from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

        components["artifact_store"] = LocalArtifactStore(LocalArtifactStoreConfig(path=artifact_path))
    return SimpleNamespace(name="bench", **components)


def flowyml_run(steps: list[Step], the_stack: Any, run_id: str = "bench") -> Any:
    pipeline = Pipeline("bench", steps)  # built inside run_on_stack: counted
    result = run_on_stack(pipeline, the_stack, context=Context(seed=1), run_id=run_id, registry=REGISTRY)
    if not result.success:
        raise SystemExit(f"benchmark pipeline failed: {result.failed_steps[0].error}")
    return result


REGISTRY: Any = None


# -- timing -------------------------------------------------------------------------------------
def fresh_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def cases(tmp: str, repeat: int) -> list[tuple[str, float, float, float | str | None, str]]:
    """(case, flowyml seconds, floor seconds, target (seconds, or a ratio like "2.5x"), note)."""
    rows = []
    chain, fan = chain_steps(), fanout_steps()
    plain_chain, plain_fan = Plain(chain), Plain(fan)
    params = {"seed": 1}

    # sanity: same answers as the floor
    assert flowyml_run(chain, stack()).outputs[f"a{CHAIN - 1}"] == plain_chain.run(params)[f"a{CHAIN - 1}"]

    (ours, _), (floor, _) = compare(lambda: flowyml_run(chain, stack()), lambda: plain_chain.run(params), repeat)
    rows.append((f"{CHAIN}-step chain, no cache", ours, floor, 0.05, ""))
    (ours, _), (floor, _) = compare(lambda: flowyml_run(fan, stack()), lambda: plain_fan.run(params), repeat * 3)
    rows.append((f"{FANOUT}-step fan-out, no cache", ours, floor, 0.01, ""))

    try:
        import flowyml_local.cache_store  # noqa: F401
    except ImportError as exc:
        rows.append((f"{CHAIN}-step chain, cold cache / fully cached", float("nan"), float("nan"), None, f"skipped: {exc}"))
        return rows

    cache_dir, floor_dir = os.path.join(tmp, "cache"), os.path.join(tmp, "floor")
    cold_stack = {}

    def cold_setup() -> None:
        fresh_dir(cache_dir)
        cold_stack["s"] = stack(cache_dir)

    (cold, _), (cold_floor, _) = compare(
        lambda: flowyml_run(chain, cold_stack["s"]), lambda: plain_chain.run_writing(params, floor_dir), repeat,
        cold_setup, lambda: fresh_dir(floor_dir),
    )
    rows.append((f"{CHAIN}-step chain, cold, cache writes", cold, cold_floor, 0.5, "floor: + hash inputs + file write"))

    warm_stack = stack(cache_dir)  # the cache written by the last cold run
    result = flowyml_run(chain, warm_stack)
    if not all(r.cached for r in result.steps.values()):
        raise SystemExit("second run was not fully cached")
    (warm, _), (warm_floor, _) = compare(
        lambda: flowyml_run(chain, warm_stack), lambda: plain_chain.run_cached(params, floor_dir), repeat
    )
    rows.append((f"{CHAIN}-step chain, fully cached", warm, warm_floor, 0.1, "floor: + hash inputs + file read"))

    try:
        import flowyml_local.artifact_store  # noqa: F401
    except ImportError:
        return rows
    art_dir = os.path.join(tmp, "artifacts")
    full = {}

    def full_setup() -> None:
        fresh_dir(cache_dir)
        fresh_dir(art_dir)
        full["s"] = stack(cache_dir, art_dir)

    (cold_full, _), (cold_floor, _) = compare(
        lambda: flowyml_run(chain, full["s"]), lambda: plain_chain.run_writing(params, floor_dir, atomic=True),
        max(1, repeat // 2), full_setup, lambda: fresh_dir(floor_dir),
    )
    rows.append((f"{CHAIN}-step chain, cold, cache + artifacts", cold_full, cold_floor, "2.5x",
                 "floor: + hash inputs + two atomic files per step in one directory"))
    return rows


# -- issue 15: threads for a fan-out that waits on I/O, and what Pipeline.run adds to run_on_stack ----------
IO_WAIT = 0.05
RUNS_PER_SAMPLE = 50  # short samples, many of them: the best ones miss the machine's busy moments


def io_fanout_steps(n: int = FANOUT) -> list[Step]:
    """One source and ``n`` consumers that each wait ``IO_WAIT`` seconds (``time.sleep`` releases the GIL, as I/O does)."""
    import time

    def source(seed: int) -> int:
        return seed

    def wait_on_io(x: int) -> int:
        time.sleep(IO_WAIT)
        return x

    steps = [Step(func=source, name="source", outputs=("x",))]
    steps += [Step(func=wait_on_io, name=f"io{i}", inputs=("x",), outputs=(f"w{i}",)) for i in range(n)]
    return steps


def issue15_rows(tmp: str, repeat: int) -> list[tuple[str, float, float, float | None, str]]:
    """The fan-out with ``max_workers = 8`` against the same run sequential (target: ≤ 1/6 of it), and the
    fixed cost ``Pipeline.run(stack=...)`` adds to ``run_on_stack`` on a resolved stack (target: ≤ 100 µs)."""
    from flowyml_local.executor import LocalExecutorConfig

    rows = []
    steps = io_fanout_steps()
    threaded = SimpleNamespace(name="bench", executor=LocalExecutor(LocalExecutorConfig(max_workers=8)),
                               cache_store=None, artifact_store=None, router=None)
    (ours, _), (sequential, _) = compare(lambda: flowyml_run(steps, threaded), lambda: flowyml_run(steps, stack()),
                                         max(2, repeat // 4))
    rows.append((f"{FANOUT}-step fan-out, {IO_WAIT * 1000:.0f} ms I/O, 8 threads", ours, sequential, sequential / 6,
                 f"floor: the same run with max_workers=1, {sequential / ours:.1f}x as long; target: 1/6 of it"))

    project = os.path.join(tmp, "run-project")
    os.makedirs(project)
    with open(os.path.join(project, "stacks.toml"), "w", encoding="utf-8") as fh:
        fh.write('[stacks.bench]\nexecutor = "local"\n')
    cwd = os.getcwd()
    os.chdir(project)
    try:
        from flowyml_core.stacks import cached_stack

        def one() -> int:
            return 1

        pipeline = Pipeline("bench-one", [Step(func=one, name="one", outputs=("y",), cache=False)])
        resolved = cached_stack("bench")

        # Both sides write a history entry per run on the history's thread, and that thread takes the GIL
        # whenever the run's own thread releases it (each os.stat of the stacks files does). Each sample
        # therefore ends by waiting for its own entries: otherwise the writes one side left pending would
        # be paid by whichever sample ran next, and the side releasing the GIL more often would be charged
        # for writes the other side merely deferred.
        def through_run() -> None:
            for _ in range(RUNS_PER_SAMPLE):
                pipeline.run(stack="bench")
            flush_history()

        def on_resolved() -> None:
            for _ in range(RUNS_PER_SAMPLE):
                run_on_stack(pipeline, resolved, registry=REGISTRY)
            flush_history()

        def resolving_each_time() -> None:  # what run() did before the stack was cached
            from flowyml_core.stacks import StackRegistry

            for _ in range(RUNS_PER_SAMPLE // 5):
                run_on_stack(pipeline, StackRegistry.load().resolve("bench", registry=REGISTRY), registry=REGISTRY)
            flush_history()

        through_run()
        (ours, _), (floor, _) = compare(through_run, on_resolved, max(30, repeat * 4))
        ours, floor = ours / RUNS_PER_SAMPLE, floor / RUNS_PER_SAMPLE
        rows.append(("1-step run(stack=...), fixed cost", ours, floor, floor + 100e-6,
                     f"run() {ours * 1e6:.0f} µs, floor run_on_stack on the resolved stack {floor * 1e6:.0f} µs: "
                     f"fixed cost {(ours - floor) * 1e6:.0f} µs, target ≤ 100 µs"))
        unrecorded = copy.copy(resolved)
        unrecorded.project_dir = None  # a stack without a project: no history entry

        def recording() -> None:  # the writes themselves are the history thread's: not waited for here
            for _ in range(RUNS_PER_SAMPLE):
                run_on_stack(pipeline, resolved, registry=REGISTRY)

        def without_history() -> None:
            for _ in range(RUNS_PER_SAMPLE):
                run_on_stack(pipeline, unrecorded, registry=REGISTRY)

        (recorded, _), (bare, _) = compare(recording, without_history, max(30, repeat * 4),
                                           before_ours=flush_history, before_raw=flush_history)
        recorded, bare = recorded / RUNS_PER_SAMPLE, bare / RUNS_PER_SAMPLE
        flush_history()
        rows.append(("  run history, in the run's path", recorded, bare, bare + 25e-6,
                     f"{(recorded - bare) * 1e6:.0f} µs per run for its .flowyml/runs entry (written on the "
                     "history's thread), target ≤ 25 µs"))
        (before, _), (floor, _) = compare(resolving_each_time, on_resolved, max(10, repeat))
        before, floor = before / (RUNS_PER_SAMPLE // 5), floor / RUNS_PER_SAMPLE
        rows.append(("  the same, stack resolved on each run", before, floor, None,
                     f"info: before the cache, fixed cost {(before - floor) * 1e6:.0f} µs"))
    finally:
        os.chdir(cwd)
        flush_history()  # the entries of these runs are written before the next cases are timed
    return rows


def table(rows: list[tuple[str, float, float, float | str | None, str]]) -> str:
    head = f"{'case':<42} {'flowyml':>9} {'floor':>9} {'ratio':>7} {'target':>8}  verdict"
    lines = [head, "-" * len(head)]
    for case, ours, floor, target, note in rows:
        if ours != ours:  # nan: not measured
            lines.append(f"{case:<42} {'-':>9} {'-':>9} {'-':>7} {'-':>8}  {note}")
            continue
        verdict = "" if target is None else ("ok" if within(ours, floor, target) else "OVER TARGET")
        target_text = "-" if target is None else target if isinstance(target, str) else f"{target:.3f}s"
        line = f"{case:<42} {ours:>8.4f}s {floor:>8.4f}s {ours / floor:>6.1f}x {target_text:>8}  {verdict}"
        lines.append(line + (f"  ({note})" if note else ""))
    return "\n".join(lines)


def within(ours: float, floor: float, target: float | str | None) -> bool:
    """A target in seconds, or a ratio to the floor measured in the same run (``"2.5x"``)."""
    if target is None:
        return True
    if isinstance(target, str):
        return ours / floor <= float(target.rstrip("x"))
    return ours <= target


def profile(case: str, tmp: str) -> None:
    import cProfile
    import pstats

    steps = chain_steps() if case != "fanout" else fanout_steps()
    if case == "cached":
        the_stack = stack(os.path.join(tmp, "pcache"))
        flowyml_run(steps, the_stack)
    elif case == "cold":
        the_stack = None
    else:
        the_stack = stack()
    prof = cProfile.Profile()
    for i in range(5):
        s = the_stack or stack(os.path.join(tmp, f"pcold{i}"))
        prof.enable()
        flowyml_run(steps, s)
        prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> int:
    global REGISTRY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per case (best is reported)")
    parser.add_argument("--profile", choices=["chain", "fanout", "cold", "cached"], help="cProfile one case instead")
    args = parser.parse_args()
    # Only flowyml-local: other installed plugins (test plugins, observers) would
    # add their own per-step hook costs to what is measured here.
    from flowyml_core.plugins import iter_entry_points

    others = sorted({ep.name for ep in iter_entry_points()} - {"local"})
    if others:
        os.environ["FLOWYML_DISABLE_PLUGINS"] = ",".join(others)
    REGISTRY = get_registry()
    tmp = tempfile.mkdtemp(prefix="flowyml-bench-")
    try:
        if args.profile:
            profile(args.profile, tmp)
            return 0
        mine = issue15_rows(tmp, args.repeat)  # before the cases that write thousands of files: µs-scale timing
        rows = cases(tmp, args.repeat) + mine
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"flowyml local executor overhead (python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
        f"best of {args.repeat}; plugins: local{' only, disabled: ' + ', '.join(others) if others else ''})"
    )
    print(table(rows))
    over = [r for r in rows if r[1] == r[1] and not within(r[1], r[2], r[3])]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
