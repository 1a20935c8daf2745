"""Execution units: single steps, or groups of steps that run in one environment.

Steps that share an ``execution_group`` run together (one container remotely).
A group is split where keeping it whole would be impossible: when a step
outside the group depends on one member and is needed by a later member,
directly or through a unit of another group.
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
    """The pipeline's units in a deterministic topological order.

    Steps are visited in topological order. A grouped step joins the latest
    chunk of its group unless that chunk is already an ancestor of one of the
    step's dependencies' units: then something outside the chunk sits between
    them (a plain step, or a unit of another group) and keeping them together
    would make the units depend on each other, so a new chunk starts. Ancestry
    is tracked between units, not steps, because two interleaved groups can
    each look fine on their own and still wait for each other once contracted.
    """
    order = dag.order
    if not any(dag.steps[n].execution_group for n in order):
        return [dag.steps[n] for n in order]

    members: list[list[str]] = []  # unit index -> its steps, in execution order
    unit_group: list[str | None] = []
    ancestors: list[int] = []  # unit index -> bitset of the units it waits for
    unit_of: dict[str, int] = {}
    open_chunk: dict[str, int] = {}  # group -> index of its latest chunk
    for name in order:
        dep_units = {unit_of[d] for d in dag.get_dependencies(name)}
        group = dag.steps[name].execution_group or None
        chunk = open_chunk.get(group) if group else None
        if chunk is not None:
            bit = 1 << chunk
            if any(ancestors[u] & bit for u in dep_units if u != chunk):
                chunk = None
        inherited = 0
        for u in dep_units:
            if u != chunk:
                inherited |= ancestors[u] | (1 << u)
        if chunk is None:
            chunk = len(members)
            members.append([])
            unit_group.append(group)
            ancestors.append(inherited)
            if group:
                open_chunk[group] = chunk
        else:
            new = inherited & ~ancestors[chunk]
            if new:
                # Everything already waiting for this chunk now waits for ``new`` too.
                bit = 1 << chunk
                ancestors[chunk] |= new
                for u, anc in enumerate(ancestors):
                    if anc & bit:
                        ancestors[u] = anc | new
        members[chunk].append(name)
        unit_of[name] = chunk

    chunk_count: dict[str, int] = {}
    for group in unit_group:
        if group:
            chunk_count[group] = chunk_count.get(group, 0) + 1
    seen: dict[str, int] = {}
    units: list[tuple[list[str], ExecutionUnit]] = []
    for names, group in zip(members, unit_group):
        if not group:
            units.append((names, dag.steps[names[0]]))
            continue
        seen[group] = seen.get(group, 0) + 1
        label = group if chunk_count[group] == 1 else f"{group}-{seen[group]}"
        member_steps = [dag.steps[n] for n in names]
        resources: ResourceConfig | None = None
        for s in member_steps:
            if s.resources is not None:
                resources = s.resources if resources is None else resources.merge(s.resources)
        units.append((names, StepGroup(label, member_steps, list(names), resources)))
    return _order_units(units, dag, dag.position)


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
