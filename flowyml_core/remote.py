"""Remote runs: what every executor that sends execution units elsewhere shares.

A remote executor (Docker, Vertex AI, Kubernetes, a third party's) only has to
start ``flowyml step-runner`` somewhere, once per unit, with the environment
:meth:`RemoteRun.unit_env` gives, and wait. Everything that makes such a run
behave like the same run on the local stack lives here, so it is written once:

* **The cache is checked on the client first.** Units whose steps would all hit
  the cache are not submitted; their records are written for the units after
  them. A fully cached pipeline builds no image and submits nothing. Keys are
  derived exactly as a local run derives them, from the fingerprints stored
  with each cache entry, so no value is loaded to decide.
* **Units hand data over through records** (:mod:`flowyml_core.records`).
* **The stack travels with the job** (:mod:`flowyml_core.shipping`).
* **Results come back from the records**: per-step results with the statuses,
  errors and cached flags a local run reports, failures skipping exactly what
  they skip locally, and outputs loaded only when asked for.

Executors that start each unit themselves (Docker) hand a blocking ``launch``
function to :meth:`RemoteRun.walk`, which runs units in dependency order like
the local walker. Executors whose platform runs the graph (Vertex AI
Pipelines) submit :attr:`RemoteRun.tasks` with their ``after`` edges and
return :meth:`RemoteRun.submission`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

from flowyml_core.context import Context
from flowyml_core.errors import FlowymlError, UnfingerprintableError
from flowyml_core.execution import Run, asset_fingerprints, bind_inputs, step_params
from flowyml_core.grouping import ExecutionUnit, StepGroup, unit_name, unit_steps
from flowyml_core.records import OutputRef, RunRecords, StepRecord
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult, SubmissionResult
from flowyml_core.shipping import STACK_CONFIG_ENV, stack_payload
from flowyml_core.step import Step, signature_names
from flowyml_core.walker import PipelineWalker

logger = logging.getLogger("flowyml.remote")

#: Set when the run has initial assets (``run_pipeline(inputs=...)``) for units to read.
INPUTS_ENV = "FLOWYML_INPUTS"
_UNKNOWN = object()  # stands for a value the client knows only by its fingerprint


@attrs.define
class UnitTask:
    """One unit to run elsewhere: its steps, the submitted units it waits for, its resources."""

    name: str
    unit: ExecutionUnit
    steps: tuple[str, ...]
    after: tuple[str, ...]
    resources: ResourceConfig | None
    env: dict[str, str] = attrs.field(factory=dict)


def context_json(params: Mapping[str, Any]) -> str:
    """Run parameters as the JSON object step runners read from ``FLOWYML_CONTEXT``."""
    try:
        return json.dumps(dict(params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        bad = []
        for key, value in params.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                bad.append(key)
        raise FlowymlError(
            f"run parameter(s) {', '.join(sorted(bad)) or '?'} cannot be sent to remote units: parameters of remote "
            f"runs must be JSON values (str, int, float, bool, None, lists, dicts) ({exc})"
        ) from None


def module_in_project(reference: str, project_root: Path) -> str:
    """A ``file.py:attr`` reference as a process started in ``project_root`` sees it.

    Images hold the project at their working directory, so a file path is made
    relative to the project root; a file outside the project would not be in
    the image, which is an error. Module references pass unchanged.
    """
    source, sep, attr = reference.rpartition(":")
    if not sep or not (source.endswith(".py") or "/" in source or os.sep in source):
        return reference
    path = Path(source)
    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        relative = absolute.resolve().relative_to(project_root.resolve())
    except ValueError:
        raise FlowymlError(
            f"pipeline file {source} is outside the project directory {project_root.resolve()}, so the units "
            "cannot import it; move it into the project, or run from the directory that holds it"
        ) from None
    return f"{relative.as_posix()}:{attr}"


def require_module(pipeline: Any, reference: str | None) -> str:
    """The pipeline's module reference, or an error saying how to give it one."""
    if reference:
        return reference
    raise FlowymlError(
        f"pipeline {pipeline.name!r} cannot run remotely: its units import it again from its module, and it has "
        "none (it was defined interactively, or is not a module-level name). Define it in a file and run "
        f"`flowyml run path/to/file.py:{_ident(pipeline.name)} --stack STACK`, or import it from a module of "
        "the project and run `flowyml run package.module:NAME --stack STACK`"
    )


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name) or "pipeline"


#: Consecutive transient API errors a poll loop tolerates before it gives up.
MAX_TRANSIENT_ERRORS = 5


def store_url(store: Any | None) -> str | None:
    """The root URL of a store, when its config declares one (``url``, ``path`` or ``root``)."""
    config = getattr(store, "config", None)
    for attr in ("url", "path", "root"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def warn_unshared_signing_keys(stores: Mapping[str, Any], stack_name: str | None, platform: str) -> None:
    """Say before submitting that pickled outputs will not cross units (one warning line).

    A store without ``signing_key`` signs pickles with the per-user key of the
    machine it runs on, made on first use; each container of ``platform``
    makes its own, so a pickle one unit writes is refused by the next unit and
    by this client. Sending this machine's key with the job would put a secret
    in its spec, which flowyml never does.
    """
    unsigned = [kind for kind, store in stores.items()
                if store is not None and hasattr(store.config, "signing_key") and store.config.signing_key is None
                and not getattr(store.config, "allow_unsigned_pickle", False)]
    if not unsigned:
        return
    logger.warning(
        "%s: the %s set%s no signing_key, so each %s container signs pickled outputs with a key of its own "
        "and the next unit (and this machine) will refuse them; JSON, bytes, numpy and parquet outputs are not "
        "affected. For pickled outputs, set signing_key = \"${env:FLOWYML_SIGNING_KEY}\" on the stores with that "
        "variable set inside the containers, or allow_unsigned_pickle = true if you trust every writer of the bucket "
        "(docs/reference/remote.md, 'Pickled outputs between units')",
        f"stack {stack_name!r}" if stack_name else "the stack", " and ".join(unsigned),
        "s" if len(unsigned) == 1 else "", platform,
    )


def count_transient(exc: FlowymlError, count: int, job_id: str) -> int:
    """One more transient error (``exc.transient``) while polling ``job_id``; ``exc`` itself once there
    were :data:`MAX_TRANSIENT_ERRORS` in a row, or when it is not transient."""
    if not getattr(exc, "transient", False) or count + 1 >= MAX_TRANSIENT_ERRORS:
        raise exc
    logger.warning("polling %s: %s (retrying, %d/%d)", job_id, exc, count + 1, MAX_TRANSIENT_ERRORS)
    return count + 1


def wait_until_finished(get_status: Callable[[str], ExecutionStatus], job_id: str, timeout: float | None,
                        interval: float, platform: str) -> ExecutionStatus:
    """Poll ``get_status(job_id)`` every ``interval`` seconds until the job ends; TimeoutError after ``timeout``.

    The job goes on when the wait times out, and the error says how to check
    or stop it; a few transient API errors in a row are retried.
    """
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    transient = 0
    while True:
        status: ExecutionStatus | None = None
        try:
            status = get_status(job_id)
            transient = 0
        except FlowymlError as exc:
            transient = count_transient(exc, transient, job_id)
        if status is not None and status.is_finished:
            return status
        pause = interval
        if deadline is not None:
            pause = deadline - time.monotonic()
            if pause <= 0:
                state = status.value if status is not None else "unknown"
                raise TimeoutError(
                    f"{platform} job {job_id} is still {state} after {timeout:.1f}s; it keeps running "
                    f"(check it with `flowyml runs status {job_id}`, stop it with `flowyml runs stop {job_id}`)"
                )
            pause = min(interval, pause)
        time.sleep(pause)


class RemoteRun:
    """One run of a pipeline whose units execute elsewhere through ``flowyml step-runner``."""

    def __init__(
        self,
        pipeline: Any,
        run_id: str,
        *,
        pipeline_module: str | None,
        context: Any = None,
        stack: Any = None,
        cache_store: Any = None,
        artifact_store: Any = None,
        router: Any = None,
        stack_name: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        resources: ResourceConfig | None = None,
        check_cache: bool = True,
    ) -> None:
        """``check_cache=False`` submits every unit (each still checks the cache where it runs):
        for an executor whose one container cannot read records the client writes."""
        pipeline.build()
        self.pipeline = pipeline
        self.run_id = run_id
        self.module = require_module(pipeline, pipeline_module)
        self.context = Context.coerce(context) if context is not None else pipeline.context
        if stack is not None:
            cache_store, artifact_store, router = stack.cache_store, stack.artifact_store, stack.router
            stack_name = stack.name
        self.cache_store, self.artifact_store, self.router = cache_store, artifact_store, router
        self.stack_name = stack_name
        self.records = RunRecords(artifact_store, run_id, pipeline.project_name)
        self.payload = stack_payload(stack) if stack is not None else None
        self.params_json = context_json(self.context.params)
        self.default_resources = resources
        self.has_inputs = bool(inputs)
        self.cached: dict[str, StepRecord] = {}
        self.tasks: list[UnitTask] = []
        self._plan(inputs or {}, check_cache and cache_store is not None)

    #: The keyword arguments of ``Executor.run_pipeline`` that a RemoteRun takes.
    RUN_ARGS = ("context", "stack", "cache_store", "artifact_store", "router", "stack_name", "inputs", "resources")

    @classmethod
    def from_run_args(cls, pipeline: Any, run_id: str, *, pipeline_module: str | None, **run_args: Any) -> RemoteRun:
        """A RemoteRun from the keyword arguments ``run_pipeline`` received (the others are ignored)."""
        return cls(pipeline, run_id, pipeline_module=pipeline_module,
                   **{name: run_args[name] for name in cls.RUN_ARGS if name in run_args})

    # -- planning ---------------------------------------------------------------------------
    def _plan(self, inputs: Mapping[str, Any], check_cache: bool) -> None:
        known: dict[str, str] = {}
        if inputs:
            known.update({name: ref.fingerprint or "" for name, ref in self.records.write_inputs(inputs).outputs.items()})
        self.initial = set(inputs)
        owner: dict[str, str] = {}
        submitted: set[str] = set()
        for unit in self.pipeline.execution_units():
            name = unit_name(unit)
            steps = unit_steps(unit)
            for step in steps:
                owner[step.name] = name
            hits = self._cached_unit(unit, known) if check_cache else None
            if hits is not None:
                for record in hits:
                    self.records.write(record)
                    self.cached[record.step] = record
                continue
            after: list[str] = []
            for step in steps:
                for dep in self.pipeline.dag.get_dependencies(step.name):
                    dep_unit = owner[dep]
                    if dep_unit != name and dep_unit in submitted and dep_unit not in after:
                        after.append(dep_unit)
            submitted.add(name)
            resources = unit.aggregated_resources if isinstance(unit, StepGroup) else unit.resources
            task = UnitTask(name, unit, tuple(s.name for s in steps), tuple(after), resources or self.default_resources)
            task.env = self.unit_env(unit)
            self.tasks.append(task)
        if self.cached:
            logger.info("run %s: %d of %d steps are cached (%s); %s", self.run_id, len(self.cached),
                        len(self.pipeline.steps), ", ".join(self.cached),
                        f"{len(self.tasks)} unit(s) to run" if self.tasks else "nothing to submit")

    def _cached_unit(self, unit: ExecutionUnit, known: dict[str, str]) -> list[StepRecord] | None:
        """The records of a unit whose every step would hit the cache, or None.

        Each key is computed by the step's own ``get_cache_key`` from the
        fingerprints recorded with the entries upstream, as a local run would.
        A step with ``cache=False``, one whose condition does not hold here
        (:meth:`_condition_holds`), or one whose inputs come from a unit that
        must run, makes the whole unit run.
        """
        fps = dict(known)
        records: list[StepRecord] = []
        lookup = getattr(self.cache_store, "lookup", None) or self.cache_store.get
        for step in unit_steps(unit):
            if not step.cache or (step.condition is not None and not self._condition_holds(step)):
                return None
            if any(asset not in fps for asset in step.inputs):
                return None
            available = {asset: _UNKNOWN for asset in step.inputs}
            available.update({name: _UNKNOWN for name in self.initial if name in step.param_names})
            kwargs, input_fps = bind_inputs(step, available, fps)
            if set(kwargs) - set(input_fps):
                return None
            try:
                key = step.get_cache_key(kwargs, step_params(self.context, step), input_fps)
            except UnfingerprintableError:  # run it; the unit itself warns that it cannot be cached
                return None
            entry = lookup(key) if key else None
            if entry is None or entry.fingerprint is None:
                return None
            assets = asset_fingerprints(step, entry.fingerprint, dict.fromkeys(step.outputs))
            fps.update(assets)
            records.append(StepRecord(
                step=step.name, status="cached", unit=unit_name(unit), cache_key=key,
                output_fingerprint=entry.fingerprint,
                outputs={name: OutputRef("cached", cache_key=key, fingerprint=fp) for name, fp in assets.items()},
            ))
        known.update(fps)
        return records

    def _condition_holds(self, step: Step) -> bool:
        """Whether the step's condition is true, when the client can tell from the run's parameters alone.

        Locally a condition is checked before the cache, with the run's
        parameters, the values produced so far and the step's inputs. The
        client has only the parameters, so it asks the condition only when
        each name it takes is a parameter that no asset of the pipeline
        shadows (an asset would win at run time); a condition that takes
        ``**kwargs``, reads anything else, or raises is left to the unit,
        which then runs, as does a condition that is false here: the unit
        reports the skip as a local run would.
        """
        names, takes_all = signature_names(step.condition)
        params = step_params(self.context, step)
        produced = self.pipeline.dag.producers
        if takes_all or any(name not in params or name in produced or name in self.initial for name in names):
            return False
        try:
            return bool(step.condition(**{name: params[name] for name in names}))
        except Exception as exc:  # noqa: BLE001 - the unit checks it again and reports the error as its step's
            logger.debug("run %s: condition of step %s not checked before submitting (%s: %s)",
                         self.run_id, step.name, type(exc).__name__, exc)
            return False

    def unit_env(self, unit: ExecutionUnit) -> dict[str, str]:
        """The ``FLOWYML_*`` variables of ``flowyml step-runner`` for one unit (no secret values).

        ``unit`` may also be a group of several units' steps (one job that
        runs them all): the step runner walks them as the local executor does.
        """
        env = {
            "PYTHONUNBUFFERED": "1",
            "FLOWYML_PIPELINE_MODULE": self.module,
            "FLOWYML_STEP_NAMES": ",".join(s.name for s in unit_steps(unit)),
            "FLOWYML_RUN_ID": self.run_id,
            "FLOWYML_EXECUTION_GROUP": unit_name(unit),
            "FLOWYML_PIPELINE_NAME": self.pipeline.name,
            "FLOWYML_PROJECT_NAME": self.pipeline.project_name,
            "FLOWYML_CONTEXT": self.params_json,
        }
        if self.stack_name:
            env["FLOWYML_STACK"] = self.stack_name
        if self.payload is not None:
            env[STACK_CONFIG_ENV] = self.payload
        if self.has_inputs:
            env[INPUTS_ENV] = "1"
        return env

    # -- results ------------------------------------------------------------------------------
    def collect(
        self,
        status: ExecutionStatus | None = None,
        unit_failures: Mapping[str, str] | None = None,
        *,
        hooks: Any = None,
        run: Run | None = None,
    ) -> RunResult:
        """The run's result, read from its records once the units are done.

        ``unit_failures`` says why a unit that left no record failed (a
        container killed, a task error). ``status`` is the platform's final
        status: a run cancelled or stopped there stays so.
        """
        failures = dict(unit_failures or {})
        walker = _RecordWalker(self, lambda task: failures.get(task.name), hooks=hooks, run=run)
        return self._finish(walker.run(), status)

    def walk(
        self,
        launch: Callable[[UnitTask], str | None],
        *,
        max_parallel: int = 1,
        hooks: Any = None,
        run: Run | None = None,
    ) -> RunResult:
        """Run the tasks with ``launch`` in dependency order, at most ``max_parallel`` at once.

        ``launch(task)`` starts the unit elsewhere with ``task.env``, blocks
        until it ends, and returns None, or why the unit failed when it may
        have left no record (killed, exit code and the end of its log). Units
        below a failure are skipped as a local run skips them; after
        :meth:`RunRecords.request_stop` nothing more is started.
        """
        walker = _RecordWalker(self, launch, hooks=hooks, run=run, max_workers=max_parallel)
        result = walker.run()
        stopped = self.records.stop_requested()
        return self._finish(result, ExecutionStatus.STOPPED if stopped else None)

    def _finish(self, result: RunResult, status: ExecutionStatus | None) -> RunResult:
        if status is not None and status.is_failed:
            result.status = status
        result.outputs = RunOutputs(self, result.steps)
        return result

    def submission(
        self,
        job_id: str,
        wait: Callable[[float | None], ExecutionStatus],
        *,
        metadata: Mapping[str, Any] | None = None,
        unit_failures: Callable[[], Mapping[str, str]] | None = None,
    ) -> SubmissionResult:
        """A :class:`SubmissionResult` whose ``collect`` reads this run's records."""

        def collect(status: ExecutionStatus | None, hooks: Any = None, run: Run | None = None) -> RunResult:
            failures = unit_failures() if unit_failures is not None and status is not None and status.is_failed else None
            return self.collect(status, failures, hooks=hooks, run=run)

        meta = {"units": [t.name for t in self.tasks], "cached_steps": sorted(self.cached), **dict(metadata or {})}
        return SubmissionResult(job_id, wait, meta, collect=collect)

    def nothing_to_submit(self, hooks: Any = None, run: Run | None = None) -> RunResult:
        """The result of a run whose every unit is cached: nothing is built or submitted."""
        logger.info("run %s: every step is cached; nothing to build or submit", self.run_id)
        return self.collect(None, hooks=hooks, run=run)


class _RecordWalker(PipelineWalker):
    """The local walker's bookkeeping over units whose results are records.

    Blocked inputs, skips below failures and the run's status are decided by
    :class:`~flowyml_core.walker.PipelineWalker` itself, so a remote run reports
    exactly what a local one does; only "running" a unit differs: launch it
    (or not), then read what it left.
    """

    def __init__(self, remote: RemoteRun, launch: Callable[[UnitTask], str | None], *, hooks: Any,
                 run: Run | None, max_workers: int = 1) -> None:
        super().__init__(None, remote.pipeline, remote.run_id, context=remote.context, run=run, hooks=hooks,
                         max_workers=max_workers, unit_runner=self._unit)
        self.remote = remote
        self.launch = launch
        self.task_of = {task.name: task for task in remote.tasks}

    def _assets_of(self, step: Any, result: ExecutionResult) -> dict[str, Any]:
        """None: values stay where the units wrote them; :class:`RunOutputs` loads them on request."""
        return {}

    def _unit(self, _executor: Any, unit: ExecutionUnit, *_args: Any) -> list[ExecutionResult]:
        name = unit_name(unit)
        task = self.task_of.get(name)
        failure = None
        if task is not None:
            stop = self.remote.records.stop_requested()
            # A unit that ran before the stop left records (collecting a run walked elsewhere): report them.
            if stop is not None and not any(self.remote.records.read(s.name) for s in unit_steps(unit)):
                return [ExecutionResult(step_name=s.name, success=True, skipped=True, error=f"not run: {stop}")
                        for s in unit_steps(unit)]
            if stop is None:
                failure = self.launch(task)
        return unit_results(unit, self.remote.cached, self.remote.records, failure)


def unit_results(unit: ExecutionUnit, cached: Mapping[str, StepRecord], records: RunRecords,
                 failure: str | None) -> list[ExecutionResult]:
    """Each step's result from its record; a step with none failed (or was skipped after one that did)."""
    results: list[ExecutionResult] = []
    failed: str | None = None
    name = unit_name(unit)
    for step in unit_steps(unit):
        record = cached.get(step.name) or records.read(step.name)
        if record is not None:
            results.append(record.to_result())
            if record.status == "failed":
                failed = step.name
        elif failed is not None:
            results.append(ExecutionResult(
                step_name=step.name, success=True, skipped=True,
                error=f"skipped: step {failed!r} failed earlier in group {name!r}"))
        else:
            failed = step.name
            results.append(ExecutionResult(
                step_name=step.name, success=False,
                error=failure or f"unit {name!r} left no record of step {step.name!r}: it did not run or did not finish"))
    return results


class RunOutputs(Mapping):
    """A remote run's assets, loaded from the stores the first time each is read.

    The client never holds a value it was not asked for: listing the outputs
    reads nothing, ``outputs["model"]`` loads that one.
    """

    def __init__(self, remote: RemoteRun, steps: Mapping[str, ExecutionResult]) -> None:
        self._remote = remote
        dag = remote.pipeline.dag
        self._names = [asset for name in dag.order if name in steps and steps[name].success
                       and not steps[name].skipped for asset in dag.steps[name].outputs]
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getitem__(self, asset: str) -> Any:
        if asset not in self._names:
            raise KeyError(asset)
        with self._lock:
            if asset not in self._values:
                remote = self._remote
                producer = remote.pipeline.dag.producers[asset]
                record = remote.cached.get(producer) or remote.records.read(producer)
                if record is None:
                    raise KeyError(asset)
                self._values[asset] = remote.records.load_output(
                    record, asset, remote.pipeline.dag.steps[producer], cache_store=remote.cache_store,
                    router=remote.router)
            return self._values[asset]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"RunOutputs({self._names}, loaded on access)"
