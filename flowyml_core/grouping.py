"""Execution units: single steps, or groups of steps that run in one environment.

Steps that share an ``execution_group`` run together (one container remotely).
A group is split where keeping it whole would be impossible: when a step
outside the group depends on one member and is needed by a later member.
"""

from __future__ import annotations

import heapq
from typing import Sequence, Union

import attrs

from flowyml_core.dag import DAG
from flowyml_core.errors import PipelineDefinitionError
from flowyml_core.resources import ResourceConfig
from flowyml_core.step import Step


@attrs.define(eq=False)
class StepGroup:
    group_name: str
    steps: list[Step]
    execution_order: list[str]
    aggregated_resources: ResourceConfig | None = None

    @property
    def name(self) -> str:
        return self.group_name

    @property
    def step_names(self) -> list[str]:
        return list(self.execution_order)

    def __repr__(self) -> str:
        return f"StepGroup({self.group_name!r}, {self.execution_order})"


ExecutionUnit = Union[Step, StepGroup]


def unit_name(unit: ExecutionUnit) -> str:
    return unit.group_name if isinstance(unit, StepGroup) else unit.name


def unit_steps(unit: ExecutionUnit) -> list[Step]:
    """The unit's steps in execution order."""
    if isinstance(unit, StepGroup):
        by_name = {s.name: s for s in unit.steps}
        return [by_name[n] for n in unit.execution_order]
    return [unit]


def get_execution_units(dag: DAG, steps: Sequence[Step] | None = None) -> list[ExecutionUnit]:
    """The pipeline's units in a deterministic topological order."""
    order = dag.order
    if not any(dag.steps[n].execution_group for n in order):
        return [dag.steps[n] for n in order]

    ancestors = dag.ancestors()
    position = dag.position
    # Chunks of each group, built in topological order.
    chunks: dict[str, list[list[str]]] = {}
    for name in order:
        group = dag.steps[name].execution_group
        if not group:
            continue
        group_chunks = chunks.setdefault(group, [])
        if group_chunks and not _needs_outside_step(name, group_chunks[-1], group, dag, ancestors):
            group_chunks[-1].append(name)
        else:
            group_chunks.append([name])

    units: list[tuple[list[str], ExecutionUnit]] = []
    for name in order:
        if not dag.steps[name].execution_group:
            units.append(([name], dag.steps[name]))
    for group, group_chunks in chunks.items():
        for i, members in enumerate(group_chunks):
            label = group if len(group_chunks) == 1 else f"{group}-{i + 1}"
            member_steps = [dag.steps[n] for n in members]
            resources: ResourceConfig | None = None
            for s in member_steps:
                if s.resources is not None:
                    resources = s.resources if resources is None else resources.merge(s.resources)
            units.append((members, StepGroup(label, member_steps, list(members), resources)))
    return _order_units(units, dag, position)


def _needs_outside_step(name: str, chunk: list[str], group: str, dag: DAG, ancestors: dict[str, int]) -> bool:
    """Whether ``name`` depends on a non-member that itself depends on the chunk."""
    chunk_bits = 0
    for member in chunk:
        chunk_bits |= 1 << dag.position[member]
    mine = ancestors[name]
    for other in dag.order:
        bit = 1 << dag.position[other]
        if not mine & bit or dag.steps[other].execution_group == group:
            continue
        if ancestors[other] & chunk_bits:
            return True
    return False


def _order_units(
    units: list[tuple[list[str], ExecutionUnit]], dag: DAG, position: dict[str, int]
) -> list[ExecutionUnit]:
    owner = {}
    for i, (members, _) in enumerate(units):
        for m in members:
            owner[m] = i
    deps: list[set[int]] = [set() for _ in units]
    for i, (members, _) in enumerate(units):
        for m in members:
            for d in dag.get_dependencies(m):
                if owner[d] != i:
                    deps[i].add(owner[d])
    dependents: list[list[int]] = [[] for _ in units]
    for i, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(i)
    first = [min(position[m] for m in members) for members, _ in units]
    missing = [len(ds) for ds in deps]
    ready = [(first[i], i) for i in range(len(units)) if missing[i] == 0]
    heapq.heapify(ready)
    ordered: list[ExecutionUnit] = []
    while ready:
        _, i = heapq.heappop(ready)
        ordered.append(units[i][1])
        for child in dependents[i]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, (first[child], child))
    if len(ordered) != len(units):
        stuck = sorted(unit_name(units[i][1]) for i in range(len(units)) if missing[i] > 0)
        raise PipelineDefinitionError(
            f"execution units {', '.join(stuck)} depend on each other through steps of other groups; "
            "put those steps in one execution_group or in none"
        )
    return ordered
