"""Compiling planned tasks (:mod:`flowyml_vertex.plan`) into a KFP pipeline spec for Vertex AI Pipelines.

Each planned task (an execution unit: a standalone step or a step group)
becomes one container task that runs ``flowyml step-runner``; the
``FLOWYML_*`` variables tell the runner which steps of which pipeline, run and
stack it is. Steps exchange data through the stack's artifact store, so the
only edges KFP needs are ordering edges (``.after()``).

Each unit gets its own component (named after the unit) so that task keys,
executors and console labels read like the pipeline, not ``step-runner-7``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from flowyml_core.errors import FlowymlError
from flowyml_core.resources import ResourceConfig

from flowyml_vertex.machines import gpu_request, machine_shape
from flowyml_vertex.names import resource_id
from flowyml_vertex.plan import TaskPlan

logger = logging.getLogger("flowyml.vertex")

STEP_RUNNER_COMMAND = ("flowyml", "step-runner")


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


def apply_resources(task: Any, resources: ResourceConfig | None, unit: str = "") -> None:
    """CPU, memory and accelerator limits of one task: Vertex picks each task's machine from them.

    KFP tasks take no machine type, so a ``machine_type`` becomes that
    machine's CPU and memory (when the step does not give them); a disk size
    cannot be set on a pipeline task, which is said rather than ignored.
    """
    if resources is None:
        return
    cpu, memory = resources.cpu, resources.memory
    if resources.machine_type and not (cpu and memory):
        shape = machine_shape(resources.machine_type)
        if shape is None:
            raise FlowymlError(
                f"unit {unit!r} asks for machine_type {resources.machine_type!r}, which flowyml cannot translate "
                "into the CPU and memory limits a Vertex AI pipeline task takes; give cpu and memory in its "
                "resources instead (or use submit = \"custom_job\", which takes machine types)"
            )
        cpu = cpu or str(shape.cpus)
        memory = memory or f"{shape.memory_gib:g}Gi"
    if cpu:
        task.set_cpu_limit(str(cpu))
    if memory:
        task.set_memory_limit(str(memory))
    gpu, count = gpu_request(resources)
    if gpu:
        task.set_accelerator_type(gpu).set_accelerator_limit(count)
    if resources.disk_size:
        logger.warning(
            "unit %r asks for disk_size %s: Vertex AI pipeline tasks have a fixed boot disk, so it is not applied "
            "(submit = \"custom_job\" sets the disk)", unit, resources.disk_size,
        )


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

    @dsl.pipeline(name=resource_id(pipeline_name), description=description)
    def flowyml_pipeline():
        tasks: dict[str, Any] = {}
        for plan in plans:
            task = _component(plan.key, image)()
            task.set_display_name(plan.display_name)
            task.set_caching_options(False)  # flowyml's own cache decides what reruns
            _set_env(task, plan.env)
            apply_resources(task, plan.resources, plan.unit)
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
