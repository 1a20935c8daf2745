"""The ``dask`` executor: execution units run on a dask.distributed cluster.

Written only against flowyml's public API: the step semantics come from
:mod:`flowyml_core.execution` (``run_step``, ``run_step_group``), the walk of a
pipeline from :class:`flowyml_core.walker.PipelineWalker`, given a
``concurrent.futures`` pool that submits to the cluster. So a step behaves on a
worker exactly as it does locally (condition → cache → retries → materialize →
route → cache write); only *where* it runs changes. Units whose inputs are
ready run at once, on as many workers as the cluster has; results are recorded
in the caller's process in topological order.

Stores travel to the workers with the unit (pickled), so they must point at
storage the workers can reach: a local path works on a LocalCluster, a
``gs://`` URL works anywhere.

Work is serialized with cloudpickle by this executor, not left to Dask's
pickle-first strategy: modules the workers cannot import (a pipeline file run
with ``flowyml run path/to/file.py:pipeline``, its sibling helper modules) are
detected once per executor and pickled by value.

A worker that dies while running a unit (a segfault, the OOM killer,
``os._exit``) does not take the run down: the unit's steps fail with the
reason, the rest of the pipeline carries on as after any failure, and the
LocalCluster's nanny starts a fresh worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import itertools
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Iterable, Mapping

from flowyml_core.components import Executor
from flowyml_core.execution import run_step, run_step_group
from flowyml_core.grouping import StepGroup, unit_name, unit_steps
from flowyml_core.results import ExecutionResult, RunResult
from flowyml_core.step import Step
from flowyml_core.walker import PipelineWalker, execute_unit

from flowyml_dask.config import DaskExecutorConfig

logger = logging.getLogger("flowyml.dask")

_STDLIB_PREFIXES = (sys.prefix, sys.base_prefix, sys.exec_prefix)
#: Packages the workers must have installed anyway; never shipped as code.
_NEVER_BY_VALUE = frozenset({"flowyml_core", "flowyml_dask", "dask", "distributed", "cloudpickle"})


# -- what runs on the workers -----------------------------------------------------------
class WorkerExecutor(Executor):
    """The executor used *on* a worker: the core step semantics, in that process."""

    def execute_step(self, step: Any, inputs: dict[str, Any], context_params: dict[str, Any], **kwargs: Any) -> ExecutionResult:
        return run_step(step, inputs, context_params, **kwargs)


def run_pickled(blob: bytes) -> Any:
    """Task body on a worker: unpickle ``(fn, args, kwargs)`` (cloudpickle) and call it."""
    import cloudpickle

    fn, args, kwargs = cloudpickle.loads(blob)
    return fn(*args, **kwargs)


def unimportable(names: Iterable[str]) -> list[str]:
    """The module names this process cannot import (run on each worker)."""
    missing = []
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


# -- errors ------------------------------------------------------------------------------
class DaskTaskError(RuntimeError):
    """A unit could not complete on the cluster: its worker died, its code or data could not
    travel, or the scheduler cancelled it. (A step that raises is a failed result, not this.)"""


def _explain(exc: BaseException, what: str) -> DaskTaskError:
    kind = type(exc).__name__
    if kind == "KilledWorker":
        return DaskTaskError(
            f"the Dask worker running {what} died (the step crashed its process, ran out of memory "
            f"or called os._exit): {exc}"
        )
    if isinstance(exc, (ModuleNotFoundError, AttributeError)):
        return DaskTaskError(
            f"{what} could not be loaded on a Dask worker: {kind}: {exc}. Install the modules your steps import "
            "on the workers (same environment as here)"
        )
    if "pickl" in str(exc).lower() or "serializ" in str(exc).lower():
        return DaskTaskError(
            f"the result of {what} could not travel back from its Dask worker: {kind}: {exc}. Outputs of steps "
            "that run on Dask must be picklable"
        )
    if isinstance(exc, cf.CancelledError) or kind in ("CancelledError", "FutureCancelledError"):
        return DaskTaskError(f"{what} was cancelled by the Dask scheduler (was the cluster restarted or closed?): {exc}")
    return DaskTaskError(f"{what} failed on the Dask cluster: {kind}: {exc}")


def _failed_results(unit: Any, error: str) -> list[ExecutionResult]:
    return [ExecutionResult(step_name=s.name, success=False, error=error) for s in unit_steps(unit)]


def _describe(args: tuple[Any, ...]) -> str:
    for arg in args:
        if isinstance(arg, StepGroup):
            return f"execution group {arg.group_name!r} (steps {', '.join(arg.execution_order)})"
        if isinstance(arg, Step):
            return f"step {arg.name!r}"
    return "a task"


def _unit_context(context: Any, unit: Any) -> Any:
    """The run parameters a unit's steps receive: the only ones worth sending to a worker.

    A parameter no step of the unit takes (a client handle, a lock, a large
    table meant for another step) neither travels nor has to be picklable. A
    step with a condition or ``**kwargs`` may see every parameter, so then all go.
    """
    params = context.params
    needed: dict[str, Any] = {}
    for step in unit_steps(unit):
        if step.condition is not None or step.accepts_any_kwargs:
            return context
        needed.update({name: params[name] for name in step.param_names if name in params})
    return context if len(needed) == len(params) else type(context)(**needed)


# -- the pool the walker submits to -------------------------------------------------------
class DaskPool(cf.Executor):
    """A ``concurrent.futures`` pool over a Dask client, for :class:`PipelineWalker`.

    Each call is cloudpickled here (so by-value modules are honoured) and runs
    as one Dask task with a unique key. Results are fetched in batches: a
    collector thread waits for tasks to finish (``distributed.as_completed``,
    which learns of completions from the scheduler without moving data) and
    gathers every finished task's result in one ``client.gather`` call, instead
    of one round trip to a worker per task. A task that fails on the cluster's
    side (lost worker, unloadable step, cancelled) completes with a
    :class:`DaskTaskError` that says which unit and why.
    """

    #: Calls bigger than this (pickled) are scattered to the workers first, so
    #: large inputs travel client → worker instead of through the scheduler.
    scatter_threshold = 1_000_000
    #: Longest wait (s) for more completions before a gather, while the cluster is saturated.
    linger = 0.05
    #: Most results fetched by one gather.
    max_batch = 256

    def __init__(self, client: Any) -> None:
        from distributed import as_completed

        self._client = client
        self._prefix = uuid.uuid4().hex[:12]
        self._count = itertools.count()
        self._pending: dict[Any, tuple[cf.Future, str]] = {}
        self._untracked: list[Any] = []
        self._completed = as_completed(loop=client.loop)
        self._cond = threading.Condition()
        self._closed = False
        self._collector: threading.Thread | None = None
        try:  # "saturated": more tasks outstanding than twice the cluster's threads
            self._busy_threshold = max(8, 2 * sum(client.nthreads().values()))
        except Exception as exc:  # an unreachable scheduler surfaces on submit, with its message
            logger.debug("cannot count the cluster's threads: %r", exc)
            self._busy_threshold = 8

    def _key(self, args: tuple[Any, ...]) -> str:
        name = "task"
        for arg in args:
            if isinstance(arg, (Step, StepGroup)):
                name = unit_name(arg)
                break
        return f"flowyml-{name}-{self._prefix}-{next(self._count)}"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:  # type: ignore[override]
        import cloudpickle

        what = _describe(args)
        if fn is execute_unit and len(args) == 6 and not kwargs:
            executor, unit, available, fingerprints, context, stores = args
            args = (executor, unit, available, fingerprints, _unit_context(context, unit), stores)
        outer: cf.Future = cf.Future()
        outer.set_running_or_notify_cancel()
        try:
            blob = cloudpickle.dumps((fn, args, kwargs), protocol=5)
        except Exception as exc:  # an input or parameter that cannot leave this process
            outer.set_exception(DaskTaskError(
                f"{what} could not be sent to the Dask cluster: {type(exc).__name__}: {exc}. Inputs and "
                "parameters of steps that run on Dask must be picklable"
            ))
            return outer
        try:
            data: Any = blob
            if len(blob) > self.scatter_threshold:
                data = self._client.scatter(blob, hash=False)
            future = self._client.submit(run_pickled, data, key=self._key(args), pure=False)
        except Exception as exc:  # the client is closed or lost its scheduler
            outer.set_exception(_explain(exc, what))
            return outer
        with self._cond:
            if self._closed:
                raise RuntimeError("cannot submit to a closed DaskPool")
            self._pending[future.key] = (outer, what)
            self._untracked.append(future)
            schedule = len(self._untracked) == 1
            if self._collector is None:
                self._collector = threading.Thread(target=self._collect, name="flowyml-dask-collector", daemon=True)
                self._collector.start()
            self._cond.notify()
        if schedule:
            # One wake-up of the client's event loop per burst of submissions, not one per task.
            self._client.loop.add_callback(self._track)
        return outer

    def _track(self) -> None:
        """On the client's event loop: start watching the futures submitted since the last call."""
        with self._cond:
            futures, self._untracked = self._untracked, []
        if futures:
            self._completed.update(futures)

    def _collect(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
            try:
                batch = self._completed.next_batch(block=True)
            except StopIteration:  # submitted, but the event loop has not started watching them yet
                with self._cond:
                    self._cond.wait(0.001)
                continue
            # While more tasks are outstanding than the cluster runs at once, its workers stay busy
            # whatever we do: wait a little and fetch more results per gather (each gather is a
            # round trip to the workers, which costs the scheduler and workers CPU per call).
            deadline = time.monotonic() + self.linger
            while (len(batch) < self.max_batch and len(self._pending) - len(batch) >= self._busy_threshold
                   and time.monotonic() < deadline):
                time.sleep(self.linger / 10)
                batch.extend(self._completed.next_batch(block=False))
            try:
                self._settle(batch)
            except Exception as exc:  # never let the collector die: the walker would wait forever
                logger.exception("collecting Dask results failed: %r", exc)
                for future in batch:
                    self._resolve(future, error=_explain(exc, "a task"))

    def _resolve(self, future: Any, value: Any = None, error: BaseException | None = None) -> None:
        with self._cond:
            entry = self._pending.pop(future.key, None)
        if entry is None:
            return
        outer, _ = entry
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(value)

    def _settle(self, batch: list[Any]) -> None:
        finished = [f for f in batch if f.status == "finished"]
        if finished:
            try:
                values = self._client.gather(finished)
            except Exception:  # one of them cannot be fetched: settle each on its own
                values = None
            if values is not None:
                for future, value in zip(finished, values):
                    self._resolve(future, value)
            else:
                for future in finished:
                    try:
                        self._resolve(future, future.result())
                    except Exception as exc:
                        self._resolve(future, error=_explain(exc, self._what(future)))
        for future in batch:
            if future.status == "finished":
                continue
            if future.status == "cancelled":
                self._resolve(future, error=DaskTaskError(f"{self._what(future)} was cancelled by the Dask scheduler"))
            else:
                self._resolve(future, error=_explain(future.exception(), self._what(future)))

    def _what(self, future: Any) -> str:
        entry = self._pending.get(future.key)
        return entry[1] if entry else "a task"

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            pending = list(self._pending.values())
            self._pending.clear()
        for outer, what in pending:
            if not outer.done():
                outer.set_exception(DaskTaskError(f"{what} was abandoned: the Dask executor was closed"))


def _quiet_dask_logging() -> None:
    """Keep Dask's start-up and shutdown chatter (INFO) out of an application that logs at WARNING.

    Dask sets its ``distributed`` logger to INFO; when the application has
    configured the root logger itself (as ``flowyml run`` does), those records
    reach its handler. Under a verbose root (``flowyml --debug``) they stay.
    """
    dask_logger = logging.getLogger("distributed")
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    if dask_logger.level == logging.NOTSET or dask_logger.level < logging.WARNING:
        dask_logger.setLevel(logging.WARNING)


def _shutdown(client: Any, cluster: Any) -> None:
    """Close what the executor opened; runs on close(), garbage collection or interpreter exit."""
    try:
        client.close()
    except Exception as exc:  # closing is best effort: report, never raise at exit
        logger.warning("closing the Dask client failed: %r", exc)
    if cluster is not None:
        try:
            cluster.close()
        except Exception as exc:
            logger.warning("closing the LocalCluster failed: %r", exc)


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
                self._start()
            return self._client

    def _start(self) -> None:
        from distributed import Client

        config = self.config
        cluster = None
        _quiet_dask_logging()
        if config.address:
            from flowyml_core.errors import FlowymlError

            logger.info("connecting to the Dask scheduler at %s", config.address)
            try:
                client = Client(config.address, timeout=config.connect_timeout, set_as_default=False)
            except OSError as exc:
                raise FlowymlError(
                    f"dask executor: no Dask scheduler answers at {config.address} within "
                    f"{config.connect_timeout:g}s ({exc}); start it, or remove `address` to use a LocalCluster"
                ) from exc
        else:
            from distributed import LocalCluster

            scheduler_kwargs: dict[str, Any] = {"allowed_failures": config.allowed_failures}
            if config.dashboard_address is None:
                # No dashboard; the scheduler's small HTTP server (health, metrics) on a free loopback port
                # instead of 8787, which another cluster may hold.
                scheduler_kwargs.update(dashboard=False, dashboard_address="127.0.0.1:0")
            cluster = LocalCluster(
                n_workers=config.n_workers,
                threads_per_worker=config.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=config.dashboard_address,
                silence_logs=logging.ERROR,
                scheduler_kwargs=scheduler_kwargs,
            )
            logger.info("started a Dask LocalCluster at %s", cluster.scheduler_address)
            client = Client(cluster, set_as_default=False)
        try:  # warnings of flowyml code on the workers (a cache write that failed…) reach this process's log
            client.forward_logging("flowyml", level=logging.WARNING)
        except Exception as exc:  # an older distributed, or a scheduler that refuses plugins
            logger.debug("cannot forward worker logs: %r", exc)
        self._client, self._cluster = client, cluster
        self._pool = DaskPool(client)
        self._finalizer = weakref.finalize(self, _shutdown, client, cluster)

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster if this executor started it."""
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
        from flowyml_core.errors import FlowymlError

        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise FlowymlError(
                f"dask executor: dask.distributed is not installed ({exc}); pip install flowyml-dask "
                "--find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
            ) from exc
        if self.config.address:
            from distributed import Client

            try:
                Client(self.config.address, timeout=self.config.connect_timeout, set_as_default=False).close()
            except OSError as exc:
                raise FlowymlError(
                    f"dask executor: no Dask scheduler answers at {self.config.address} "
                    f"within {self.config.connect_timeout:g}s ({exc}); start it or fix `address`"
                ) from exc

    # -- shipping code -----------------------------------------------------------------------
    def _ship_user_modules(self, steps: Iterable[Any]) -> None:
        """Pickle by value the modules of these steps (and their siblings) that workers cannot import."""
        import cloudpickle

        candidates: set[str] = set()
        directories: set[str] = set()
        for step in steps:
            for func in (getattr(step, "func", None), getattr(step, "condition", None)):
                module = getattr(func, "__module__", None)
                if not module or module == "__main__" or module in self._checked_modules:
                    continue
                if module.partition(".")[0] in _NEVER_BY_VALUE:
                    continue
                top = module.partition(".")[0]
                candidates.update({module, top})
                path = getattr(sys.modules.get(module), "__file__", None)
                if path and not os.path.abspath(path).startswith(_STDLIB_PREFIXES):
                    directories.add(os.path.dirname(os.path.abspath(path)))
        if directories:  # sibling modules the steps may import (helpers next to the pipeline file)
            for name, mod in list(sys.modules.items()):
                path = getattr(mod, "__file__", None)
                if path and "." not in name and os.path.dirname(os.path.abspath(path)) in directories:
                    candidates.add(name)
        candidates -= self._checked_modules
        candidates = {c for c in candidates if c.partition(".")[0] not in _NEVER_BY_VALUE}
        if not candidates:
            return
        client = self.client  # connection problems surface here, as themselves
        try:  # a worker that is restarting or leaving does not answer; the others do
            answers = client.run(unimportable, sorted(candidates), on_error="ignore")
        except Exception as exc:  # the scheduler itself failed the call: ask again on the next run
            logger.warning("could not ask the Dask workers which modules they can import: %r", exc)
            return
        # No worker to ask (all restarting, or an adaptive cluster at zero): sending code by value
        # always works, so do that rather than guess.
        missing = set().union(*map(set, answers.values())) if answers else set(candidates)
        for name in sorted(missing):
            module = sys.modules.get(name)
            if module is None:
                continue
            if "." in name and name.partition(".")[0] in missing:
                continue  # covered by its top-level package
            logger.info("workers cannot import %s: sending its code by value", name)
            cloudpickle.register_pickle_by_value(module)
        self._checked_modules.update(candidates)

    def _prepare(self, steps: list[Any], caching: bool) -> None:
        self._ship_user_modules(steps)
        if caching:
            for step in steps:  # hashed once here, not on every worker for every task
                step.get_code_hash()

    def _run_remote(self, unit: Any, fn: Callable[..., Any], *args: Any) -> list[ExecutionResult]:
        pool = self._ensure_pool()
        future = pool.submit(fn, *args)
        try:
            return future.result()
        except DaskTaskError as exc:
            logger.error("%s", exc)
            return _failed_results(unit, str(exc))

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
        """Run one step on a worker and wait for it; a failure (even of the worker) is a result."""
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
        **kwargs: Any,
    ) -> RunResult:
        """Walk the pipeline, submitting every unit whose inputs are ready to the cluster."""
        pipeline.build()
        self._prepare(list(pipeline.steps), cache_store is not None)
        return PipelineWalker(
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
        ).run()


def _call_run_step(step: Any, inputs: dict[str, Any], context_params: dict[str, Any], kwargs: dict[str, Any]) -> list[ExecutionResult]:
    return [run_step(step, inputs, context_params, **kwargs)]


def _call_group(step_group: Any, inputs: dict[str, Any], kwargs: dict[str, Any]) -> list[ExecutionResult]:
    fingerprints = kwargs.pop("input_fingerprints", None)
    return run_step_group(WorkerExecutor().execute_step, step_group, inputs, fingerprints=fingerprints, **kwargs)

