"""A ``concurrent.futures`` pool over a Dask client: how units get to the cluster and results back."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import threading
import time
import uuid
from typing import Any, Callable

from flowyml_core.grouping import StepGroup, unit_name, unit_steps
from flowyml_core.results import ExecutionResult
from flowyml_core.step import Step
from flowyml_core.walker import execute_unit

from flowyml_dask.errors import DaskTaskError, describe, explain
from flowyml_dask.held import HeldValue
from flowyml_dask.worker import INLINE_LIMIT, Summary, run_pickled, run_unit, summarize

logger = logging.getLogger("flowyml.dask")


def unit_context(context: Any, unit: Any) -> Any:
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


class _Watched:
    """A Dask task the pool waits for, and the ``concurrent.futures`` future it settles."""

    __slots__ = ("outer", "what", "unit_task", "held_by")

    def __init__(self, outer: cf.Future, what: str, unit_task: bool = False, held_by: Any = None) -> None:
        self.outer = outer
        self.what = what
        self.unit_task = unit_task  # its value may be a HeldOutcome: ask for a summary instead of gathering it
        self.held_by = held_by  # for a summary task: the unit's task, whose value stays on its worker


class DaskPool(cf.Executor):
    """A ``concurrent.futures`` pool over a Dask client, for :class:`PipelineWalker`.

    Each call is cloudpickled here (so by-value modules are honoured) and runs
    as one Dask task with a unique key. An execution unit's inputs that other
    units left on the workers (:class:`~flowyml_dask.held.HeldValue`) are
    passed as those units' futures, so Dask moves them worker to worker.

    Results are fetched in batches: a collector thread waits for tasks to
    finish (``distributed.as_completed``, which learns of completions from the
    scheduler without moving data) and gathers every finished task's result in
    one ``client.gather`` call. A unit whose task kept large outputs on its
    worker (its value's type, which the scheduler reports, says so) is asked
    for a :class:`~flowyml_dask.worker.Summary` instead, by a small task next
    to the data. A task that fails on the cluster's side (lost worker,
    unloadable step, cancelled) completes with a :class:`DaskTaskError` that
    says which unit and why.
    """

    #: Calls bigger than this (pickled) are scattered to the workers first, so
    #: large inputs travel client → worker instead of through the scheduler.
    scatter_threshold = 1_000_000
    #: Longest wait (s) for more completions before a gather, while the cluster is saturated.
    linger = 0.05
    #: Most results fetched by one gather.
    max_batch = 256

    def __init__(self, client: Any, inline_limit: int = INLINE_LIMIT) -> None:
        from distributed import as_completed

        self._client = client
        self.inline_limit = inline_limit
        self._prefix = uuid.uuid4().hex[:12]
        self._count = itertools.count()
        self._pending: dict[Any, _Watched] = {}
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

        what = describe(args)
        task: Callable[..., Any] = run_pickled
        extra: tuple[Any, ...] = ()
        if fn is execute_unit and len(args) == 6 and not kwargs:
            executor, unit, available, fingerprints, context, stores = args
            held = {asset: value.future for asset, value in available.items() if isinstance(value, HeldValue)}
            if held:
                available = {asset: value for asset, value in available.items() if asset not in held}
            args = (executor, unit, available, fingerprints, unit_context(context, unit), stores)
            task, extra = run_unit, (held, self.inline_limit)
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
            future = self._client.submit(task, data, *extra, key=self._key(args), pure=False)
        except Exception as exc:  # the client is closed or lost its scheduler
            outer.set_exception(explain(exc, what))
            return outer
        if not self._watch(future, _Watched(outer, what, unit_task=task is run_unit)):
            raise RuntimeError("cannot submit to a closed DaskPool")
        return outer

    def _watch(self, future: Any, watched: _Watched) -> bool:
        """Wait for ``future`` in the collector; False if the pool is closed."""
        with self._cond:
            if self._closed:
                return False
            self._pending[future.key] = watched
            self._untracked.append(future)
            schedule = len(self._untracked) == 1
            if self._collector is None:
                self._collector = threading.Thread(target=self._collect, name="flowyml-dask-collector", daemon=True)
                self._collector.start()
            self._cond.notify()
        if schedule:
            # One wake-up of the client's event loop per burst of submissions, not one per task.
            self._client.loop.add_callback(self._track)
        return True

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
                    self._resolve(future, error=explain(exc, "a task"))

    def _resolve(self, future: Any, value: Any = None, error: BaseException | None = None) -> None:
        with self._cond:
            watched = self._pending.pop(future.key, None)
        if watched is None:
            return
        if error is not None:
            watched.outer.set_exception(error)
        elif watched.held_by is not None:
            watched.outer.set_result(_with_references(value, watched.held_by))
        else:
            watched.outer.set_result(value)

    def _settle(self, batch: list[Any]) -> None:
        finished = []
        for future in batch:
            if future.status != "finished":
                continue
            if self._may_hold(future):
                self._summarize(future)
            else:
                finished.append(future)
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
                        self._resolve(future, error=explain(exc, self._what(future)))
        for future in batch:
            if future.status == "finished":
                continue
            if future.status == "cancelled":
                self._resolve(future, error=DaskTaskError(f"{self._what(future)} was cancelled by the Dask scheduler"))
            else:
                self._resolve(future, error=explain(future.exception(), self._what(future)))

    def _may_hold(self, future: Any) -> bool:
        """Whether a finished task's value may hold large outputs (then it is summarized, not gathered).

        A unit's task returns a plain ``list`` of results when every output
        is small; the scheduler tells the client each value's type without
        moving it. An unknown type is treated as held: asking costs a task,
        guessing wrong would move the data.
        """
        watched = self._pending.get(future.key)
        return watched is not None and watched.unit_task and future.type is not list

    def _summarize(self, future: Any) -> None:
        with self._cond:
            watched = self._pending.pop(future.key, None)
        if watched is None:
            return
        try:
            summary = self._client.submit(summarize, future, key=f"{future.key}-summary", pure=False)
        except Exception as exc:  # the client is closing
            watched.outer.set_exception(explain(exc, watched.what))
            return
        if not self._watch(summary, _Watched(watched.outer, watched.what, held_by=future)):
            watched.outer.set_exception(DaskTaskError(f"{watched.what} was abandoned: the Dask executor was closed"))

    def _what(self, future: Any) -> str:
        watched = self._pending.get(future.key)
        return watched.what if watched else "a task"

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            pending = list(self._pending.values())
            self._pending.clear()
        for watched in pending:
            if not watched.outer.done():
                watched.outer.set_exception(DaskTaskError(f"{watched.what} was abandoned: the Dask executor was closed"))


def _with_references(value: Any, held_by: Any) -> list[ExecutionResult]:
    """A summary's results, each held output replaced by a :class:`HeldValue` on the unit's task."""
    if not isinstance(value, Summary):
        return value  # the unit's outputs were small after all
    for result in value.results:
        info = value.held.get(result.step_name)
        if info is not None:
            result.output = HeldValue(held_by, result.step_name, None, info)
    return value.results
