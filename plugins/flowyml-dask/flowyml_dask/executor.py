"""The ``dask`` executor: execution units run on a dask.distributed cluster.

Written only against flowyml's public API: the step semantics come from
:mod:`flowyml_core.execution` (``run_step``, ``run_step_group``), the walk of a
pipeline from :class:`flowyml_core.walker.PipelineWalker`, given a
``concurrent.futures`` pool that submits to the cluster. So a step behaves on a
worker exactly as it does locally (condition → cache → retries → materialize →
route → cache write); only *where* it runs changes. Units whose inputs are
ready run at once, on as many workers as the cluster has; results are recorded
in the caller's process in topological order.

Large outputs stay on the worker that produced them (:mod:`flowyml_dask.worker`,
:mod:`flowyml_dask.held`): the consuming units get them from Dask, worker to
worker, and this process fetches one only when it is read. That worker also
writes the output to the artifact store and the cache, so stores travel to
the workers with the unit (pickled) and must point at storage the workers can
reach: a local path works on a LocalCluster, a ``gs://`` URL works anywhere.

A worker that dies while running a unit (a segfault, the OOM killer,
``os._exit``) does not take the run down: the unit's steps fail with the
reason, the rest of the pipeline carries on as after any failure, and the
LocalCluster's nanny starts a fresh worker.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, Iterable, Mapping

from flowyml_core.components import Executor
from flowyml_core.execution import run_step, run_step_group
from flowyml_core.grouping import unit_steps
from flowyml_core.results import ExecutionResult, RunResult
from flowyml_core.walker import PipelineWalker, execute_unit

from flowyml_dask.cluster import check_reachable, connect, shutdown
from flowyml_dask.config import DaskExecutorConfig
from flowyml_dask.errors import DaskTaskError, failed_results
from flowyml_dask.held import HeldOutputs, HeldValue
from flowyml_dask.pool import DaskPool
from flowyml_dask.shipping import ship_user_modules
from flowyml_dask.worker import WorkerExecutor

logger = logging.getLogger("flowyml.dask")


class DaskWalker(PipelineWalker):
    """The core walker, passing references to outputs left on the workers instead of values.

    ``_assets_of`` is the walker's hook for what a finished step hands on (the
    core's remote walker overrides it too).
    """

    holds_values = False  # references to values on the workers: a change in place there is not seen here

    def _assets_of(self, step: Any, result: ExecutionResult) -> dict[str, Any]:
        if isinstance(result.output, HeldValue):
            return result.output.assets() if result.success and not result.skipped else {}
        return super()._assets_of(step, result)


class DaskExecutor(Executor):
    """Runs execution units on a Dask cluster; independent units run in parallel.

    The cluster is reached (or a LocalCluster started) on first use and kept
    for the executor's life: call :meth:`close` (or use ``with``) to release
    it; otherwise it is closed when the executor is garbage collected or the
    program exits.
    """

    def __init__(self, config: DaskExecutorConfig | None = None) -> None:
        super().__init__(config if config is not None else DaskExecutorConfig())
        self._lock = threading.Lock()
        self._client: Any = None
        self._cluster: Any = None
        self._finalizer: weakref.finalize | None = None
        self._pool: DaskPool | None = None
        self._checked_modules: set[str] = set()

    def __repr__(self) -> str:
        where = self.config.address or "LocalCluster"
        return f"DaskExecutor({where})"

    # -- cluster lifecycle -----------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``distributed.Client``, connecting (or starting a LocalCluster) on first use."""
        with self._lock:
            if self._client is None:
                client, cluster = connect(self.config)
                self._client, self._cluster = client, cluster
                self._pool = DaskPool(client)
                self._finalizer = weakref.finalize(self, shutdown, client, cluster)
            return self._client

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster if this executor started it.

        Outputs of earlier runs still on the workers are gone after this: read
        them first.
        """
        with self._lock:
            finalizer, self._finalizer = self._finalizer, None
            pool, self._pool = self._pool, None
            self._client = self._cluster = None
            self._checked_modules.clear()
        if pool is not None:
            pool.shutdown()
        if finalizer is not None:
            finalizer()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def validate(self) -> None:
        """Check that dask.distributed is installed and, with ``address``, that the scheduler answers."""
        check_reachable(self.config)

    # -- sending work ------------------------------------------------------------------------
    def _prepare(self, steps: Iterable[Any], caching: bool) -> None:
        steps = list(steps)
        ship_user_modules(lambda: self.client, steps, self._checked_modules)
        if caching:
            for step in steps:  # hashed once here, not on every worker for every task
                step.get_code_hash()

    def _run_remote(self, unit: Any, fn: Callable[..., Any], *args: Any) -> list[ExecutionResult]:
        future = self._ensure_pool().submit(fn, *args)
        try:
            return future.result()
        except DaskTaskError as exc:
            logger.error("%s", exc)
            return failed_results(unit, str(exc))

    def _ensure_pool(self) -> DaskPool:
        self.client  # noqa: B018 - connects on first use
        assert self._pool is not None
        return self._pool

    # -- the executor contract -----------------------------------------------------------------
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
        """Run one step on a worker and wait for it; a failure (even of the worker) is a result.

        The output comes back with the result: whoever calls this asked for it.
        """
        self._prepare([step], cache_store is not None)
        kwargs = dict(
            cache_store=cache_store, artifact_store=artifact_store, run_id=run_id, project_name=project_name,
            all_outputs=all_outputs, router=router, input_fingerprints=input_fingerprints,
        )
        return self._run_remote(step, _call_run_step, step, inputs, context_params, kwargs)[0]

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
        """Run a whole group in one task on one worker: its steps share that process."""
        self._prepare(unit_steps(step_group), cache_store is not None)
        kwargs = dict(
            context=context, context_params=context_params, cache_store=cache_store, artifact_store=artifact_store,
            run_id=run_id, project_name=project_name, **extra,
        )
        return self._run_remote(step_group, _call_group, step_group, inputs, kwargs)

    def run_pipeline(
        self,
        pipeline: Any,
        run_id: str,
        *,
        context: Any | None = None,
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        router: Any | None = None,
        run: Any | None = None,
        hooks: Any | None = None,
        inputs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Walk the pipeline, submitting every unit whose inputs are ready to the cluster.

        ``inputs`` are initial assets, given to the steps whose parameters have their names.

        Large outputs stay on the workers: ``RunResult.outputs`` is then a
        :class:`~flowyml_dask.held.HeldOutputs` that fetches a value when it is
        read, and such a step's ``ExecutionResult.output`` is a
        :class:`~flowyml_dask.held.HeldValue`.
        """
        pipeline.build()
        self._prepare(pipeline.steps, cache_store is not None)
        result = DaskWalker(
            WorkerExecutor(),
            pipeline,
            run_id,
            context=context,
            cache_store=cache_store,
            artifact_store=artifact_store,
            router=router,
            run=run,
            hooks=hooks,
            pool=self._ensure_pool(),
            unit_runner=execute_unit,
            initial=inputs,
        ).run()
        if any(isinstance(value, HeldValue) for value in result.outputs.values()):
            result.outputs = HeldOutputs(result.outputs)
        return result


def _call_run_step(step: Any, inputs: dict[str, Any], context_params: dict[str, Any], kwargs: dict[str, Any]) -> list[ExecutionResult]:
    return [run_step(step, inputs, context_params, **kwargs)]


def _call_group(step_group: Any, inputs: dict[str, Any], kwargs: dict[str, Any]) -> list[ExecutionResult]:
    fingerprints = kwargs.pop("input_fingerprints", None)
    return run_step_group(WorkerExecutor().execute_step, step_group, inputs, fingerprints=fingerprints, **kwargs)
