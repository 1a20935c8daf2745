"""The default ``Executor.run_pipeline``: walk execution units in dependency order.

Units whose inputs are ready may run at once (``max_workers`` > 1, or any
``concurrent.futures.Executor`` passed as ``pool``); results are recorded in the
caller's thread in topological order, so a concurrent run reports exactly what
a sequential one would.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import logging
import queue
import time
from typing import Any, Callable, Mapping

from flowyml_core.calling import keyword_caller
from flowyml_core.context import Context
from flowyml_core.daemon_pool import DaemonThreadPool
from flowyml_core.errors import OutputContractError
from flowyml_core.execution import Run, asset_fingerprints, bind_inputs, result_assets, split_outputs, step_params
from flowyml_core.grouping import ExecutionUnit, StepGroup, unit_name, unit_steps
from flowyml_core.in_place import InPlaceGuard, fingerprint_or_none
from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult

logger = logging.getLogger("flowyml.run")

_STEP_ARGS = frozenset(
    {
        "step", "inputs", "context_params", "cache_store", "artifact_store", "run_id",
        "project_name", "all_outputs", "router", "input_fingerprints",
    }
)


def execute_unit(
    executor: Any,
    unit: ExecutionUnit,
    available: dict[str, Any],
    fingerprints: dict[str, str],
    context: Context,
    stores: dict[str, Any],
) -> list[ExecutionResult]:
    """Run one unit with ``executor``; module-level so pools can pickle it."""
    if isinstance(unit, StepGroup):
        group_call = keyword_caller(executor.execute_step_group)
        return group_call(
            step_group=unit, inputs=available, context=context, input_fingerprints=fingerprints, **stores
        )
    step = unit
    kwargs, fps = bind_inputs(step, available, fingerprints)
    call = keyword_caller(executor.execute_step, _STEP_ARGS)
    return [
        call(
            step=step,
            inputs=kwargs,
            context_params=step_params(context, step),
            all_outputs=available if step.condition is not None else None,
            input_fingerprints=fps,
            **stores,
        )
    ]


def skip_reason(step_name: str, result: ExecutionResult, not_run: str | None = None) -> str:
    """Why the steps that consume the outputs of a skipped step are not run.

    Name the cause, not the nearest victim: a chain below a failed step
    reports that step all the way down (``not_run`` is the reason the skipped
    step itself was not run, when an input was blocked).
    """
    if not_run is not None:
        return not_run
    if result.error:
        return f"not run: upstream step {step_name!r} was not run ({result.error})"
    return f"skipped: upstream step {step_name!r} was skipped"


def failure_reason(step_name: str) -> str:
    """Why the steps that consume the outputs of a failed step are not run."""
    return f"not run: upstream step {step_name!r} failed"


class PipelineWalker:
    #: Whether ``self.assets`` holds the very objects the steps are given, so that a step that
    #: changes one in place can be noticed (:mod:`flowyml_core.in_place`). A walker that hands
    #: on references to values kept elsewhere (on Dask workers) sets it False.
    holds_values = True

    def __init__(
        self,
        executor: Any,
        pipeline: Any,
        run_id: str,
        *,
        context: Any | None = None,
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        router: Any | None = None,
        run: Run | None = None,
        hooks: Any | None = None,
        max_workers: int = 1,
        pool: concurrent.futures.Executor | None = None,
        unit_runner: Callable[..., list[ExecutionResult]] = execute_unit,
        units: list[ExecutionUnit] | None = None,
        assets: dict[str, Any] | None = None,
        fingerprints: dict[str, str] | None = None,
        blocked: dict[str, str] | None = None,
        initial: Mapping[str, Any] | None = None,
    ) -> None:
        """``units`` (default: all of the pipeline's) are walked; ``assets``,
        ``fingerprints`` and ``blocked`` are what earlier units, run elsewhere,
        left: their values, and why those that will never exist do not.
        ``initial`` are the run's initial assets, given to the steps whose
        parameters have their names."""
        self.executor = executor
        self.pipeline = pipeline
        self.run_id = run_id
        self.context = Context.coerce(context)
        self.stores = {
            "cache_store": cache_store,
            "artifact_store": artifact_store,
            "router": router,
            "run_id": run_id,
            "project_name": getattr(pipeline, "project_name", "default"),
        }
        self.run_info = run or Run(run_id=run_id, pipeline_name=pipeline.name)
        self.max_workers = max(1, int(max_workers))
        self.pool = pool
        self.unit_runner = unit_runner
        self._step_end = None
        if hooks is not None and hooks.on_step_end.get_hookimpls():
            self._step_end = hooks.on_step_end

        self.units = units
        self.assets: dict[str, Any] = dict(assets or {})
        self.fingerprints: dict[str, str] = dict(fingerprints or {})
        self.blocked: dict[str, str] = dict(blocked or {})  # asset -> why it will never exist
        self.initial: Mapping[str, Any] = initial or {}
        self.not_run: dict[str, str] = {}  # step -> why it was not run (blocked input)
        self.results: dict[str, ExecutionResult] = {}
        # For steps that change a shared input in place (flowyml_core/in_place.py): per unit, the shared
        # assets it was given, with their fingerprint and how many changes to each had been seen; the
        # count of changes seen per asset; and, with threads, the entries of the units that read the
        # current value, with when they ended (the clock counts dispatches and records).
        self._guard = InPlaceGuard([])  # made in run(), from the units walked
        self._given: dict[str, tuple[int, dict[str, tuple[str, int]]]] = {}
        self._changes: dict[str, int] = {}
        self._read_by: dict[str, list[tuple[int, str]]] = {}
        self._clock = 0

    # -- bookkeeping -------------------------------------------------------
    def _inputs_of(self, unit: ExecutionUnit) -> tuple[dict[str, Any], dict[str, str], str | None]:
        """The assets a unit needs from earlier units, or why it cannot run."""
        steps = unit_steps(unit)
        inside = {a for s in steps for a in s.outputs}
        available: dict[str, Any] = {}
        fps: dict[str, str] = {}
        for s in steps:
            for asset in s.inputs:
                if asset in inside:
                    continue
                if asset in self.blocked:
                    return {}, {}, self.blocked[asset]
                if asset in self.assets:
                    available[asset] = self.assets[asset]
                    if asset in self.fingerprints:
                        fps[asset] = self.fingerprints[asset]
        if self.initial:
            for s in steps:
                for name in s.param_names:
                    if name in self.initial and name not in available:
                        available[name] = self.initial[name]
        if any(s.condition is not None for s in steps):
            available = {**self.assets, **available}
        return available, fps, None

    def _skip_unit(self, unit: ExecutionUnit, reason: str) -> list[ExecutionResult]:
        for s in unit_steps(unit):
            self.not_run[s.name] = reason
        return [ExecutionResult(step_name=s.name, success=True, skipped=True, error=reason) for s in unit_steps(unit)]

    def _record(self, unit: ExecutionUnit, results: list[ExecutionResult]) -> None:
        steps = {s.name: s for s in unit_steps(unit)}
        given = self._given.pop(unit_name(unit), None) if self._given else None
        if given:
            self._check_shared_inputs(unit, steps, results, given)
        for result in results:
            step = steps[result.step_name]
            self.results[step.name] = self.run_info.steps[step.name] = result
            assets = self._assets_of(step, result)  # may turn a success that breaks its output contract into a failure
            if not result.success:
                for asset in step.outputs:
                    self.blocked[asset] = failure_reason(step.name)
            elif result.skipped:
                reason = skip_reason(step.name, result, self.not_run.get(step.name))
                for asset in step.outputs:
                    self.blocked.setdefault(asset, reason)
            else:
                self.assets.update(assets)
                if result.output_fingerprint is not None:
                    self.fingerprints.update(asset_fingerprints(step, result.output_fingerprint, assets))
                    self._guard.produced(step, result, assets)
            if self._step_end is not None:
                self._step_end(run=self.run_info, result=result)

    def _check_shared_inputs(
        self, unit: ExecutionUnit, steps: Mapping[str, Any], results: list[ExecutionResult],
        given: tuple[int, dict[str, tuple[str, int]]],
    ) -> None:
        """Give the readers after ``unit`` the values as produced (see :mod:`flowyml_core.in_place`).

        Run one at a time, a unit that changed a value it read is the one that
        changed it, after reading it, as it would on a rerun: its own cache
        entry stands. With threads, a unit that ran beside the change may have
        read either value: the entries of the readers that ended after the
        changing unit started, of those still running when the change was
        seen, and of the changing unit itself, are dropped.
        """
        started, assets = given
        ran = [r for r in results if not r.cached and not r.skipped]
        concurrent = self.pool is not None or self.max_workers > 1
        reader = f"group {unit.group_name}" if isinstance(unit, StepGroup) else f"step {unit.name}"
        changed, restored = self._guard.read(reader, assets, self.assets, bool(ran), concurrent, self._as_produced)
        self.fingerprints.update(changed)
        cache_store = self.stores["cache_store"]
        if not concurrent or cache_store is None:
            return
        self._clock += 1
        for asset in (*changed, *restored):
            self._changes[asset] = self._changes.get(asset, 0) + 1
            for ended, key in self._read_by.pop(asset, ()):
                if ended > started:
                    self._drop(cache_store, key)
        for asset, (_, seen_changes) in assets.items():
            keys = [r.cache_key for r in ran if r.cache_key is not None and asset in steps[r.step_name].inputs]
            if seen_changes != self._changes.get(asset, 0):
                for key in keys:
                    self._drop(cache_store, key)
            else:
                self._read_by.setdefault(asset, []).extend((self._clock, key) for key in keys)

    @staticmethod
    def _drop(cache_store: Any, key: str) -> None:
        if cache_store.invalidate(key=key):
            logger.info("cache entry %s dropped: its step read a shared input while another changed it", key[:12])

    def _as_produced(self, asset: str, seen: str) -> Any:
        """``asset`` read again from its producer's cache entry, if that still holds what was ``seen``."""
        cache_store = self.stores["cache_store"]
        producer = self.pipeline.dag.producers.get(asset)
        result = self.results.get(producer) if producer is not None else None
        if cache_store is None or result is None or result.cache_key is None:
            return None
        entry = cache_store.get(result.cache_key)
        if entry is None:
            return None
        try:
            value = split_outputs(self.pipeline.dag.steps[producer], entry.value).get(asset)
        except OutputContractError:
            return None
        return value if fingerprint_or_none(value) == seen else None

    def _assets_of(self, step: Any, result: ExecutionResult) -> dict[str, Any]:
        """The assets a finished step hands to the units after it."""
        return result_assets(step, result)

    def _execute(self, unit: ExecutionUnit) -> tuple[Callable[..., list[ExecutionResult]], tuple[Any, ...]] | list[ExecutionResult]:
        available, fps, blocked = self._inputs_of(unit)
        if blocked is not None:
            logger.info("%s: %s", unit_name(unit), blocked)
            return self._skip_unit(unit, blocked)
        shared = self._guard.shared(fps)
        if shared:
            for asset in shared:
                self._guard.watch(asset, available[asset])  # given by units walked elsewhere: not seen yet
            self._clock += 1
            self._given[unit_name(unit)] = (self._clock, {a: (fps[a], self._changes.get(a, 0)) for a in shared})
        return self.unit_runner, (self.executor, unit, available, fps, self.context, self.stores)

    # -- walking -------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.perf_counter()
        units = self.units if self.units is not None else self.pipeline.execution_units()
        if self.holds_values:
            self._guard = InPlaceGuard([_outside_inputs(u) if isinstance(u, StepGroup) else u.inputs for u in units])
        if self.pool is None and self.max_workers == 1:
            for unit in units:
                work = self._execute(unit)
                if isinstance(work, list):
                    self._record(unit, work)
                else:
                    fn, args = work
                    self._record(unit, fn(*args))
        else:
            self._run_concurrently(units)
        order = self.pipeline.dag.order
        steps = {name: self.results[name] for name in order if name in self.results}
        failed = any(not r.success for r in steps.values())
        if failed:
            status = ExecutionStatus.FAILED
        elif steps and all(r.cached for r in steps.values()):
            status = ExecutionStatus.CACHED
        else:
            status = ExecutionStatus.COMPLETED
        logger.debug("run %s walked %d units in %.6fs", self.run_id, len(units), time.perf_counter() - started)
        return RunResult(run_id=self.run_id, status=status, steps=steps, outputs=dict(self.assets))

    def _run_concurrently(self, units: list[ExecutionUnit]) -> None:
        producer: dict[str, int] = {}
        for i, unit in enumerate(units):
            for s in unit_steps(unit):
                for asset in s.outputs:
                    producer[asset] = i
        dependents: list[list[int]] = [[] for _ in units]
        missing = [0] * len(units)
        for i, unit in enumerate(units):
            needed = {producer[a] for s in unit_steps(unit) for a in s.inputs if a in producer} - {i}
            missing[i] = len(needed)
            for d in needed:
                dependents[d].append(i)
        ready = [i for i in range(len(units)) if missing[i] == 0]
        heapq.heapify(ready)

        def complete(i: int, results: list[ExecutionResult]) -> None:
            self._record(units[i], results)
            for child in dependents[i]:
                missing[child] -= 1
                if missing[child] == 0:
                    heapq.heappush(ready, child)

        own_pool = self.pool is None
        pool = self.pool or DaemonThreadPool(self.max_workers)
        running: dict[concurrent.futures.Future[list[ExecutionResult]], int] = {}
        # Completed futures arrive on a queue: concurrent.futures.wait() re-arms a
        # waiter on every pending future per call, O(n²) for n independent units.
        finished: queue.SimpleQueue[concurrent.futures.Future[list[ExecutionResult]]] = queue.SimpleQueue()
        try:
            while ready or running:
                while ready:
                    i = heapq.heappop(ready)
                    work = self._execute(units[i])
                    if isinstance(work, list):
                        complete(i, work)
                    else:
                        fn, args = work
                        future = pool.submit(fn, *args)
                        running[future] = i
                        future.add_done_callback(finished.put)
                if running:
                    done = [finished.get()]
                    while True:
                        try:
                            done.append(finished.get_nowait())
                        except queue.Empty:
                            break
                    for future in sorted(done, key=running.__getitem__):
                        i = running.pop(future)
                        complete(i, self._collect(units[i], future))
        except BaseException:
            if own_pool:  # Ctrl-C: start nothing more, and do not wait for the steps still running
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if own_pool:
            pool.shutdown(wait=True)

    def _collect(self, unit: ExecutionUnit, future: concurrent.futures.Future[list[ExecutionResult]]) -> list[ExecutionResult]:
        """The unit's results; a unit whose worker failed (or vanished) fails each of its steps."""
        try:
            return future.result()
        except Exception as exc:
            logger.error("unit %s failed in its worker: %r", unit_name(unit), exc)
            return [
                ExecutionResult(step_name=s.name, success=False, error=f"worker failed: {exc!r}")
                for s in unit_steps(unit)
            ]


def _outside_inputs(unit: ExecutionUnit) -> list[str]:
    """The assets ``unit`` reads from other units, each once."""
    steps = unit_steps(unit)
    inside = {a for s in steps for a in s.outputs}
    return list(dict.fromkeys(a for s in steps for a in s.inputs if a not in inside))
