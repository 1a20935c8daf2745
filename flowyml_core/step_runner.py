"""``flowyml step-runner``: run execution units of a run started elsewhere.

A remote executor starts it once per unit (in a container, a pod, a job) with
the variables :meth:`flowyml_core.remote.RemoteRun.unit_env` gives:

==========================  ==================================================
FLOWYML_PIPELINE_MODULE     ``module:attribute`` or ``file.py:attribute``
FLOWYML_STEP_NAMES          comma-separated step names of the unit, in order
FLOWYML_RUN_ID              the run's id (records and artifacts are keyed by it)
FLOWYML_EXECUTION_GROUP     the unit's name (group name or step name)
FLOWYML_PIPELINE_NAME       for logs
FLOWYML_STACK_CONFIG        the stack's stores and router, as declared
                            (``${env:…}`` references are read here)
FLOWYML_STACK               the stack's name; looked up in stacks.toml only
                            when FLOWYML_STACK_CONFIG is not set
FLOWYML_CONTEXT             JSON object of run parameters (optional)
FLOWYML_INPUTS              set when the run has initial assets
FLOWYML_SECRETS_FILE        a JSON object of environment variables (the
                            values of the stack's ``${env:…}`` references),
                            loaded before anything else and then deleted
NAME__PARTS, NAME__PART<i>  a variable too long for the platform's limit on
                            one value, in parts (joined back first; see
                            ``flowyml_core.shipping.split_long_values``)
==========================  ==================================================

``FLOWYML_SECRETS_FILE`` lets an orchestrator hand secret values to the unit
without writing them into the container or job spec, where anyone who can
inspect the job reads them: it copies a private file into the container and
names it here. The variables are set in this process's environment, as if the
container had been started with them; the file is removed once read when it
can be (a read-only mount stays).

Steps run with the executor's full semantics (conditions, cache, retries).
Inputs come from the records upstream units left (:mod:`flowyml_core.records`),
never from guessed paths; each step's record is written as soon as it ends.
When the names span several units (a run submitted as one job), they are
walked as the local executor walks them: a failure skips only what depends
on it.

Exit status: 0 when every step succeeded or was skipped, 1 when a step failed
(its record says why), 3 when the unit could not do its work at all (the
pipeline cannot be imported, the stack cannot be built, an input cannot be
read): then the last log line says why, in one line, and the unit's steps are
recorded as failed with that reason when the artifact store can be written.
Logs are JSON lines that Cloud Logging parses into structured entries.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Mapping

from flowyml_core.components import Executor
from flowyml_core.errors import FlowymlError

REQUIRED = ("FLOWYML_PIPELINE_MODULE", "FLOWYML_STEP_NAMES", "FLOWYML_RUN_ID")
SECRETS_FILE_ENV = "FLOWYML_SECRETS_FILE"
#: The unit could not do its work (see the module docstring).
EXIT_UNIT_ERROR = 3
logger = logging.getLogger("flowyml.step_runner")


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line with ``severity`` and ``message`` (Cloud Logging's keys)."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        super().__init__()
        self.labels = dict(labels)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "logger": record.name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            **self.labels,
        }
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class UnitLogHandler(logging.StreamHandler):
    """The step runner's log handler: JSON lines, and what a step itself logs kept with the step's output.

    Locally a step's ``logging`` calls reach the user while the step runs
    (the terminal, or its captured output). Here a JSON line of the unit's
    stream alone is lost with the container, since no record keeps it. So a
    record logged by a non-flowyml logger while a step captures its output in
    this thread is streamed at once, as before (``runs logs --follow`` sees it
    live), and also written into that output as ``LEVEL logger: message`` (the
    command line's format), which travels with the step's record. The lines
    streamed so are counted in :attr:`streamed`, so that relaying the step's
    output afterwards does not stream them twice.
    """

    def __init__(self, labels: Mapping[str, str]) -> None:
        import collections

        super().__init__(sys.stdout)
        self.setFormatter(JsonLineFormatter(labels))
        self.plain = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        self.streamed: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        from flowyml_core.capture import current_capture

        super().emit(record)
        buffer = current_capture()
        if buffer is None or record.name == "flowyml" or record.name.startswith("flowyml."):
            return
        try:
            text = self.plain.format(record)
            buffer.write(text + "\n")
        except Exception:  # noqa: BLE001 - logging's own contract: report through handleError, never raise
            self.handleError(record)
            return
        with self.lock:
            self.streamed.update(text.splitlines())

    def already_streamed(self, line: str) -> bool:
        """Whether ``line`` of a step's output was streamed when it was logged (each streamed line counts once)."""
        with self.lock:
            if self.streamed[line] <= 0:
                return False
            self.streamed[line] -= 1
            return True


def json_log_line(text: str) -> dict[str, Any] | None:
    """``text`` read back as a :class:`JsonLineFormatter` line, or None when it is any other output.

    Log readers (docker, SageMaker, Kubernetes) get what the unit printed; the
    step runner's own lines carry a severity and a time worth showing.
    """
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _configure_logging(labels: Mapping[str, str]) -> None:
    handler = UnitLogHandler(labels)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(environ: Mapping[str, str]) -> int:
    from flowyml_core.pipeline import mark_unit_runner

    mark_unit_runner()  # before the pipeline's module is imported: it must not start a run of its own
    from flowyml_core.shipping import join_split_values

    environ = join_split_values(load_secrets_file(environ))
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise FlowymlError(f"step-runner needs the environment variables {', '.join(missing)} (set by the orchestrator)")
    names = [n.strip() for n in environ["FLOWYML_STEP_NAMES"].split(",") if n.strip()]
    run_id = environ["FLOWYML_RUN_ID"]
    group = environ.get("FLOWYML_EXECUTION_GROUP") or names[0]
    _configure_logging({"run_id": run_id, "execution_group": group, "pipeline": environ.get("FLOWYML_PIPELINE_NAME", "")})
    unit = UnitRunner(environ, names, run_id, group)
    try:
        return unit.run()
    except FlowymlError as exc:
        message = f"unit {group} of run {run_id} cannot run: {exc}"
        unit.record_failure(message)
        logger.error("%s", message)
        return EXIT_UNIT_ERROR


def load_secrets_file(environ: Mapping[str, str]) -> Mapping[str, str]:
    """``environ`` plus the variables of ``FLOWYML_SECRETS_FILE``, also set in ``os.environ``."""
    import os

    path = environ.get(SECRETS_FILE_ENV)
    if not path:
        return environ
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError) as exc:
        raise FlowymlError(f"{SECRETS_FILE_ENV} names {path}, which cannot be read as JSON ({exc}); it is "
                           "written by the orchestrator that started this unit") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise FlowymlError(f"{SECRETS_FILE_ENV} file {path} is not a JSON object of strings")
    try:
        os.remove(path)
    except OSError as exc:  # a read-only mount: the orchestrator removes it
        logger.debug("secrets file %s stays (%s)", path, exc)
    os.environ.update(values)
    return {**environ, **values}


class UnitRunner:
    """One invocation of the step runner: resolve, read inputs, run, record."""

    def __init__(self, environ: Mapping[str, str], names: list[str], run_id: str, group: str) -> None:
        self.environ = environ
        self.names = names
        self.run_id = run_id
        self.group = group
        self.records: Any = None
        self.project_name = "default"

    def run(self) -> int:
        from flowyml_core.records import RunRecords

        stack = self._stack()
        self.records = RunRecords(stack.artifact_store, self.run_id, self.environ.get("FLOWYML_PROJECT_NAME") or "default")
        pipeline = self._pipeline()
        self.records.project_name = pipeline.project_name
        units = self._units(pipeline)
        context = pipeline.context.with_updates(self._params())
        assets, fingerprints, blocked = self._inputs(pipeline, units, stack)
        initial = self._initial(units, stack)
        logger.info("running %s (%s) of run %s on stack %s", self.group, ", ".join(self.names), self.run_id, stack.name)
        return self._walk(pipeline, units, context, stack, assets, fingerprints, blocked, initial)

    # -- set-up ---------------------------------------------------------------------------
    def _stack(self) -> Any:
        from flowyml_core.shipping import STACK_CONFIG_ENV, UNIT_KINDS, stack_from_payload
        from flowyml_core.stacks import StackRegistry

        payload = self.environ.get(STACK_CONFIG_ENV)
        if payload:
            return stack_from_payload(payload, self.environ)
        return StackRegistry.load(self.environ).resolve(self.environ.get("FLOWYML_STACK") or None, kinds=UNIT_KINDS)

    def _pipeline(self) -> Any:
        from flowyml_core.loader import load_pipeline

        reference = self.environ["FLOWYML_PIPELINE_MODULE"]
        try:
            pipeline = load_pipeline(reference).build()
        except FlowymlError as exc:
            raise FlowymlError(f"cannot load pipeline {reference} here ({exc}); the image must hold the project "
                               "and the packages it imports") from None
        unknown = [n for n in self.names if n not in pipeline.dag.steps]
        if unknown:
            raise FlowymlError(f"pipeline {pipeline.name!r} has no step(s) {', '.join(unknown)}: the image holds "
                               "another version of the pipeline than the one submitted")
        return pipeline

    def _params(self) -> dict[str, Any]:
        try:
            params = json.loads(self.environ.get("FLOWYML_CONTEXT") or "{}")
        except json.JSONDecodeError as exc:
            raise FlowymlError(f"FLOWYML_CONTEXT is not a JSON object: {exc}") from None
        if not isinstance(params, dict):
            raise FlowymlError(f"FLOWYML_CONTEXT is not a JSON object: got a {type(params).__name__}")
        return params

    def _units(self, pipeline: Any) -> list[Any]:
        """The execution units the names cover, in order (a group cut to the named steps)."""
        from flowyml_core.grouping import StepGroup, unit_name, unit_steps

        wanted = set(self.names)
        units = []
        for unit in pipeline.execution_units():
            steps = [s for s in unit_steps(unit) if s.name in wanted]
            if not steps:
                continue
            if isinstance(unit, StepGroup) and len(steps) < len(unit.steps):
                unit = StepGroup(unit_name(unit), steps, [s.name for s in steps], unit.aggregated_resources)
            units.append(unit)
        return units

    def _inputs(self, pipeline: Any, units: list[Any], stack: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
        """Values, fingerprints and blocked reasons of what the units need from upstream records."""
        from flowyml_core.grouping import unit_steps
        from flowyml_core.walker import failure_reason

        dag = pipeline.dag
        steps = [s for u in units for s in unit_steps(u)]
        inside = {a for s in steps for a in s.outputs}
        need: list[str] = []
        for step in steps:
            for asset in (*step.inputs, *_condition_assets(step, dag)):
                if asset not in inside and asset not in need:
                    need.append(asset)
        assets: dict[str, Any] = {}
        fingerprints: dict[str, str] = {}
        blocked: dict[str, str] = {}
        stores = {"cache_store": stack.cache_store, "router": stack.router}
        read: dict[str, Any] = {}
        for asset in need:
            producer = dag.producers[asset]
            if producer not in read:
                read[producer] = self.records.read(producer)
            record = read[producer]
            if record is None:
                raise FlowymlError(
                    f"input {asset!r}: step {producer!r} left no record in run {self.run_id} (it has not run yet, "
                    "or ran in another run); units must run after the units they depend on"
                )
            if not record.succeeded:
                blocked[asset] = record.blocks or failure_reason(producer)
                continue
            assets[asset] = self.records.load_output(record, asset, dag.steps[producer], **stores)
            ref = record.outputs.get(asset)
            if ref is not None and ref.fingerprint:
                fingerprints[asset] = ref.fingerprint
        return assets, fingerprints, blocked

    def _initial(self, units: list[Any], stack: Any) -> dict[str, Any]:
        """The run's initial assets that the units' steps take by parameter name."""
        from flowyml_core.grouping import unit_steps
        from flowyml_core.records import INPUTS_RECORD
        from flowyml_core.remote import INPUTS_ENV

        if not self.environ.get(INPUTS_ENV):
            return {}
        record = self.records.read(INPUTS_RECORD)
        if record is None:
            raise FlowymlError(f"run {self.run_id} has initial inputs, but their record is missing")
        params = {p for u in units for s in unit_steps(u) for p in s.param_names}
        return {name: self.records.load_output(record, name, None, cache_store=stack.cache_store, router=stack.router)
                for name in record.outputs if name in params}

    # -- running ---------------------------------------------------------------------------
    def _walk(self, pipeline: Any, units: list[Any], context: Any, stack: Any, assets: dict[str, Any],
              fingerprints: dict[str, str], blocked: dict[str, str], initial: dict[str, Any]) -> int:
        from flowyml_core.grouping import unit_name, unit_steps
        from flowyml_core.walker import PipelineWalker

        unit_of = {s.name: unit_name(u) for u in units for s in unit_steps(u)}
        executor = RecordingExecutor(self.records, unit_of)
        walker = PipelineWalker(
            executor, pipeline, self.run_id, context=context, cache_store=stack.cache_store,
            artifact_store=stack.artifact_store, router=stack.router, units=units, assets=assets,
            fingerprints=fingerprints, blocked=blocked, initial=initial,
        )
        result = walker.run()
        handler = next(iter(logging.getLogger().handlers), None)
        failed = False
        for name, step_result in result.steps.items():
            if name not in executor.written:  # skipped without running: no record yet
                executor.write(pipeline.dag.steps[name], step_result, walker.not_run.get(name))
            if step_result.logs:
                for line in step_result.logs.rstrip("\n").splitlines():
                    if not (isinstance(handler, UnitLogHandler) and handler.already_streamed(line)):
                        logger.info("[%s] %s", name, line)
            if not step_result.success:
                failed = True
                logger.error("step %s failed: %s", name, step_result.error)
            else:
                state = "cached" if step_result.cached else "skipped" if step_result.skipped else "done"
                logger.info("step %s %s in %.3fs %s", name, state, step_result.duration_seconds,
                            json.dumps(step_result.artifact_uris))
        return 1 if failed else 0

    def record_failure(self, message: str) -> None:
        """Record the unit's steps as failed with ``message``, when its records can be written at all."""
        if self.records is None:
            return
        from flowyml_core.records import StepRecord
        from flowyml_core.walker import failure_reason

        for name in self.names:
            try:
                self.records.write(StepRecord(step=name, status="failed", unit=self.group, error=message,
                                              blocks=failure_reason(name)))
            except Exception as exc:  # the store itself is what failed; the log line carries the reason
                logger.warning("could not record the failure of step %s: %s: %s", name, type(exc).__name__, exc)
                return


def _condition_assets(step: Any, dag: Any) -> list[str]:
    """Upstream assets a step's condition may read (it sees every output so far, as locally).

    Names the condition takes that are assets; when it takes ``**kwargs`` or
    names that may be keys of a dict output, every output of the step's
    ancestors (which are all done before it starts).
    """
    if step.condition is None:
        return []
    from flowyml_core.step import signature_names

    names, takes_all = signature_names(step.condition)
    assets = [n for n in names if n in dag.producers]
    unresolved = [n for n in names if n not in dag.producers and n not in step.param_names]
    if takes_all or unresolved:
        ancestors = dag.ancestors()[step.name]
        assets += [a for name, pos in dag.position.items() if ancestors >> pos & 1 for a in dag.steps[name].outputs]
    return assets


class RecordingExecutor(Executor):
    """Runs steps here with the core semantics and records each one as soon as it ends."""

    def __init__(self, records: Any, unit_of: Mapping[str, str]) -> None:
        super().__init__(None)
        self.records = records
        self.unit_of = unit_of
        self.written: set[str] = set()

    def execute_step(self, step: Any, inputs: dict[str, Any], context_params: dict[str, Any],
                     **kwargs: Any) -> Any:
        from flowyml_core.execution import run_step

        result = run_step(step, inputs, context_params, **kwargs)
        self.write(step, result, None, kwargs.get("artifact_store"))
        return result

    def write(self, step: Any, result: Any, not_run: str | None, artifact_store: Any = None) -> None:
        from flowyml_core.records import record_of
        from flowyml_core.walker import failure_reason, skip_reason

        if not result.success:
            blocks = failure_reason(step.name)
        elif result.skipped:
            blocks = skip_reason(step.name, result, not_run)
        else:
            blocks = None
        record = record_of(step, result, self.unit_of.get(step.name, ""), blocks=blocks,
                           artifact_store=artifact_store or self.records.store, run_id=self.records.run_id,
                           project_name=self.records.project_name)
        self.records.write(record)
        self.written.add(step.name)
