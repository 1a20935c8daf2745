"""Pipelines: steps wired by asset names, run on a stack chosen by name."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from flowyml_core.context import Context
from flowyml_core.errors import DefinitionError
from flowyml_core.step import Step

if TYPE_CHECKING:  # pragma: no cover
    import logging

    from flowyml_core.dag import DAG
    from flowyml_core.grouping import ExecutionUnit
    from flowyml_core.results import RunResult

# What running needs (graph checks, results, logging, run ids) is imported when a pipeline is built or run:
# `from flowyml_core import Pipeline, step` is the first line of every pipeline file.


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("flowyml.pipeline")

#: Set in every process that runs execution units for someone else: a container
#: of a remote run (``flowyml step-runner`` sets it) or a worker process of the
#: local executor's ``isolation = "process"``. Children inherit it.
UNIT_RUNNER_ENV = "FLOWYML_UNIT_RUNNER"


def inside_unit_runner() -> bool:
    """Whether this process runs units of a run started elsewhere.

    There, importing the pipeline's module is only how steps are found: a
    module-level ``pipeline.run(...)`` without a ``__main__`` guard must not
    start (or submit, and pay for) a second run from every container.
    """
    return bool(os.environ.get(UNIT_RUNNER_ENV))


def mark_unit_runner() -> None:
    """Declare this process (and its children) a unit runner; see :func:`inside_unit_runner`."""
    os.environ[UNIT_RUNNER_ENV] = "1"


class Pipeline:
    """An ordered collection of steps. Edges come from asset names."""

    def __init__(
        self,
        name: str,
        steps: Iterable[Step] | None = None,
        context: Context | Mapping[str, Any] | None = None,
        project_name: str = "default",
    ) -> None:
        self.name = name
        self.project_name = project_name
        self.context = as_context(context, f"Pipeline({name!r}, context=...)")
        self.steps: list[Step] = []
        self.dag: DAG | None = None
        self._units: list[ExecutionUnit] | None = None
        self._built = False
        caller = sys._getframe(1)  # the module that made the pipeline, for source()
        self._module = caller.f_globals.get("__name__") if caller else None
        for s in steps or ():
            self.add_step(s)

    def add_step(self, step: Step | Any) -> Pipeline:
        if not isinstance(step, Step):
            if callable(step):
                step = Step(func=step)
            else:
                raise TypeError(f"add_step takes a @step function, got {step!r}")
        self.steps.append(step)
        self._built = False
        self.dag = None
        self._units = None
        return self

    def build(self) -> Pipeline:
        """Check the graph (cycles, unknown inputs, duplicate producers) and fix the order."""
        if not self._built:
            from flowyml_core.dag import DAG
            from flowyml_core.grouping import get_execution_units

            self.dag = DAG(self.steps)
            self._units = get_execution_units(self.dag, self.steps)
            self._built = True
        return self

    def execution_units(self) -> list[ExecutionUnit]:
        self.build()
        assert self._units is not None
        return self._units

    def source(self) -> str | None:
        """``module:attribute`` (or ``file.py:attribute``) where this pipeline can be imported again.

        Remote step runners re-import the pipeline from this reference.
        """
        module = sys.modules.get(self._module or "")
        if module is None or not all(part.isidentifier() for part in (self._module or "").split(".")):
            return None  # "<run_path>", "<stdin>": nothing another process could import
        for attr, value in vars(module).items():
            if value is self:
                if self._module == "__main__":
                    path = getattr(module, "__file__", None)
                    return f"{path}:{attr}" if path else None
                return f"{self._module}:{attr}"
        return None

    def run(
        self,
        stack: str | None = None,
        context: Context | Mapping[str, Any] | None = None,
        run_id: str | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> RunResult:
        """Run on the named stack (or the active one); see ``stacks.toml``.

        Inside a unit runner (see :func:`inside_unit_runner`) nothing runs: the
        call logs one warning naming the file and returns a run with status
        ``CANCELLED`` and no steps.
        """
        context = as_context(context, f"pipeline {self.name!r}: run(context=...)")
        if inside_unit_runner():
            return self._refuse_nested_run(run_id)
        from flowyml_core.stacks import cached_stack

        # Resolved once per process and reused while stacks.toml, the environment it reads and the current
        # directory stay the same: runs in one process share the stack's components (connections, clients).
        resolved = cached_stack(stack)
        return run_on_stack(self, resolved, context=context, run_id=run_id, wait=wait, timeout=timeout)

    def _refuse_nested_run(self, run_id: str | None) -> RunResult:
        from flowyml_core.results import ExecutionStatus, RunResult

        module = sys.modules.get(self._module or "")
        where = getattr(module, "__file__", None) or self._module or "its module"
        _logger().warning(
            "pipeline %r: run() was called while %s was imported inside a step runner; nothing was run or "
            "submitted. Put the call under `if __name__ == \"__main__\":` in %s so that importing the file "
            "only defines the pipeline", self.name, where, where,
        )
        return RunResult(run_id=run_id or "", status=ExecutionStatus.CANCELLED)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={[s.name for s in self.steps]})"


def as_context(value: Context | Mapping[str, Any] | None, where: str) -> Context:
    """``value`` as a :class:`Context`, or one line saying what ``context`` takes.

    ``Context.coerce`` would fail on a list with ``cannot convert dictionary
    update sequence element #0``, which names neither the argument nor the fix.
    """
    if value is None or isinstance(value, Context):
        return Context.coerce(value)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return Context.coerce(value)
    if isinstance(value, Mapping):
        what = "a dict whose keys are not all strings"
    else:
        what = f"{value!r} ({type(value).__name__})"
    raise DefinitionError(
        f"{where} takes a Context(...) or a dict of parameters by name (e.g. {{'epochs': 10}}), got {what}"
    )


def new_run_id(pipeline_name: str) -> str:
    import uuid

    return uuid.uuid4().hex[:16]


def run_on_stack(
    pipeline: Pipeline,
    stack: Any,
    *,
    context: Context | Mapping[str, Any] | None = None,
    run_id: str | None = None,
    wait: bool = True,
    timeout: float | None = None,
    source: str | None = None,
    registry: Any | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run ``pipeline`` on a resolved stack, calling the observer hooks around it.

    ``inputs`` are initial assets, given to steps whose parameters have their names.
    """
    from flowyml_core.calling import keyword_caller
    from flowyml_core.execution import Run
    from flowyml_core.plugins import get_registry
    from flowyml_core.results import ExecutionStatus, RunResult, SubmissionResult

    pipeline.build()
    hooks = ObserverHooks((registry or get_registry()).hook)
    ctx = pipeline.context.with_updates(as_context(context, f"pipeline {pipeline.name!r}: context").params)
    run_id = run_id or new_run_id(pipeline.name)
    run = Run(run_id=run_id, pipeline_name=pipeline.name, project_name=pipeline.project_name,
              stack_name=stack.name, params=ctx.params)
    source = source or pipeline.source()
    journal = _journal(pipeline, stack, run_id, ctx.params, source)
    hooks.on_run_start(run=run)
    try:
        outcome = keyword_caller(stack.executor.run_pipeline)(
            pipeline=pipeline,
            run_id=run_id,
            context=ctx,
            cache_store=stack.cache_store,
            artifact_store=stack.artifact_store,
            router=stack.router,
            run=run,
            hooks=hooks,
            stack_name=stack.name,
            stack=stack,
            pipeline_module=source,
            inputs=inputs,
        )
        if isinstance(outcome, SubmissionResult):
            outcome.observe(hooks, run)
            if journal is not None:
                journal.record(outcome.result(ExecutionStatus.RUNNING, run_id))  # submitted: its job id is known
                outcome.on_result(journal.record)
            status = outcome.wait(timeout) if wait else ExecutionStatus.RUNNING
            result = outcome.result(status, run_id)
        else:
            result = outcome
            if journal is not None:
                journal.record(result)
    except BaseException as exc:
        # Observers that saw the start see an end too, then the error goes on.
        # The steps that ended before it (``run.steps``) are kept: a run cut short by Ctrl-C says what it did.
        ended = RunResult(run_id=run_id, steps=dict(run.steps),
                          status=ExecutionStatus.CANCELLED if isinstance(exc, KeyboardInterrupt) else ExecutionStatus.FAILED)
        if journal is not None and not journal.submitted:  # a submitted run goes on remotely
            journal.record(ended)
        hooks.on_run_end(run=run, result=ended)
        raise
    hooks.on_run_end(run=run, result=result)
    return result


def _journal(pipeline: Pipeline, stack: Any, run_id: str, params: Mapping[str, Any], source: str | None) -> Any:
    """The run's history journal (see :mod:`flowyml_core.history`), or None for a stack without a project."""
    project_dir = getattr(stack, "project_dir", None)
    if project_dir is None:
        return None
    from flowyml_core.history import RunJournal

    spec = getattr(stack, "spec", None)
    executor = spec.components["executor"].flavor if spec is not None and "executor" in spec.components else None
    return RunJournal.begin(
        project_dir, run_id=run_id, pipeline=pipeline.name, project=pipeline.project_name, stack=stack.name,
        executor=executor, source=source, params=params, secrets=getattr(stack, "secrets", []),
        steps=pipeline.steps,
    )


OBSERVER_HOOKS = ("on_run_start", "on_step_end", "on_run_end")


class ObserverHooks:
    """The plugin hook relay, with each observer called on its own.

    An observer is someone else's code watching the run (progress, metrics,
    notifications): one that raises is logged with its plugin's name and the
    others, and the run, carry on. Other hooks are passed through unchanged.
    """

    def __init__(self, relay: Any) -> None:
        self._relay = relay
        self._wrapped: dict[str, _IsolatedHook] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in OBSERVER_HOOKS:
            return getattr(self._relay, name)
        hook = self._wrapped.get(name)
        if hook is None:
            hook = self._wrapped[name] = _IsolatedHook(name, getattr(self._relay, name))
        return hook


class _IsolatedHook:
    def __init__(self, name: str, caller: Any) -> None:
        self.name = name
        self._caller = caller

    def get_hookimpls(self) -> list[Any]:
        return self._caller.get_hookimpls()

    def __call__(self, **kwargs: Any) -> None:
        impls = self._caller.get_hookimpls()
        if any(getattr(i, "hookwrapper", False) or getattr(i, "wrapper", False) for i in impls):
            self._call(self._caller, kwargs, "a hook wrapper")  # pluggy must run wrappers itself
            return
        for impl in reversed(impls):  # pluggy's order: last registered first
            self._call(impl.function, {a: kwargs[a] for a in impl.argnames if a in kwargs}, impl.plugin_name)

    def _call(self, function: Any, kwargs: dict[str, Any], plugin: str) -> None:
        try:
            function(**kwargs)
        except Exception as exc:
            import logging

            logger = _logger()
            logger.error("plugin %r: %s hook failed (%s: %s); the run goes on", plugin, self.name,
                         type(exc).__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
