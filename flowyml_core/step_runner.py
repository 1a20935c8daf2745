"""``flowyml step-runner``: run one execution unit inside a container.

Remote orchestrators start one container per execution unit with these
variables:

==========================  ==================================================
FLOWYML_PIPELINE_MODULE     ``module:attribute`` or ``file.py:attribute``
FLOWYML_STEP_NAMES          comma-separated step names of the unit, in order
FLOWYML_RUN_ID              the run's id (artifact paths are keyed by it)
FLOWYML_EXECUTION_GROUP     the unit's name (group name or step name)
FLOWYML_PIPELINE_NAME       for logs
FLOWYML_STACK               the stack whose artifact and cache stores to use
FLOWYML_CONTEXT             JSON object of run parameters (optional)
==========================  ==================================================

Unlike the seed's runner, steps run with the executor's full semantics
(conditions, cache, retries), inputs are read from the stack's artifact store
(a missing input is an error that names it) and outputs are written there.
Logs are JSON lines that Cloud Logging parses into structured entries.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Mapping

from flowyml_core.errors import FlowymlError

REQUIRED = ("FLOWYML_PIPELINE_MODULE", "FLOWYML_STEP_NAMES", "FLOWYML_RUN_ID")
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


def _configure_logging(labels: Mapping[str, str]) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter(labels))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(environ: Mapping[str, str]) -> int:
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise FlowymlError(f"step-runner needs the environment variables {', '.join(missing)} (set by the orchestrator)")
    from flowyml_core.pipeline import mark_unit_runner

    mark_unit_runner()  # before the pipeline's module is imported: it must not start a run of its own
    names = [n.strip() for n in environ["FLOWYML_STEP_NAMES"].split(",") if n.strip()]
    run_id = environ["FLOWYML_RUN_ID"]
    group = environ.get("FLOWYML_EXECUTION_GROUP") or names[0]
    _configure_logging({"run_id": run_id, "execution_group": group, "pipeline": environ.get("FLOWYML_PIPELINE_NAME", "")})
    try:
        return run_unit(environ, names, run_id, group)
    except FlowymlError as exc:
        logger.error("%s", exc)
        return 1


def run_unit(environ: Mapping[str, str], names: list[str], run_id: str, group: str) -> int:
    from flowyml_core.context import Context
    from flowyml_core.execution import run_step, run_step_group
    from flowyml_core.grouping import StepGroup
    from flowyml_core.loader import load_pipeline
    from flowyml_core.stacks import StackRegistry

    pipeline = load_pipeline(environ["FLOWYML_PIPELINE_MODULE"]).build()
    unknown = [n for n in names if n not in pipeline.dag.steps]
    if unknown:
        raise FlowymlError(f"pipeline {pipeline.name!r} has no step(s) {', '.join(unknown)}")
    stack = StackRegistry.load(environ).resolve(
        environ.get("FLOWYML_STACK") or None, kinds=("artifact_store", "cache_store", "router")
    )
    store = stack.artifact_store
    if store is None:
        raise FlowymlError(f"stack {stack.name!r} has no artifact_store; remote steps exchange data through one")
    try:
        params = json.loads(environ.get("FLOWYML_CONTEXT") or "{}")
    except json.JSONDecodeError as exc:
        raise FlowymlError(f"FLOWYML_CONTEXT is not a JSON object: {exc}") from None
    if not isinstance(params, dict):
        raise FlowymlError(f"FLOWYML_CONTEXT is not a JSON object: got a {type(params).__name__}")
    context = pipeline.context.with_updates(params)
    steps = [pipeline.dag.steps[n] for n in names]
    inputs = _load_inputs(pipeline, steps, store, run_id)
    common = {
        "cache_store": stack.cache_store,
        "artifact_store": store,
        "router": stack.router,
        "run_id": run_id,
        "project_name": pipeline.project_name,
    }
    logger.info("running %s (%s) of run %s on stack %s", group, ", ".join(names), run_id, stack.name)
    if len(steps) == 1:
        step = steps[0]
        from flowyml_core.execution import bind_inputs, step_params

        kwargs, fps = bind_inputs(step, inputs)
        results = [run_step(step, kwargs, step_params(Context.coerce(context), step), all_outputs=inputs,
                            input_fingerprints=fps, **common)]
    else:
        unit = StepGroup(group, steps, names)
        results = run_step_group(run_step, unit, inputs, context=context, **common)
    failed = False
    for result in results:
        if result.logs:
            for line in result.logs.rstrip("\n").splitlines():
                logger.info("[%s] %s", result.step_name, line)
        if not result.success:
            failed = True
            logger.error("step %s failed: %s", result.step_name, result.error)
        else:
            state = "cached" if result.cached else "skipped" if result.skipped else "done"
            logger.info("step %s %s in %.3fs %s", result.step_name, state, result.duration_seconds,
                        json.dumps(result.artifact_uris))
    return 1 if failed else 0


def _load_inputs(pipeline: Any, steps: list[Any], store: Any, run_id: str) -> dict[str, Any]:
    inside = {a for s in steps for a in s.outputs}
    inputs: dict[str, Any] = {}
    for step in steps:
        for asset in step.inputs:
            if asset in inside or asset in inputs:
                continue
            producer = pipeline.dag.producers[asset]
            uri = store.uri_for(run_id, producer, asset, pipeline.project_name)
            try:
                inputs[asset] = store.load(uri)
            except FileNotFoundError:
                raise FlowymlError(
                    f"input {asset!r} of step {step.name!r} was not found at {uri}: "
                    f"step {producer!r} has not written it in run {run_id}"
                ) from None
    return inputs
