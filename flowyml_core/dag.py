"""The step graph: edges come from asset names.

A step's input is the output of the step that declares it. Building checks the
whole graph at once and names the steps involved in every problem.
"""

from __future__ import annotations

import heapq
from typing import Sequence

from flowyml_core.errors import PipelineDefinitionError
from flowyml_core.step import Step


class DAG:
    """Steps, their dependencies and one deterministic topological order.

    Ties in the order are broken by the order in which steps were added, so the
    same pipeline always runs (and compiles) the same way.
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps: dict[str, Step] = {}
        problems: list[str] = []
        for s in steps:
            if s.name in self.steps:
                problems.append(f"two steps are named {s.name!r}; step names must be unique")
            self.steps[s.name] = s

        self.producers: dict[str, str] = {}
        for s in steps:
            for asset in s.outputs:
                other = self.producers.get(asset)
                if other is not None and other != s.name:
                    problems.append(
                        f"asset {asset!r} is produced by both step {other!r} and step {s.name!r}; "
                        "give one of the outputs another name"
                    )
                else:
                    self.producers[asset] = s.name

        self._deps: dict[str, list[str]] = {}
        for s in steps:
            deps: list[str] = []
            for asset in s.inputs:
                producer = self.producers.get(asset)
                if producer is None:
                    known = ", ".join(sorted(self.producers)) or "none"
                    problems.append(
                        f"step {s.name!r} needs input {asset!r} but no step produces it "
                        f"(assets produced: {known})"
                    )
                elif producer == s.name:
                    problems.append(f"step {s.name!r} consumes its own output {asset!r}")
                elif producer not in deps:
                    deps.append(producer)
            self._deps[s.name] = deps
        if problems:
            raise PipelineDefinitionError("invalid pipeline:\n  " + "\n  ".join(problems))

        self._dependents: dict[str, list[str]] = {name: [] for name in self.steps}
        for name, deps in self._deps.items():
            for dep in deps:
                self._dependents[dep].append(name)
        self.order: list[str] = self._topological_order()
        self.position = {name: i for i, name in enumerate(self.order)}

    def get_dependencies(self, step_name: str) -> list[str]:
        return list(self._deps[step_name])

    def get_dependents(self, step_name: str) -> list[str]:
        return list(self._dependents[step_name])

    def topological_sort(self) -> list[Step]:
        return [self.steps[n] for n in self.order]

    def _topological_order(self) -> list[str]:
        index = {name: i for i, name in enumerate(self.steps)}
        missing = {name: len(deps) for name, deps in self._deps.items()}
        ready = [(index[n], n) for n, count in missing.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for child in self._dependents[name]:
                missing[child] -= 1
                if missing[child] == 0:
                    heapq.heappush(ready, (index[child], child))
        if len(order) != len(self.steps):
            cycle = self._find_cycle({n for n, count in missing.items() if count > 0})
            raise PipelineDefinitionError(
                "invalid pipeline: the steps form a cycle: " + " -> ".join(cycle)
            )
        return order

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        """One cycle's path, e.g. ``a -> b -> a``, among the steps that never became ready.

        Every stuck step has a stuck dependency, so walking stuck dependencies
        must revisit a step: the walk from that step on is the cycle.
        """
        start = min(stuck, key=list(self.steps).index)
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(d for d in self._deps[node] if d in stuck)
        cycle = path[seen[node]:] + [node]
        cycle.reverse()  # show it in data-flow direction: producer -> consumer
        return cycle

    def ancestors(self) -> dict[str, int]:
        """Bitsets (by topological position) of every step's transitive dependencies."""
        bits: dict[str, int] = {}
        for name in self.order:
            acc = 0
            for dep in self._deps[name]:
                acc |= bits[dep] | (1 << self.position[dep])
            bits[name] = acc
        return bits
