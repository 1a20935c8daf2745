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
from pathlib import Path
from typing import Any, Mapping, Sequence

from flowyml_core.container import DockerConfig, ImageSource
from flowyml_core.errors import FlowymlError
from flowyml_core.remote import module_in_project, store_url, warn_unshared_signing_keys
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import RunResult, SubmissionResult

from flowyml_vertex.names import display_name, job_id, label_value
from flowyml_vertex.plan import TaskPlan, plan_tasks

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
        stack: Any | None = None,
        artifact_store: Any | None = None,
        cache_store: Any | None = None,
        router: Any | None = None,
        stack_name: str | None = None,
        pipeline_module: str | None = None,
        resources: ResourceConfig | None = None,
        docker_config: DockerConfig | None = None,
        package_path: str | Path | None = None,
        inputs: Mapping[str, Any] | None = None,
        hooks: Any | None = None,
        run: Any | None = None,
        **kwargs: Any,
    ) -> SubmissionResult | RunResult:
        """Submit the units that must run and return the job at once; ``wait()`` polls it to the end.

        The core's :class:`~flowyml_core.remote.RemoteRun` decides what runs:
        units whose steps would all hit the cache are not submitted, and when
        none is left nothing is built or submitted. ``resources``: the default
        for units without resources of their own; ``inputs``: initial assets.
        """
        from flowyml_core.remote import RemoteRun

        project = self._require_project()
        pipeline.build()
        cfg = self.config
        single = cfg.submit == "custom_job"
        if stack is not None:
            artifact_store, cache_store, router, stack_name = (
                stack.artifact_store, stack.cache_store, stack.router, stack.name)
        source = ImageSource.choose(cfg, docker_config)
        # Everything that can be refused is checked before an image is built (minutes) and pushed.
        if not pipeline_module:
            raise FlowymlError(
                f"pipeline {pipeline.name!r} cannot run on Vertex AI: flowyml does not know the file or module that "
                "defines it, so the containers could not import it. Run it from a file, "
                f"`flowyml run path/to/file.py:pipeline --stack {stack_name or 'STACK'}`, or from a module importable "
                "from the project, `flowyml run package.module:pipeline`, with the pipeline defined at the top "
                "level of that file or module"
            )
        module = module_in_project(pipeline_module, source.project_root)
        check_artifact_store(artifact_store, stack_name, shared_disk=single)
        warn_unshared_signing_keys({"artifact_store": artifact_store, "cache_store": cache_store}, stack_name, "Vertex AI")
        # One container that runs every step may keep a local store, and then it must run every step:
        # records the client wrote on this machine's disk could not be read there.
        local_store = is_local_path(store_url(artifact_store) or "")
        remote = RemoteRun(
            pipeline, run_id, pipeline_module=module, context=context, stack=stack, cache_store=cache_store,
            artifact_store=artifact_store, router=router, stack_name=stack_name, inputs=inputs, resources=resources,
            check_cache=not (single and local_store),
        )
        if not remote.tasks:
            return remote.nothing_to_submit(hooks=hooks, run=run)
        plans = plan_tasks(pipeline, units=[task.unit for task in remote.tasks], env_for_unit=remote.unit_env,
                           base_env=source.env_vars, default_resources=resources, single_job=single)
        submitted = sum(len(p.steps) for p in plans)
        logger.info(
            "pipeline %r: %d of its %d steps to run, as %s", pipeline.name, submitted, len(pipeline.steps),
            "one CustomJob" if single else f"a pipeline of {len(plans)} task(s)",
        )
        pipeline_root = None if single else self._pipeline_root(artifact_store)
        image = source.image or self._build_image(docker_config, source.build_context)
        labels = {**cfg.labels, "flowyml-run-id": label_value(run_id), "flowyml-pipeline": label_value(pipeline.name)}
        title = display_name(pipeline.name, f"-{run_id}")
        if single:
            job = self._submit_custom_job(plans[0], run_id, project, image, title, labels)
        else:
            from flowyml_vertex.compile import compile_pipeline_spec

            spec = compile_pipeline_spec(pipeline.name, plans, image, package_path=package_path)
            assert pipeline_root is not None
            job = self._submit_pipeline_job(pipeline, run_id, project, spec, title, labels, image, pipeline_root)
        units = [task.name for task in remote.tasks]
        return remote.submission(job.job_id, job.wait, metadata=job.metadata,
                                 unit_failures=lambda: self.unit_failures(job.job_id, plans, units))

    def unit_failures(self, job_id: str, plans: Sequence[TaskPlan], units: Sequence[str]) -> dict[str, str]:
        """Why each failed unit failed, as Vertex and the task's logs tell it (for units that left no record)."""
        details = self.get_run_details(job_id)
        if details.get("kind") != "pipeline_job":
            reason = details.get("error") or f"the CustomJob ended {details.get('status')}"
            return dict.fromkeys(units, reason)
        unit_of = {name: plan.unit for plan in plans for name in (plan.unit, plan.key, plan.display_name)}
        return {unit_of.get(name, name): reason or "the task failed"
                for name, reason in (details.get("failed_tasks") or {}).items()}

    def _build_image(self, docker_config: DockerConfig | None, build_context: Path) -> str:
        """Build the project into an image tagged by its content, push it, and return its reference."""
        if not self.config.registry:
            raise FlowymlError(
                "the vertex executor needs an image: set image (a pre-built image with the project and flowyml "
                "installed) or registry (e.g. europe-west1-docker.pkg.dev/PROJECT/REPO) to build and push one"
            )
        from flowyml_docker.images import build_for_executor

        return build_for_executor(self.config, docker_config, build_context)

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
