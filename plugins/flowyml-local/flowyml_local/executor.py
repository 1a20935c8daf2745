"""The local executor: steps run in this process, independent units optionally in threads.

The step semantics (condition → cache → retries → materialize → route → cache
write) live in :mod:`flowyml_core.execution` so that every executor gives users
the same behaviour; this class only chooses *where* steps run. See
``docs/reference/executor.md`` for the behaviour as built.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import attrs

from flowyml_core.components import Executor
from flowyml_core.execution import run_step
from flowyml_core.results import ExecutionResult

logger = logging.getLogger("flowyml.local.executor")


def _at_least_one(_inst: Any, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.define(frozen=True)
class LocalExecutorConfig:
    """Options of the ``local`` executor flavor.

    ``max_workers``: how many independent execution units may run at once, in
    threads of this process. 1 (the default) runs them one after another. Any
    value gives the same results as a sequential run; more than 1 only helps
    when steps release the GIL (I/O, numpy, subprocesses).
    """

    max_workers: int = attrs.field(default=1, validator=_at_least_one)


class LocalExecutor(Executor):
    """Runs steps in the calling process with the seed's semantics, defects fixed.

    Groups use the core default (``Executor.execute_step_group``): a group's
    steps run in order in one thread, inputs mapped by name then position.
    Whole pipelines use the core walker, which runs ready units concurrently
    when ``max_workers`` > 1 and records results in topological order.
    """

    def __init__(self, config: LocalExecutorConfig | None = None) -> None:
        super().__init__(config if config is not None else LocalExecutorConfig())
        self.max_workers = self.config.max_workers

    def execute_step(
        self,
        step: Any,
        inputs: dict[str, Any],
        context_params: dict[str, Any],
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        run_id: str | None = None,
        project_name: str = "default",
        all_outputs: dict[str, Any] | None = None,
        router: Any | None = None,
        input_fingerprints: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Run one step here and now; a failure is reported in the result, never raised."""
        return run_step(
            step,
            inputs,
            context_params,
            cache_store=cache_store,
            artifact_store=artifact_store,
            run_id=run_id,
            project_name=project_name,
            all_outputs=all_outputs,
            router=router,
            input_fingerprints=input_fingerprints,
        )

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers})"
