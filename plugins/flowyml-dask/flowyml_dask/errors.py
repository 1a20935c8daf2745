"""What goes wrong on a cluster (as opposed to in a step), said in words a person can act on."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from flowyml_core.grouping import StepGroup, unit_steps
from flowyml_core.results import ExecutionResult
from flowyml_core.step import Step


class DaskTaskError(RuntimeError):
    """A unit could not complete on the cluster: its worker died, its code or data could not
    travel, or the scheduler cancelled it. (A step that raises is a failed result, not this.)"""


def explain(exc: BaseException, what: str) -> DaskTaskError:
    """The reason a Dask task of ``what`` (a unit's description) failed, as a :class:`DaskTaskError`."""
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


def failed_results(unit: Any, error: str) -> list[ExecutionResult]:
    """Each step of ``unit`` failed with ``error`` (the unit never ran, or its worker vanished)."""
    return [ExecutionResult(step_name=s.name, success=False, error=error) for s in unit_steps(unit)]


def describe(args: tuple[Any, ...]) -> str:
    """The unit among a task's arguments, for messages: ``step 'train'`` or ``execution group 'g' (…)``."""
    for arg in args:
        if isinstance(arg, StepGroup):
            return f"execution group {arg.group_name!r} (steps {', '.join(arg.execution_order)})"
        if isinstance(arg, Step):
            return f"step {arg.name!r}"
    return "a task"
