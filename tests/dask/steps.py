"""Step functions for the Dask tests: closures made here travel to workers by value (cloudpickle)."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from flowyml_core.testing.samples import CallLog


def timed(label: str, seconds: float = 0.0, value: Any = None) -> Callable[..., Any]:
    """A step function (a closure) that records start/end with its label and pid, sleeps, returns ``value``."""

    def run(calls: CallLog, **inputs: Any) -> Any:
        calls.record(label, phase="start")
        time.sleep(seconds)
        calls.record(label, phase="end")
        return value if value is not None else sum(v for v in inputs.values() if isinstance(v, int)) + 1

    run.__name__ = run.__qualname__ = label
    return run


def die(calls: CallLog) -> int:
    """Kills the worker process that runs it, as a segfault or the OOM killer would."""
    calls.record("die")
    os._exit(3)


def whoami(calls: CallLog) -> int:
    calls.record("whoami")
    return os.getpid()


class Tracked:
    """A value that records, in a call log, every process it is unpickled in: where its bytes went."""

    def __init__(self, calls: CallLog, payload: bytes) -> None:
        self.calls, self.payload = calls, payload

    def __reduce__(self) -> tuple[Any, ...]:
        return _arrived, (self.calls, self.payload)


def _arrived(calls: CallLog, payload: bytes) -> Tracked:
    calls.record("unpickled")
    return Tracked(calls, payload)


def make_tracked(calls: CallLog) -> Tracked:
    calls.record("make_tracked")
    return Tracked(calls, b"x" * 1_000_000)


def measure(blob: Tracked) -> int:
    return len(blob.payload)
