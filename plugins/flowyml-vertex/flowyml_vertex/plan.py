"""What a run submits: one task per execution unit, its ordering edges, its environment, its resources.

Everything ``run_pipeline`` submits comes from :func:`plan_tasks`, so a
caller that knows better (the core's client-side cache check: "these units
are cached, submit the others, and here is each unit's environment") passes
``units`` and ``env_for_unit`` and changes nothing else. Ordering edges are
kept only between submitted units: a unit that is not submitted has its
outputs already, so nothing waits for it. An empty plan is a run that
submits nothing.

This module imports no Google or KFP code.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import attrs

from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import ExecutionUnit, StepGroup, unit_name, unit_steps
from flowyml_core.resources import ResourceConfig

from flowyml_vertex.names import display_name, resource_id

#: Builds the step runner's environment for one unit (``flowyml_core.remote.RemoteRun.unit_env``).
EnvForUnit = Callable[[ExecutionUnit], Mapping[str, str]]

#: Task keys are cut here so that KFP's derived names stay short; duplicates get ``-2``, ``-3``…
TASK_KEY_LIMIT = 60


@attrs.define(frozen=True)
class TaskPlan:
    """One container: the unit it runs, its KFP task key, what it waits for and what it gets."""

    unit: str
    key: str
    steps: tuple[str, ...]
    after: tuple[str, ...]
    env: dict[str, str]
    resources: ResourceConfig | None

    @property
    def display_name(self) -> str:
        return display_name(self.unit)


def unit_resources(unit: ExecutionUnit, default: ResourceConfig | None = None) -> ResourceConfig | None:
    """The unit's own resources (a group's merged ones); ``default`` only when it has none."""
    own = unit.aggregated_resources if isinstance(unit, StepGroup) else unit.resources
    return own if own is not None else default


def task_keys(names: Iterable[str]) -> dict[str, str]:
    """Unit name → a distinct KFP task key that starts with a letter."""
    keys: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = resource_id(name, TASK_KEY_LIMIT, prefix="u")
        key, n = base, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        keys[name] = key
    return keys


def plan_tasks(
    pipeline: Any,
    *,
    env_for_unit: EnvForUnit,
    units: Iterable[ExecutionUnit] | None = None,
    base_env: Mapping[str, str] | None = None,
    default_resources: ResourceConfig | None = None,
    single_job: bool = False,
) -> list[TaskPlan]:
    """The containers to start, in execution-unit order.

    ``units``: the execution units to submit (default: all of the
    pipeline's); the others are taken as done. ``env_for_unit``: the step
    runner's variables for a unit; they go over ``base_env`` (the stack's
    ``env_vars``), so a user variable never replaces one of the runner's.
    ``default_resources``: for units without resources of their own.
    ``single_job``: one container for all submitted units (a CustomJob),
    its steps in topological order, sized for the largest of them;
    ``env_for_unit`` then gets one :class:`StepGroup` named after the
    pipeline that holds every submitted step.
    """
    all_units = pipeline.execution_units()
    chosen = all_units if units is None else _known_units(pipeline, all_units, units)
    if not chosen:
        return []
    base = {str(k): str(v) for k, v in (base_env or {}).items()}

    def env_of(unit: ExecutionUnit) -> dict[str, str]:
        return {**base, **{str(k): str(v) for k, v in env_for_unit(unit).items()}, "PYTHONUNBUFFERED": "1"}

    if single_job:
        return [_single_plan(pipeline, chosen, env_of, default_resources)]
    owner = {s.name: unit_name(u) for u in all_units for s in unit_steps(u)}
    keys = task_keys(unit_name(u) for u in chosen)
    plans = []
    for unit in chosen:
        name = unit_name(unit)
        steps = tuple(s.name for s in unit_steps(unit))
        after: list[str] = []
        for step in steps:
            for dep in pipeline.dag.get_dependencies(step):
                dep_unit = owner[dep]
                if dep_unit != name and dep_unit in keys and keys[dep_unit] not in after:
                    after.append(keys[dep_unit])
        plans.append(TaskPlan(name, keys[name], steps, tuple(after), env_of(unit),
                              unit_resources(unit, default_resources)))
    return plans


def _single_plan(
    pipeline: Any, units: list[ExecutionUnit], env_of: Callable[[ExecutionUnit], dict[str, str]],
    default_resources: ResourceConfig | None,
) -> TaskPlan:
    """All submitted units as one group named after the pipeline, steps in topological order."""
    chosen = {s.name for u in units for s in unit_steps(u)}
    order = [n for n in pipeline.dag.order if n in chosen]
    resources: ResourceConfig | None = None
    for unit in units:
        own = unit_resources(unit, default_resources)
        if own is not None:
            resources = own if resources is None else resources.merge(own)
    group = StepGroup(pipeline.name, [pipeline.dag.steps[n] for n in order], order, resources)
    key = resource_id(pipeline.name, TASK_KEY_LIMIT, prefix="u")
    return TaskPlan(pipeline.name, key, tuple(order), (), env_of(group), resources)


def _known_units(pipeline: Any, all_units: list[ExecutionUnit], units: Iterable[ExecutionUnit]) -> list[ExecutionUnit]:
    """``units`` in the pipeline's unit order; a unit this pipeline does not have is an error."""
    wanted = {unit_name(u) for u in units}
    names = {unit_name(u) for u in all_units}
    unknown = sorted(wanted - names)
    if unknown:
        raise FlowymlError(
            f"pipeline {pipeline.name!r} has no execution unit(s) {', '.join(unknown)} "
            f"(its units: {', '.join(unit_name(u) for u in all_units)})"
        )
    return [u for u in all_units if unit_name(u) in wanted]
