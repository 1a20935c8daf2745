"""Compiling a flowyml pipeline into a KFP pipeline spec for Vertex AI Pipelines.

Each execution unit (a standalone step or a step group) becomes one container
task that runs ``flowyml step-runner``; the ``FLOWYML_*`` variables tell the
runner which steps of which pipeline, run and stack it is. Steps exchange data
through the stack's artifact store, so the only edges KFP needs are ordering
edges (``.after()``), taken from the flowyml DAG.

Each unit gets its own component (named after the unit) so that task keys,
executors and console labels read like the pipeline, not ``step-runner-7``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import attrs

from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import StepGroup, unit_name, unit_steps
from flowyml_core.resources import ResourceConfig

from flowyml_vertex.machines import gpu_request

STEP_RUNNER_COMMAND = ("flowyml", "step-runner")


def kfp_name(text: str, limit: int = 128) -> str:
    """KFP/Vertex resource-name form: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalnum():
        name = f"x-{name}".strip("-")
    return name[:limit].rstrip("-")


@attrs.define(frozen=True)
class TaskPlan:
    """One container task: the unit it runs, its KFP key and what it needs."""

    unit: str
    key: str
    steps: tuple[str, ...]
    after: tuple[str, ...]
    env: dict[str, str]
    resources: ResourceConfig | None


def unit_resources(unit: Any) -> ResourceConfig | None:
    if isinstance(unit, StepGroup):
        return unit.aggregated_resources
    return unit.resources


def context_json(params: Mapping[str, Any]) -> str:
    """Run parameters as the JSON object step runners read from FLOWYML_CONTEXT."""
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
            f"run parameter(s) {', '.join(sorted(bad)) or '?'} cannot be sent to Vertex AI: parameters of remote "
            f"runs must be JSON values (str, int, float, bool, None, lists, dicts) ({exc})"
        ) from None


def plan_tasks(
    pipeline: Any,
    *,
    run_id: str,
    pipeline_module: str,
    stack_name: str | None,
    context_params: Mapping[str, Any] | None = None,
    env_vars: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> list[TaskPlan]:
    """The tasks of the KFP pipeline, in execution-unit order, with their dependencies."""
    units = pipeline.execution_units()
    owner: dict[str, str] = {}
    for unit in units:
        for step in unit_steps(unit):
            owner[step.name] = unit_name(unit)
    keys: dict[str, str] = {}
    used: set[str] = set()
    for unit in units:
        base = kfp_name(unit_name(unit), 60)
        if not base[:1].isalpha():  # task keys come from Python identifiers
            base = f"u-{base}"
        key, n = base, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        keys[unit_name(unit)] = key

    params_json = context_json(context_params or {})
    plans = []
    for unit in units:
        name = unit_name(unit)
        steps = tuple(s.name for s in unit_steps(unit))
        deps: list[str] = []
        for step in steps:
            for dep in pipeline.dag.get_dependencies(step):
                dep_unit = owner[dep]
                if dep_unit != name and keys[dep_unit] not in deps:
                    deps.append(keys[dep_unit])
        env = {str(k): str(v) for k, v in (env_vars or {}).items()}
        env.update(extra_env or {})
        env.update({
            "PYTHONUNBUFFERED": "1",
            "FLOWYML_PIPELINE_MODULE": pipeline_module,
            "FLOWYML_STEP_NAMES": ",".join(steps),
            "FLOWYML_RUN_ID": run_id,
            "FLOWYML_EXECUTION_GROUP": name,
            "FLOWYML_PIPELINE_NAME": pipeline.name,
            "FLOWYML_CONTEXT": params_json,
        })
        if stack_name:
            env["FLOWYML_STACK"] = stack_name
        plans.append(TaskPlan(name, keys[name], steps, tuple(deps), env, unit_resources(unit)))
    return plans


def _component(key: str, image: str) -> Any:
    from kfp import dsl

    def runner():  # the unit's container: always `flowyml step-runner`, configured by env
        return dsl.ContainerSpec(image=image, command=list(STEP_RUNNER_COMMAND))

    ident = re.sub(r"\W", "_", key)
    runner.__name__ = runner.__qualname__ = ident
    return dsl.container_component(runner)


def _set_env(task: Any, env: dict[str, str]) -> None:
    """Set the task's environment with one ``set_env_variable`` call.

    KFP runs ``inspect.stack()`` on every task setter (≈0.15 s each in a process
    with the Google SDKs loaded, ~10 variables per task): the first variable
    goes through the public method, which validates the task and creates the
    env mapping, and the rest join that mapping. The compiled-YAML tests check
    that every variable arrives.
    """
    items = list(env.items())
    if not items:
        return
    task.set_env_variable(*items[0])
    task.container_spec.env.update(dict(items[1:]))


def apply_resources(task: Any, resources: ResourceConfig | None) -> None:
    if resources is None:
        return
    if resources.cpu:
        task.set_cpu_limit(str(resources.cpu))
    if resources.memory:
        task.set_memory_limit(str(resources.memory))
    gpu, count = gpu_request(resources)
    if gpu:
        task.set_accelerator_type(gpu).set_accelerator_limit(count)


def compile_pipeline_spec(
    pipeline_name: str,
    plans: list[TaskPlan],
    image: str,
    package_path: str | Path | None = None,
    description: str = "flowyml pipeline",
) -> dict[str, Any]:
    """Compile with KFP and return the pipeline spec, as loaded back from the YAML KFP wrote.

    The YAML file is the artefact Vertex would be given: reading it back (rather
    than trusting in-memory objects) is what proves it is complete. With
    ``package_path`` it is kept there.
    """
    try:
        import yaml
        from kfp import compiler, dsl
    except ImportError as exc:
        raise FlowymlError(
            f"compiling for Vertex AI Pipelines needs kfp ({exc}); pip install flowyml-vertex "
            "--find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
        ) from exc
    if not plans:
        raise FlowymlError(f"pipeline {pipeline_name!r} has no steps to submit")

    @dsl.pipeline(name=kfp_name(pipeline_name), description=description)
    def flowyml_pipeline():
        tasks: dict[str, Any] = {}
        for plan in plans:
            task = _component(plan.key, image)()
            task.set_display_name(plan.unit)
            task.set_caching_options(False)  # flowyml's own cache decides what reruns
            _set_env(task, plan.env)
            apply_resources(task, plan.resources)
            for dep in plan.after:
                task.after(tasks[dep])
            tasks[plan.key] = task

    if package_path is None:
        with tempfile.TemporaryDirectory(prefix="flowyml-kfp-") as tmp:
            path = Path(tmp) / "pipeline.yaml"
            compiler.Compiler().compile(flowyml_pipeline, str(path))
            text = path.read_text(encoding="utf-8")
    else:
        path = Path(package_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(flowyml_pipeline, str(path))
        text = path.read_text(encoding="utf-8")
    documents = [d for d in yaml.safe_load_all(text) if d]
    spec = documents[0]
    keys = set(spec["root"]["dag"]["tasks"])
    expected = {p.key for p in plans}
    if keys != expected:  # KFP renamed a task: .after() and the details would not line up
        raise FlowymlError(f"KFP compiled tasks {sorted(keys)} but flowyml planned {sorted(expected)}")
    return spec
