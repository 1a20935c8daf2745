"""The local executor: steps run in this process (independent units optionally in threads),
or with ``isolation = "process"`` each execution unit's step functions in a fresh process.

The step semantics (condition → cache → retries → materialize → route → cache
write) live in :mod:`flowyml_core.execution` so that every executor gives users
the same behaviour; this class only chooses *where* steps run. See
``docs/reference/executor.md`` for the behaviour as built, and
:mod:`flowyml_local.isolation` for the processes.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Mapping

import attrs

from flowyml_core.components import Executor
from flowyml_core.execution import run_step, run_step_group
from flowyml_core.results import ExecutionResult, RunResult

logger = logging.getLogger("flowyml.local.executor")


def _at_least_one(_inst: Any, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


ISOLATIONS = ("none", "process")


def _isolation(_inst: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in ISOLATIONS:
        allowed = ", ".join(repr(v) for v in ISOLATIONS)
        raise ValueError(f"{attribute.name} must be one of {allowed}, got {value!r}")
    if value == "process" and os.name != "posix":
        raise ValueError(f"{attribute.name} = 'process' needs Linux or macOS (process groups); use 'none' here")


@attrs.define(frozen=True)
class LocalExecutorConfig:
    """Options of the ``local`` executor flavor.

    ``max_workers``: how many independent execution units may run at once.
    1 (the default) runs them one after another. Any value gives the same
    results as a sequential run. In process, more than 1 only helps when steps
    release the GIL (I/O, numpy, subprocesses).

    ``isolation``: ``"none"`` (the default) calls step functions in this
    process; ``"process"`` calls each execution unit's step functions in a
    fresh Python process, so that a crash, ``os._exit`` or a timeout ends that
    step and not the run, and a timeout really stops it (a thread cannot be
    killed). It costs a process start per unit that runs (cache hits start
    none) and a pickle of each step's arguments and value.
    """

    max_workers: int = attrs.field(default=1, validator=_at_least_one)
    isolation: str = attrs.field(default="none", validator=_isolation)


class LocalExecutor(Executor):
    """Runs steps with the seed's semantics, defects fixed, in this process or one per unit.

    Groups use the core default (``Executor.execute_step_group``): a group's
    steps run in order in one thread, inputs mapped by name then position.
    Whole pipelines use the core walker, which runs ready units concurrently
    when ``max_workers`` > 1 and records results in topological order. With
    ``isolation = "process"`` the same functions run, given a ``call`` that
    sends each attempt to the unit's process (:mod:`flowyml_local.isolation`).
    """

    def __init__(self, config: LocalExecutorConfig | None = None) -> None:
        super().__init__(config if config is not None else LocalExecutorConfig())
        self.max_workers = self.config.max_workers
        self.isolation = self.config.isolation
        self._processes: Any = None  # the live unit processes, with isolation = "process"
        if self.isolation == "process":
            from flowyml_local.isolation import UnitProcesses

            self._processes = UnitProcesses()

    @property
    def processes_started(self) -> int:
        """How many unit processes this executor has started (``isolation = "process"``; cache hits start none)."""
        return 0 if self._processes is None else self._processes.started

    def _unit_process(self, keep_outputs: bool = False) -> Any:
        """A unit's process (started at its first attempt), or None in process."""
        return None if self._processes is None else self._processes.unit(keep_outputs)

    def execute_step(
        self,
        step: Any,
        inputs: dict[str, Any],
        context_params: dict[str, Any],
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        run_id: str | None = None,
        project_name: str = "default",
        all_outputs: dict[str, Any] | None = None,
        router: Any | None = None,
        input_fingerprints: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run one step here and now; a failure is reported in the result, never raised."""
        kwargs = dict(
            cache_store=cache_store, artifact_store=artifact_store, run_id=run_id, project_name=project_name,
            all_outputs=all_outputs, router=router, input_fingerprints=input_fingerprints,
        )
        unit = self._unit_process()
        if unit is None:
            return run_step(step, inputs, context_params, **kwargs)
        with unit:
            return run_step(step, inputs, context_params, call=unit.call, **kwargs)

    def execute_step_group(
        self,
        step_group: Any,
        inputs: dict[str, Any],
        context: Any | None = None,
        context_params: dict[str, Any] | None = None,
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        run_id: str | None = None,
        project_name: str = "default",
        **extra: Any,
    ) -> list[ExecutionResult]:
        """Run a group's steps in order; with process isolation, all in one process."""
        unit = self._unit_process(keep_outputs=True)
        if unit is None:
            return super().execute_step_group(
                step_group, inputs, context=context, context_params=context_params, cache_store=cache_store,
                artifact_store=artifact_store, run_id=run_id, project_name=project_name, **extra,
            )
        with unit:
            return run_step_group(
                functools.partial(run_step, call=unit.call),
                step_group,
                inputs,
                context=context,
                context_params=context_params,
                fingerprints=extra.pop("input_fingerprints", None),
                cache_store=cache_store,
                artifact_store=artifact_store,
                run_id=run_id,
                project_name=project_name,
                **extra,
            )

    def run_pipeline(self, pipeline: Any, run_id: str, **kwargs: Any) -> RunResult:  # type: ignore[override]
        """The core walk; with process isolation, an interrupted run (Ctrl-C) kills its processes."""
        if self.isolation != "process":
            return super().run_pipeline(pipeline, run_id, **kwargs)  # type: ignore[return-value]
        import concurrent.futures

        from flowyml_core.walker import PipelineWalker

        walker_args = {k: kwargs.get(k) for k in ("context", "cache_store", "artifact_store", "router", "run", "hooks")}
        # Our own pool: on an interrupt the walker must not wait for units whose processes we kill.
        pool = (concurrent.futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="flowyml-unit")
                if self.max_workers > 1 else None)
        try:
            result = PipelineWalker(self, pipeline, run_id, max_workers=self.max_workers, pool=pool, **walker_args).run()
        except BaseException:
            self._processes.stop_all()
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pool is not None:
            pool.shutdown(wait=True)
        return result

    def __repr__(self) -> str:
        if self.isolation != "none":
            return f"LocalExecutor(max_workers={self.max_workers}, isolation={self.isolation!r})"
        return f"LocalExecutor(max_workers={self.max_workers})"
