"""What running a step or a pipeline produced."""

from __future__ import annotations

import enum
import threading
import time
from typing import Any, Callable

import attrs


class ExecutionStatus(enum.Enum):
    INITIALIZING = "initializing"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED

    @property
    def is_successful(self) -> bool:
        return self in (ExecutionStatus.COMPLETED, ExecutionStatus.CACHED)

    @property
    def is_failed(self) -> bool:
        return self in (ExecutionStatus.FAILED, ExecutionStatus.STOPPED, ExecutionStatus.CANCELLED)


_FINISHED = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.CACHED,
        ExecutionStatus.FAILED,
        ExecutionStatus.STOPPED,
        ExecutionStatus.CANCELLED,
    }
)


@attrs.define
class ExecutionResult:
    """The outcome of one step.

    ``logs`` holds what the step printed while it ran (captured per thread).
    ``output_fingerprint`` identifies the output's value so that downstream
    cache keys never re-hash it; ``artifact_uris`` maps each materialized asset
    to where it was written (``artifact_uri`` is the first of them, as in the seed).
    ``cache_key`` is the key the step was looked up (and stored) under, when a
    cache store was used: a remote unit's record points a cache hit at it.
    """

    step_name: str
    success: bool
    output: Any = None
    error: str | None = None
    duration_seconds: float = 0.0
    cached: bool = False
    skipped: bool = False
    artifact_uri: str | None = None
    retries: int = 0
    output_fingerprint: str | None = None
    artifact_uris: dict[str, str] = attrs.field(factory=dict)
    logs: str | None = None
    cache_key: str | None = None

    @property
    def status(self) -> ExecutionStatus:
        if not self.success:
            return ExecutionStatus.FAILED
        return ExecutionStatus.CACHED if self.cached else ExecutionStatus.COMPLETED


class SubmissionResult:
    """A remote run that was submitted; ``wait`` blocks until it finishes.

    ``wait_for_completion`` is called as ``fn(timeout)`` and must return the
    final :class:`ExecutionStatus` (or raise :class:`TimeoutError`). A callback
    that takes no argument (the seed's ``wait_pipeline()``) is called as
    ``fn()``, in a daemon thread when :meth:`wait` has a timeout, so that the
    timeout still holds (see docs/reference/model.md, "Waiting for a submitted run").
    ``collect``, when the executor can tell per-step results (every executor
    built on :class:`flowyml_core.remote.RemoteRun` can), is called as
    ``fn(status, hooks, run)`` once the run finished and returns its
    :class:`RunResult`; see :meth:`result`.
    """

    def __init__(
        self,
        job_id: str,
        wait_for_completion: Callable[[float | None], ExecutionStatus] | Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        collect: Callable[..., RunResult] | None = None,
    ) -> None:
        self.job_id = job_id
        self.metadata = dict(metadata or {})
        self._wait = wait_for_completion
        # Decided once, here, not on every wait: how the callback is called.
        self._wait_takes_timeout = wait_for_completion is None or _takes_an_argument(wait_for_completion)
        self._background: _BackgroundCall | None = None  # a zero-argument wait still running after a timeout
        self._collect = collect
        self._observers: tuple[Any, Any] = (None, None)
        self._listeners: list[Callable[[RunResult], None]] = []
        self._lock = threading.Lock()
        self._status: ExecutionStatus | None = None

    def wait(self, timeout: float | None = None) -> ExecutionStatus | None:
        """Block until the run ends or ``timeout`` seconds pass (TimeoutError).

        Several threads may wait at once: one polls, the others wait for it,
        and every caller still gives up after its own ``timeout``. Only a
        finished status is remembered, so a wait that timed out can be retried.
        """
        if self._wait is None:
            return self._status
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        if not self._lock.acquire(timeout=-1 if deadline is None else max(0.0, timeout or 0.0)):
            raise TimeoutError(f"run {self.job_id} did not finish within {timeout:g}s")
        try:
            if self._status is not None:
                return self._status
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._wait_takes_timeout:
                status = self._wait(remaining)
            else:
                status = self._wait_in_background(remaining, timeout)
            if not isinstance(status, ExecutionStatus) or status.is_finished:
                self._status = status
            return status
        finally:
            self._lock.release()

    def _wait_in_background(self, remaining: float | None, timeout: float | None) -> Any:
        """Call a zero-argument callback and give up on it after ``remaining`` seconds.

        Python cannot interrupt the call, so it runs in a daemon thread; a wait
        that timed out leaves it running, and the next wait joins that same
        call instead of starting another.
        """
        assert self._wait is not None
        if remaining is None and self._background is None:
            return self._wait()
        if self._background is None:
            self._background = _BackgroundCall(self._wait, name=f"flowyml-wait-{self.job_id}")
        call = self._background
        if not call.done.wait(remaining):
            raise TimeoutError(f"run {self.job_id} did not finish within {timeout:g}s")
        self._background = None
        return call.outcome()

    def observe(self, hooks: Any, run: Any) -> None:
        """Remember the run's observers: :meth:`result` tells them each step's end."""
        self._observers = (hooks, run)

    def on_result(self, listener: Callable[[RunResult], None]) -> None:
        """Call ``listener(result)`` with each finished result :meth:`result` builds (the run history's)."""
        self._listeners.append(listener)

    def result(self, status: ExecutionStatus | None, run_id: str = "") -> RunResult:
        """The finished run's :class:`RunResult`: per-step results when the executor can tell them.

        Observers given to :meth:`observe` see each step's end here, as in a local run.
        """
        if self._collect is not None and status is not None and status.is_finished:
            result = self._collect(status, *self._observers)
        else:
            result = RunResult(run_id=run_id or self.job_id, status=status or ExecutionStatus.RUNNING)
        result.submission = self
        if status is not None and status.is_finished:
            for listener in self._listeners:
                listener(result)
        return result

    def __repr__(self) -> str:
        return f"SubmissionResult(job_id={self.job_id!r}, metadata={self.metadata!r})"


def _takes_an_argument(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be given the timeout positionally (a callable Python cannot inspect is assumed to)."""
    import inspect

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    return any(p.kind in positional for p in parameters)


class _BackgroundCall:
    """``fn()`` running in a daemon thread; :meth:`outcome` is its value, or raises its exception."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self.done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, args=(fn,), name=name, daemon=True).start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to the waiting thread by outcome()
            self._error = exc
        finally:
            self.done.set()

    def outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


@attrs.define
class RunResult:
    """A finished pipeline run: per-step results and the produced assets."""

    run_id: str
    status: ExecutionStatus
    steps: dict[str, ExecutionResult] = attrs.field(factory=dict)
    outputs: dict[str, Any] = attrs.field(factory=dict)
    submission: SubmissionResult | None = None

    @property
    def success(self) -> bool:
        return self.status.is_successful and not any(not r.success for r in self.steps.values())

    @property
    def failed_steps(self) -> list[ExecutionResult]:
        return [r for r in self.steps.values() if not r.success]
