"""Sample steps and pipelines of the conformance kit.

Every step function here is a module-level function wrapped with
:class:`~flowyml_core.step.Step` (not ``@step``, which would shadow the
function's name): a step then pickles by reference with plain :mod:`pickle`,
so executors that send steps to other processes need nothing special to run
the kit. Steps learn what to record through the ``calls`` context parameter,
a :class:`CallLog` on disk, so calls made in other processes are counted too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from flowyml_core.errors import StopExecution


class CallLog:
    """Calls recorded as JSON lines in a file: visible across threads and processes.

    Each record is one ``write`` of one short line to a file opened in append
    mode, which POSIX keeps whole even when several processes append at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"CallLog({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallLog) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def record(self, name: str, **info: Any) -> None:
        line = json.dumps({"name": name, "pid": os.getpid(), "thread": threading.get_ident(), "time": time.time(), **info})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r for r in rows if name is None or r["name"] == name]

    def count(self, name: str | None = None) -> int:
        return len(self.records(name))

    def names(self) -> list[str]:
        """Names in the order the calls were recorded."""
        return [r["name"] for r in self.records()]

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# -- step functions ------------------------------------------------------------------
def source(calls: CallLog, seed: int = 1) -> int:
    calls.record("source")
    return seed


def double(x: int, calls: CallLog) -> int:
    calls.record("double")
    return x * 2


def triple(x: int, calls: CallLog) -> int:
    calls.record("triple")
    return x * 3


def add(a: int, b: int, calls: CallLog) -> int:
    calls.record("add")
    return a + b


def returns_none(calls: CallLog) -> None:
    calls.record("returns_none")
    return None


def flaky(calls: CallLog, failures: int = 2) -> str:
    """Fails its first ``failures`` calls, then succeeds."""
    calls.record("flaky")
    attempt = calls.count("flaky")
    if attempt <= failures:
        raise RuntimeError(f"flaky failure {attempt} of {failures}")
    return "recovered"


def boom(calls: CallLog, x: Any = None) -> int:
    calls.record("boom")
    raise ValueError("boom: intentional failure from the flowyml kit")


def stops(calls: CallLog) -> int:
    calls.record("stops")
    raise StopExecution("stopped on purpose by the flowyml kit")


def pair(calls: CallLog) -> tuple[int, int]:
    calls.record("pair")
    return (3, 4)


def as_dict(calls: CallLog) -> dict[str, int]:
    calls.record("as_dict")
    return {"right": 20, "left": 10}


def metrics(calls: CallLog, quality: float = 0.9) -> dict[str, float]:
    calls.record("metrics")
    return {"quality_score": quality}


def deploy(m: dict[str, float], calls: CallLog) -> str:
    calls.record("deploy")
    return "deployed"


def echo_params(calls: CallLog, alpha: int, beta: str = "unset") -> dict[str, Any]:
    calls.record("echo_params")
    return {"alpha": alpha, "beta": beta}


def printer(calls: CallLog) -> int:
    calls.record("printer")
    print("hello from a flowyml kit step")
    return 1


def sleeper(calls: CallLog, seconds: float = 0.05) -> int:
    calls.record("sleeper", phase="start")
    time.sleep(seconds)
    calls.record("sleeper", phase="end")
    return os.getpid()


def payload(calls: CallLog, size: int = 1000) -> bytes:
    calls.record("payload")
    return bytes(range(256)) * (size // 256 + 1)


def emit(value: Any) -> Any:
    """Returns the ``value`` context parameter: a step whose output the test chooses."""
    return value


# -- conditions -----------------------------------------------------------------------
def never() -> bool:
    return False


def always() -> bool:
    return True


def when_flag(flag: bool = False) -> bool:
    return bool(flag)


def quality_ok(quality_score: float) -> bool:
    """Reads a key of a dict output: the seed flattens dict outputs for conditions."""
    return quality_score > 0.5


def broken_condition() -> bool:
    raise RuntimeError("condition exploded on purpose")


# -- steps and pipelines ---------------------------------------------------------------
def make_step(func: Callable[..., Any], name: str | None = None, **options: Any) -> Any:
    """A :class:`~flowyml_core.step.Step` over ``func`` (which stays importable by name)."""
    from flowyml_core.step import Step

    return Step(func=func, name=name or func.__name__, **options)


def make_pipeline(name: str, steps: Iterable[Any], **options: Any) -> Any:
    from flowyml_core.pipeline import Pipeline

    return Pipeline(name, steps=list(steps), **options).build()


class SamplePipelines:
    """Small pipelines that exercise the executor contract; steps record into ``calls``.

    Run them with ``context={"calls": pipelines.calls}`` (see :meth:`context`).
    """

    def __init__(self, calls: CallLog) -> None:
        self.calls = calls

    def context(self, **params: Any) -> dict[str, Any]:
        return {"calls": self.calls, **params}

    def linear(self) -> Any:
        """source → double → triple."""
        return make_pipeline(
            "kit-linear",
            [
                make_step(source, outputs=["x"]),
                make_step(double, inputs=["x"], outputs=["doubled"]),
                make_step(triple, inputs=["doubled"], outputs=["tripled"]),
            ],
        )

    def diamond(self) -> Any:
        """source → (double, triple) → add; with seed=1 the result is 5."""
        return make_pipeline(
            "kit-diamond",
            [
                make_step(source, outputs=["x"]),
                make_step(double, inputs=["x"], outputs=["a"]),
                make_step(triple, inputs=["x"], outputs=["b"]),
                make_step(add, inputs=["a", "b"], outputs=["total"]),
            ],
        )

    def with_failure(self) -> Any:
        """source → boom → double, and an independent pair: boom fails, double is skipped, pair runs."""
        return make_pipeline(
            "kit-failure",
            [
                make_step(source, outputs=["x"]),
                make_step(boom, inputs=["x"], outputs=["y"]),
                make_step(double, inputs=["y"], outputs=["z"]),
                make_step(pair, outputs=["left", "right"]),
            ],
        )

    def grouped(self) -> Any:
        """A group (pair → add(left, right) → double) fed by nothing, followed by triple outside it."""
        return make_pipeline(
            "kit-grouped",
            [
                make_step(pair, outputs=["left", "right"], execution_group="g"),
                make_step(add, inputs=["left", "right"], outputs=["total"], execution_group="g"),
                make_step(double, inputs=["total"], outputs=["doubled"], execution_group="g"),
                make_step(triple, inputs=["doubled"], outputs=["tripled"]),
            ],
        )

    def conditional(self) -> Any:
        """metrics → deploy (only when quality_score > 0.5), and a step that never runs."""
        return make_pipeline(
            "kit-conditional",
            [
                make_step(metrics, outputs=["m"]),
                make_step(deploy, inputs=["m"], outputs=["deployment"], condition=quality_ok),
                make_step(returns_none, condition=never),
            ],
        )

    def independent(self, count: int) -> Any:
        """``count`` independent steps that each sleep ``seconds`` (a context parameter, default 0.05)."""
        return make_pipeline(
            f"kit-independent-{count}",
            [make_step(sleeper, name=f"sleep_{i}", outputs=[f"pid_{i}"], cache=False) for i in range(count)],
        )
