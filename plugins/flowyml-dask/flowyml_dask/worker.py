"""What runs on the Dask workers: a unit's steps, and what its outputs become there.

A unit's task returns its results to the client only when every output is
small plain data (numbers, strings, short collections, small numpy arrays:
see :func:`inline_size`). Otherwise the task's value is a :class:`HeldOutcome`
that stays in the worker's memory: the client learns of it from the task's
type (which the scheduler reports without moving the value), asks
:func:`summarize` for the results without the large outputs, and passes the
task's future to the units that consume them. Dask then moves the bytes
worker to worker (or not at all, when the consumer runs where they are).
"""

from __future__ import annotations

import importlib.util
import io
import logging
from typing import Any, Iterable

from flowyml_core.components import Executor
from flowyml_core.execution import result_assets, run_step
from flowyml_core.grouping import unit_steps
from flowyml_core.results import ExecutionResult

logger = logging.getLogger("flowyml.dask")

#: Outputs up to this many bytes of plain data come back with the results; larger ones stay on the worker.
INLINE_LIMIT = 64 * 1024
#: Containers with more items than this are not inspected item by item: they stay on the worker.
_MAX_ITEMS = 1000
_SCALARS = (type(None), bool, int, float, complex)


class WorkerExecutor(Executor):
    """The executor used *on* a worker: the core step semantics, in that process."""

    def execute_step(self, step: Any, inputs: dict[str, Any], context_params: dict[str, Any], **kwargs: Any) -> ExecutionResult:
        return run_step(step, inputs, context_params, **kwargs)


class HeldOutcome:
    """A unit's results, outputs included, kept in the memory of the worker that ran it.

    ``assets`` maps each asset of the held outputs to its value (the same
    objects, split as the walker splits them), for the units that consume
    them; ``results`` keep each step's whole output, for a user who reads it.
    """

    __slots__ = ("results", "assets", "held")

    def __init__(self, results: list[ExecutionResult], assets: dict[str, Any], held: dict[str, HeldInfo]) -> None:
        self.results = results
        self.assets = assets
        self.held = held


class HeldInfo:
    """What the client learns about one held output: its assets, and what it is (for ``repr``)."""

    __slots__ = ("assets", "type_name", "nbytes")

    def __init__(self, assets: tuple[str, ...], type_name: str, nbytes: int | None) -> None:
        self.assets, self.type_name, self.nbytes = assets, type_name, nbytes


class Summary:
    """A held unit's results for the client: held outputs replaced by ``None``, described in ``held``."""

    __slots__ = ("results", "held")

    def __init__(self, results: list[ExecutionResult], held: dict[str, HeldInfo]) -> None:
        self.results, self.held = results, held


# -- task bodies ------------------------------------------------------------------------------
def run_pickled(blob: bytes) -> Any:
    """Task body on a worker: unpickle ``(fn, args, kwargs)`` (cloudpickle) and call it."""
    import cloudpickle

    fn, args, kwargs = cloudpickle.loads(blob)
    return fn(*args, **kwargs)


def run_unit(blob: bytes, held_inputs: dict[str, HeldOutcome], inline_limit: int = INLINE_LIMIT) -> Any:
    """Task body of an execution unit: run it, then return its results or keep them here.

    ``blob`` is the cloudpickled ``(execute_unit, args, kwargs)``; the inputs
    other units left on workers arrive in ``held_inputs`` (Dask replaced each
    future by that unit's :class:`HeldOutcome`, fetched from whichever worker
    holds it) and join the unit's available assets here.
    """
    import cloudpickle

    fn, args, kwargs = cloudpickle.loads(blob)
    if held_inputs:
        executor, unit, available, *rest = args
        available = {**available, **{asset: outcome.assets[asset] for asset, outcome in held_inputs.items()}}
        args = (executor, unit, available, *rest)
    results: list[ExecutionResult] = fn(*args, **kwargs)
    return keep_large_outputs(args[1], results, inline_limit)


def keep_large_outputs(unit: Any, results: list[ExecutionResult], inline_limit: int = INLINE_LIMIT) -> Any:
    """``results`` as they are when all their outputs are small, else a :class:`HeldOutcome`."""
    large = [r for r in results if r.success and not r.skipped and inline_size(r.output, inline_limit) is None]
    if not large:
        return results
    steps = {s.name: s for s in unit_steps(unit)}
    assets: dict[str, Any] = {}
    held: dict[str, HeldInfo] = {}
    for result in large:
        problem = _unpicklable(result.output)
        if problem is not None:
            # It could never reach another worker, nor you: fail the step here, with the reason.
            result.success, result.output = False, None
            result.error = (f"the result of step {result.step_name!r} could not travel back from its Dask worker: "
                            f"{problem}. Outputs of steps that run on Dask must be picklable")
            logger.error("%s", result.error)
            continue
        split = result_assets(steps[result.step_name], result)
        if not result.success:  # its value breaks the outputs the step declares: failed, with the reason
            result.output = None
            continue
        assets.update(split)
        held[result.step_name] = HeldInfo(tuple(split), _type_name(result.output), getattr(result.output, "nbytes", None))
    if not held:
        return results
    return HeldOutcome(results, assets, held)


def summarize(outcome: Any) -> Any:
    """The client's view of a unit's task value: a :class:`Summary`, without the held outputs."""
    if not isinstance(outcome, HeldOutcome):
        return outcome  # all small after all (the client could not tell from the task's type)
    import attrs

    light = [attrs.evolve(r, output=None) if r.step_name in outcome.held else r for r in outcome.results]
    return Summary(light, outcome.held)


def fetch(outcome: Any, step_name: str, asset: str | None) -> Any:
    """One held value, for a client that asked for it: a step's whole output, or one of its assets."""
    if asset is not None:
        return outcome.assets[asset]
    for result in outcome.results:
        if result.step_name == step_name:
            return result.output
    raise KeyError(step_name)


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


# -- helpers ------------------------------------------------------------------------------------
def inline_size(value: Any, limit: int) -> int | None:
    """Bytes of ``value`` if it is plain data of at most ``limit`` bytes, else None.

    Plain data is what is cheap to measure exactly: scalars, strings, bytes,
    tuples/lists/sets/dicts of plain data, and numpy arrays and scalars without
    objects inside. Anything else (a model, a DataFrame, an object of the
    user's) may be any size, so it stays on the worker.
    """
    if isinstance(value, _SCALARS):
        return 32
    if isinstance(value, (str, bytes, bytearray)):
        size = len(value)
    elif isinstance(value, (tuple, list, set, frozenset)):
        if len(value) > _MAX_ITEMS:
            return None
        size = 56
        for item in value:
            item_size = inline_size(item, limit - size)
            if item_size is None:
                return None
            size += item_size + 8
            if size > limit:
                return None
    elif isinstance(value, dict):
        if len(value) > _MAX_ITEMS:
            return None
        size = 64
        for key, item in value.items():
            key_size, item_size = inline_size(key, limit), inline_size(item, limit - size)
            if key_size is None or item_size is None:
                return None
            size += key_size + item_size + 16
            if size > limit:
                return None
    elif type(value).__module__ == "numpy" and hasattr(value, "nbytes") and not getattr(value.dtype, "hasobject", True):
        size = int(value.nbytes)
    else:
        return None
    return size if size <= limit else None


class _Discard(io.RawIOBase):
    """A file that keeps nothing: pickling into it costs the traversal, not a copy of the bytes."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(memoryview(data))


def _unpicklable(value: Any) -> str | None:
    """Why ``value`` cannot be pickled, or None.

    Protocol 5 hands large buffers (numpy arrays, bytes) to the callback
    instead of copying them, so checking a 200 MB array costs microseconds.
    """
    import cloudpickle

    try:
        cloudpickle.dump(value, _Discard(), protocol=5, buffer_callback=lambda _buffer: None)
    except Exception as exc:  # whatever pickling raises is the reason, for the step's error
        return f"{type(exc).__name__}: {exc}"
    return None


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
