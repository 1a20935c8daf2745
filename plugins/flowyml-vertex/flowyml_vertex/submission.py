"""Submitting a run: checks, the image, then a PipelineJob (or one CustomJob).

By default a run is a Vertex AI pipeline with one task per execution unit (a
group, or an ungrouped step), each on its own machine sized from its own
resources. With ``submit = "custom_job"`` one CustomJob runs every step, in
topological order, still through ``flowyml step-runner``.

Everything that can be refused is refused before an image is built (minutes)
or a job is submitted: an unknown pipeline module, a missing or local-path
artifact store, a missing pipeline root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import ExecutionUnit
from flowyml_core.resources import DockerConfig, ResourceConfig
from flowyml_core.results import ExecutionStatus, RunResult, SubmissionResult

from flowyml_vertex.names import display_name, job_id, label_value
from flowyml_vertex.plan import EnvForUnit, TaskPlan, plan_tasks, runner_env

logger = logging.getLogger("flowyml.vertex")


class SubmissionMixin:
    """``run_pipeline`` of :class:`VertexAIOrchestrator`; relies on its ``config``, ``_client`` and ``wait``."""

    config: Any
    _client: Any
    _require_project: Any
    _console_url: Any
    wait: Any

    def run_pipeline(  # type: ignore[override]
        self,
        pipeline: Any,
        run_id: str,
        *,
        context: Any | None = None,
        artifact_store: Any | None = None,
        stack_name: str | None = None,
        pipeline_module: str | None = None,
        resources: ResourceConfig | None = None,
        docker_config: DockerConfig | None = None,
        package_path: str | Path | None = None,
        units: Sequence[ExecutionUnit] | None = None,
        env_for_unit: EnvForUnit | None = None,
        **kwargs: Any,
    ) -> SubmissionResult | RunResult:
        """Submit the pipeline and return its job at once; ``wait()`` polls it to the end.

        ``resources``: the default for units without resources of their own.
        ``units`` (default: all) and ``env_for_unit`` (default: the step
        runner's variables, see :func:`flowyml_vertex.plan.runner_env`) let a
        caller submit only some units, each with the environment it gives.
        When there is no unit to submit, nothing is built or submitted and the
        run is complete.
        """
        from flowyml_core.context import Context

        project = self._require_project()
        pipeline.build()
        cfg = self.config
        single = cfg.submit == "custom_job"
        params = Context.coerce(context).params if context is not None else pipeline.context.params
        context_dir = cfg.build_context
        if docker_config is not None and docker_config.build_context != ".":
            context_dir = docker_config.build_context
        build_context = Path(context_dir)
        explicit_image = (docker_config.image if docker_config else None) or cfg.image
        # Everything that can be refused is checked before an image is built (minutes) and pushed.
        module = container_module(pipeline_module, Path.cwd() if explicit_image else build_context)
        if module is None:
            raise FlowymlError(
                f"pipeline {pipeline.name!r} cannot run on Vertex AI: flowyml does not know the file or module that "
                "defines it, so the containers could not import it. Run it from a file, "
                f"`flowyml run path/to/file.py:pipeline --stack {stack_name or 'STACK'}`, or from a module importable "
                "from the project, `flowyml run package.module:pipeline`, with the pipeline defined at the top "
                "level of that file or module"
            )
        artifact_root = store_url(artifact_store)
        env = dict(cfg.env_vars)
        if artifact_root:
            env["FLOWYML_ARTIFACT_ROOT"] = artifact_root
        if docker_config is not None:
            env.update(docker_config.env_vars)
        plans = plan_tasks(
            pipeline, units=units, base_env=env, default_resources=resources, single_job=single,
            env_for_unit=env_for_unit or runner_env(
                pipeline, run_id=run_id, pipeline_module=module, stack_name=stack_name, context_params=params),
        )
        if not plans:
            logger.info("pipeline %r: every execution unit is done already; nothing to submit", pipeline.name)
            return RunResult(run_id=run_id, status=ExecutionStatus.COMPLETED)
        submitted = sum(len(p.steps) for p in plans)
        logger.info(
            "pipeline %r: %d of its %d steps to run, as %s", pipeline.name, submitted, len(pipeline.steps),
            "one CustomJob" if single else f"a pipeline of {len(plans)} task(s)",
        )
        # One container that runs every step needs no store the others can see.
        one_container = len(plans) == 1 and submitted == len(pipeline.steps)
        check_artifact_store(artifact_store, stack_name, shared_disk=one_container)
        pipeline_root = None if single else self._pipeline_root(artifact_store)
        image = explicit_image or self._build_image(docker_config, build_context)
        labels = {**cfg.labels, "flowyml-run-id": label_value(run_id), "flowyml-pipeline": label_value(pipeline.name)}
        title = display_name(pipeline.name, f"-{run_id}")
        if single:
            return self._submit_custom_job(plans[0], run_id, project, image, title, labels)
        from flowyml_vertex.compile import compile_pipeline_spec

        spec = compile_pipeline_spec(pipeline.name, plans, image, package_path=package_path)
        assert pipeline_root is not None
        return self._submit_pipeline_job(pipeline, run_id, project, spec, title, labels, image, pipeline_root)

    def _build_image(self, docker_config: DockerConfig | None, build_context: Path) -> str:
        """Build the project into an image tagged by its content, push it, and return its reference."""
        if not self.config.registry:
            raise FlowymlError(
                "the vertex executor needs an image: set image (a pre-built image with the project and flowyml "
                "installed) or registry (e.g. europe-west1-docker.pkg.dev/PROJECT/REPO) to build and push one"
            )
        from flowyml_docker.images import BuildSpec, build_and_push, docker_client, image_repository

        cfg = self.config
        spec = BuildSpec(
            context=build_context,
            base_image=(docker_config.base_image if docker_config and docker_config.base_image != DockerConfig().base_image
                        else cfg.base_image),
            requirements=tuple(cfg.requirements) + (tuple(docker_config.requirements) if docker_config else ()),
            dockerfile=(docker_config.dockerfile if docker_config and docker_config.dockerfile else cfg.dockerfile),
            env_vars=dict(cfg.env_vars),
            build_args=dict(docker_config.build_args) if docker_config else {},
            platform=cfg.platform or None,
        )
        repository = image_repository(cfg.registry, cfg.image_name)
        return build_and_push(docker_client(cfg.docker_host), spec, repository)

    def _pipeline_root(self, artifact_store: Any | None) -> str:
        if self.config.staging_bucket:
            return self.config.staging_bucket.rstrip("/")
        root = store_url(artifact_store)
        if root and root.startswith("gs://"):
            return f"{root.rstrip('/')}/_vertex_pipeline_root"
        raise FlowymlError(
            "Vertex AI needs a gs:// pipeline root: set staging_bucket in the vertex executor options "
            "or use a gcs artifact store in the stack"
        )

    def _submit_pipeline_job(
        self, pipeline: Any, run_id: str, project: str, spec: dict[str, Any], title: str,
        labels: dict[str, str], image: str, root: str,
    ) -> SubmissionResult:
        from google.cloud.aiplatform_v1 import types as v1

        from flowyml_vertex.clients import api_errors

        cfg = self.config
        logger.info("running image %s", image)
        job = v1.PipelineJob(
            display_name=title,
            pipeline_spec=spec,
            labels=labels,
            runtime_config=v1.PipelineJob.RuntimeConfig(gcs_output_directory=root),
        )
        _run_as(job, cfg)
        if cfg.encryption_key:
            job.encryption_spec = v1.EncryptionSpec(kms_key_name=cfg.encryption_key)
        pipeline_job_id = job_id(pipeline.name, run_id)
        parent = f"projects/{project}/locations/{cfg.region}"
        client = self._client("pipeline", cfg.region)
        with api_errors(f"submitting PipelineJob {pipeline_job_id}", cfg.endpoint_for()):
            created = client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id=pipeline_job_id)
        name = created.name
        console = self._console_url("pipeline", name)
        logger.info("submitted PipelineJob %s (%s)", name, console)
        return SubmissionResult(
            job_id=name,
            wait_for_completion=lambda timeout: self.wait(name, timeout),
            metadata={
                "platform": "vertex_ai", "mode": "kfp_pipeline", "project": project, "region": cfg.region,
                "job_name": title, "image": image, "pipeline_root": root, "console_url": console,
                "tasks": len(spec["root"]["dag"]["tasks"]),
            },
        )

    def _submit_custom_job(
        self, plan: TaskPlan, run_id: str, project: str, image: str, title: str, labels: dict[str, str],
    ) -> SubmissionResult:
        from google.cloud.aiplatform_v1 import types as v1

        from flowyml_vertex.clients import api_errors
        from flowyml_vertex.compile import STEP_RUNNER_COMMAND
        from flowyml_vertex.machines import choose_machine_type, gpu_request

        cfg = self.config
        resources = plan.resources
        machine = v1.MachineSpec(machine_type=choose_machine_type(resources, cfg.machine_type))
        gpu, count = gpu_request(resources)
        if gpu:
            machine.accelerator_type = v1.AcceleratorType[gpu]
            machine.accelerator_count = count
        pool = v1.WorkerPoolSpec(
            machine_spec=machine, replica_count=1,
            container_spec=v1.ContainerSpec(
                image_uri=image, command=list(STEP_RUNNER_COMMAND),
                env=[v1.EnvVar(name=k, value=str(v)) for k, v in plan.env.items()],
            ),
        )
        if resources is not None and resources.disk_size:
            from flowyml_core.resources import parse_memory

            pool.disk_spec = v1.DiskSpec(boot_disk_size_gb=max(100, -(-parse_memory(resources.disk_size) // 10**9)))
        job_spec = v1.CustomJobSpec(worker_pool_specs=[pool])
        _run_as(job_spec, cfg)
        if cfg.staging_bucket:
            job_spec.base_output_directory = v1.GcsDestination(output_uri_prefix=cfg.staging_bucket)
        job = v1.CustomJob(display_name=title, job_spec=job_spec, labels=labels)
        if cfg.encryption_key:
            job.encryption_spec = v1.EncryptionSpec(kms_key_name=cfg.encryption_key)
        client = self._client("custom", cfg.region)
        with api_errors(f"submitting CustomJob {title}", cfg.endpoint_for()):
            created = client.create_custom_job(parent=f"projects/{project}/locations/{cfg.region}", custom_job=job)
        name = created.name
        console = self._console_url("custom", name)
        logger.info("submitted CustomJob %s on %s (%s)", name, machine.machine_type, console)
        return SubmissionResult(
            job_id=name,
            wait_for_completion=lambda timeout: self.wait(name, timeout),
            metadata={
                "platform": "vertex_ai", "mode": "single_job", "project": project, "region": cfg.region,
                "job_name": title, "image": image, "machine_type": machine.machine_type, "console_url": console,
                "steps": list(plan.steps),
            },
        )


def _run_as(target: Any, cfg: Any) -> None:
    """The service account and VPC network a job runs with (a PipelineJob or a CustomJobSpec: same fields)."""
    if cfg.service_account:
        target.service_account = cfg.service_account
    if cfg.network:
        target.network = cfg.network


def store_url(store: Any | None) -> str | None:
    """The root URL of an artifact store, when its config declares one (``url`` or ``path``)."""
    config = getattr(store, "config", None)
    for attr in ("url", "path", "root"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def is_local_path(url: str) -> bool:
    """A path on this machine's disk (``file://`` or no scheme), which no Vertex container sees."""
    return "://" not in url or url.startswith("file://")


def check_artifact_store(store: Any | None, stack_name: str | None, *, shared_disk: bool) -> None:
    """Refuse a stack whose containers could not hand data to each other.

    Units hand their outputs over through the artifact store. Each Vertex
    container has its own disk, so a local path only works when one container
    runs every step of the pipeline (``shared_disk``).
    """
    stack = f"stack {stack_name!r}" if stack_name else "the stack"
    if store is None:
        raise FlowymlError(
            f"{stack} has no artifact_store: steps on Vertex AI exchange data through one "
            "(e.g. artifact_store = { flavor = \"gcs\", url = \"gs://BUCKET/flowyml\" })"
        )
    root = store_url(store)
    if root and is_local_path(root) and not shared_disk:
        raise FlowymlError(
            f"{stack} keeps artifacts at the local path {root!r}, but this run starts several Vertex AI containers, "
            "each with its own disk, so no unit would see another's outputs; use a gcs artifact store "
            "(artifact_store = { flavor = \"gcs\", url = \"gs://BUCKET/flowyml\" })"
        )


def container_module(module: str | None, root: Path) -> str | None:
    """The pipeline reference as the container sees it (project at its working directory).

    ``file.py:attr`` paths are made relative to the project root; a file outside
    the project would not be in the image, which is an error.
    """
    if not module:
        return None
    source, sep, attr = module.rpartition(":")
    if not sep or not (source.endswith(".py") or "/" in source or os.sep in source):
        return module
    path = Path(source)
    absolute = path if path.is_absolute() else (Path.cwd() / path)
    try:
        relative = absolute.resolve().relative_to(root.resolve())
    except ValueError:
        if path.is_absolute():
            raise FlowymlError(
                f"pipeline file {source} is outside the project directory {root.resolve()}, so the containers "
                "cannot import it; run from the project directory with a relative path"
            ) from None
        return module
    return f"{relative.as_posix()}:{attr}"
