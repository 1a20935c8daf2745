"""``VertexAIOrchestrator``: flowyml pipelines as Vertex AI Pipelines runs.

``run_pipeline`` turns the pipeline's execution units into a KFP pipeline with
one container task per unit, each running ``flowyml step-runner`` in an image
that holds the project (used as given, or built and pushed with the docker
SDK), submits it as a ``PipelineJob`` and returns at once. Without execution
groups, or without a pipeline module the containers could import, the whole
run is one ``CustomJob`` instead.

Every other method takes a job id and dispatches on its kind: full resource
names contain ``/pipelineJobs/`` or ``/customJobs/`` (the seed treated every id
as a CustomJob, so it could neither see nor stop its own pipeline runs).

This module imports no Google, KFP or Docker code at import time; building the
orchestrator from a stack does not either. They load on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import StepGroup
from flowyml_core.resources import DockerConfig, ResourceConfig
from flowyml_core.results import ExecutionStatus, SubmissionResult

from flowyml_vertex.config import VertexConfig
from flowyml_vertex.states import TASK_STATES, JobKind, map_state, parse_job_name

logger = logging.getLogger("flowyml.vertex")

#: Consecutive transient API errors tolerated while polling before giving up.
MAX_TRANSIENT_ERRORS = 5
#: Longest pause before the last log read of a finished job (log ingestion lag).
LOG_DRAIN_SECONDS = 5.0
PIPELINE_LOG_RESOURCE = "aiplatform.googleapis.com/PipelineJob"
CUSTOM_JOB_LOG_RESOURCE = "ml_job"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _sort_time(value: Any) -> float:
    return value.timestamp() if value else float("inf")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class VertexAIOrchestrator(RemoteOrchestrator):
    """Runs pipelines on Vertex AI Pipelines and tracks them by resource name."""

    def __init__(self, config: VertexConfig | None = None) -> None:
        super().__init__(config if config is not None else VertexConfig())
        self.config: VertexConfig
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # -- properties the seed exposed ------------------------------------------------
    @property
    def project_id(self) -> str | None:
        return self.config.project_id

    @property
    def region(self) -> str:
        return self.config.region

    # -- checks ---------------------------------------------------------------------
    def validate(self) -> None:
        """Fail with one message listing what is missing before anything is submitted."""
        import importlib.util

        problems = []
        if not self.config.project_id:
            problems.append("project_id is not set (the Google Cloud project to run in, e.g. project_id = \"acme-ml\")")
        missing = [m for m in ("google.cloud.aiplatform_v1", "google.cloud.logging", "kfp") if not _has_module(importlib.util, m)]
        if missing:
            problems.append(
                f"the Vertex AI SDKs are not installed ({', '.join(missing)} missing); pip install flowyml-vertex "
                "--find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
            )
        if not self.config.image and not self.config.registry:
            problems.append("neither image (a pre-built image) nor registry (where to push a built one) is set")
        elif not self.config.image and not _has_module(importlib.util, "docker"):
            problems.append("building the image needs the docker SDK (pip install docker), or set image")
        if problems:
            raise FlowymlError("vertex executor: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({
            "type": "vertex",
            "console_url": f"https://console.cloud.google.com/vertex-ai/pipelines/runs?project={self.config.project_id}",
        })
        return data

    # -- clients --------------------------------------------------------------------
    def _client(self, kind: JobKind, region: str) -> Any:
        from flowyml_vertex.clients import vertex_client

        key = (kind, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = vertex_client(kind, self.config.endpoint_for(region))
            return client

    def _logging(self, project: str) -> Any:
        from flowyml_vertex.clients import logging_client

        key = ("logging", project)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = logging_client(project, self.config.effective_logging_endpoint)
            return client

    def _require_project(self) -> str:
        if not self.config.project_id:
            raise FlowymlError("the vertex executor needs project_id (the Google Cloud project to run in) in its stack options")
        return self.config.project_id

    # -- submission -----------------------------------------------------------------
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
        **kwargs: Any,
    ) -> SubmissionResult:
        """Submit the pipeline and return its job at once; ``wait()`` polls it to the end."""
        from flowyml_core.context import Context

        project = self._require_project()
        pipeline.build()
        units = pipeline.execution_units()
        groups = [u for u in units if isinstance(u, StepGroup)]
        params = Context.coerce(context).params if context is not None else pipeline.context.params
        logger.info(
            "pipeline %r: %d execution units (%d groups, %d standalone steps)",
            pipeline.name, len(units), len(groups), len(units) - len(groups),
        )
        context_dir = self.config.build_context
        if docker_config is not None and docker_config.build_context != ".":
            context_dir = docker_config.build_context
        build_context = Path(context_dir)
        explicit_image = (docker_config.image if docker_config else None) or self.config.image
        # Everything that can be refused is checked before an image is built (minutes) and pushed.
        module = _container_module(pipeline_module, Path.cwd() if explicit_image else build_context)
        artifact_root = _store_url(artifact_store)
        if artifact_store is None and module:
            raise FlowymlError(
                f"stack {stack_name!r} has no artifact_store: steps on Vertex AI exchange data through one "
                "(e.g. artifact_store = { flavor = \"gcs\", url = \"gs://BUCKET/flowyml\" })"
            )
        if artifact_root and "://" not in artifact_root:
            logger.warning(
                "artifact store root %s is a local path: each Vertex AI container has its own disk, so steps in "
                "different units will not see each other's outputs (use a gcs artifact store)", artifact_root,
            )
        as_pipeline = bool(groups and module)
        pipeline_root = self._pipeline_root(artifact_store) if as_pipeline else None
        image = explicit_image or self._build_image(docker_config, build_context)
        extra_env = {"FLOWYML_ARTIFACT_ROOT": artifact_root} if artifact_root else {}
        if docker_config is not None:
            extra_env.update(docker_config.env_vars)
        display_name = f"{pipeline.name}-{run_id[:8]}"
        labels = {**self.config.labels, "flowyml-run-id": _label(run_id), "flowyml-pipeline": _label(pipeline.name)}

        if not as_pipeline:
            why = "it has no execution groups" if not groups else "its module is unknown (run it from a file or module)"
            logger.info("pipeline %r runs as a single CustomJob because %s", pipeline.name, why)
            return self._submit_custom_job(
                pipeline, run_id, project, image, module, params, stack_name, extra_env, display_name, labels,
                resources, docker_config,
            )

        from flowyml_vertex.compile import compile_pipeline_spec, plan_tasks

        plans = plan_tasks(
            pipeline, run_id=run_id, pipeline_module=module, stack_name=stack_name, context_params=params,
            env_vars=self.config.env_vars, extra_env=extra_env,
        )
        spec = compile_pipeline_spec(pipeline.name, plans, image, package_path=package_path)
        assert pipeline_root is not None
        return self._submit_pipeline_job(pipeline, run_id, project, spec, display_name, labels, image, pipeline_root)

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
        root = _store_url(artifact_store)
        if root and root.startswith("gs://"):
            return f"{root.rstrip('/')}/_vertex_pipeline_root"
        raise FlowymlError(
            "Vertex AI needs a gs:// pipeline root: set staging_bucket in the vertex executor options "
            "or use a gcs artifact store in the stack"
        )

    def _submit_pipeline_job(
        self, pipeline: Any, run_id: str, project: str, spec: dict[str, Any], display_name: str,
        labels: dict[str, str], image: str, root: str,
    ) -> SubmissionResult:
        from google.cloud.aiplatform_v1 import types as v1

        from flowyml_vertex.clients import api_errors
        from flowyml_vertex.compile import kfp_name

        cfg = self.config
        logger.info("running image %s", image)
        job = v1.PipelineJob(
            display_name=display_name,
            pipeline_spec=spec,
            labels=labels,
            runtime_config=v1.PipelineJob.RuntimeConfig(gcs_output_directory=root),
        )
        if cfg.service_account:
            job.service_account = cfg.service_account
        if cfg.network:
            job.network = cfg.network
        if cfg.encryption_key:
            job.encryption_spec = v1.EncryptionSpec(kms_key_name=cfg.encryption_key)
        job_id = kfp_name(f"{pipeline.name}-{run_id}")
        parent = f"projects/{project}/locations/{cfg.region}"
        client = self._client("pipeline", cfg.region)
        with api_errors(f"submitting PipelineJob {job_id}", cfg.endpoint_for()):
            created = client.create_pipeline_job(parent=parent, pipeline_job=job, pipeline_job_id=job_id)
        name = created.name
        console = self._console_url("pipeline", name)
        logger.info("submitted PipelineJob %s (%s)", name, console)
        return SubmissionResult(
            job_id=name,
            wait_for_completion=lambda timeout: self.wait(name, timeout),
            metadata={
                "platform": "vertex_ai", "mode": "kfp_pipeline", "project": project, "region": cfg.region,
                "job_name": display_name, "image": image, "pipeline_root": root, "console_url": console,
                "tasks": len(spec["root"]["dag"]["tasks"]),
            },
        )

    def _submit_custom_job(
        self, pipeline: Any, run_id: str, project: str, image: str, module: str | None, params: dict[str, Any],
        stack_name: str | None, extra_env: dict[str, str], display_name: str, labels: dict[str, str],
        resources: ResourceConfig | None, docker_config: DockerConfig | None,
    ) -> SubmissionResult:
        from google.cloud.aiplatform_v1 import types as v1

        from flowyml_vertex.clients import api_errors
        from flowyml_vertex.compile import STEP_RUNNER_COMMAND, context_json
        from flowyml_vertex.machines import choose_machine_type, gpu_request

        cfg = self.config
        if resources is None:
            for step in pipeline.steps:
                if step.resources is not None:
                    resources = step.resources if resources is None else resources.merge(step.resources)
        env = {**cfg.env_vars, **extra_env, "PYTHONUNBUFFERED": "1", "FLOWYML_RUN_ID": run_id,
               "FLOWYML_PIPELINE_NAME": pipeline.name, "FLOWYML_CONTEXT": context_json(params)}
        if stack_name:
            env["FLOWYML_STACK"] = stack_name
        if module:
            env.update({"FLOWYML_PIPELINE_MODULE": module, "FLOWYML_STEP_NAMES": ",".join(pipeline.dag.order),
                        "FLOWYML_EXECUTION_GROUP": pipeline.name})
            command, args = list(STEP_RUNNER_COMMAND), []
        else:
            logger.warning(
                "pipeline %r has no importable module: the CustomJob runs the image's own command, not the steps",
                pipeline.name,
            )
            command = list(docker_config.command) if docker_config and docker_config.command else []
            args = list(docker_config.args) if docker_config and docker_config.args else []
        machine = v1.MachineSpec(machine_type=choose_machine_type(resources, cfg.machine_type))
        gpu, count = gpu_request(resources)
        if gpu:
            machine.accelerator_type = v1.AcceleratorType[gpu]
            machine.accelerator_count = count
        pool = v1.WorkerPoolSpec(
            machine_spec=machine, replica_count=1,
            container_spec=v1.ContainerSpec(
                image_uri=image, command=command, args=args,
                env=[v1.EnvVar(name=k, value=str(v)) for k, v in env.items()],
            ),
        )
        if resources is not None and resources.disk_size:
            from flowyml_core.resources import parse_memory

            pool.disk_spec = v1.DiskSpec(boot_disk_size_gb=max(100, -(-parse_memory(resources.disk_size) // 10**9)))
        job_spec = v1.CustomJobSpec(worker_pool_specs=[pool])
        if cfg.service_account:
            job_spec.service_account = cfg.service_account
        if cfg.network:
            job_spec.network = cfg.network
        if cfg.staging_bucket:
            job_spec.base_output_directory = v1.GcsDestination(output_uri_prefix=cfg.staging_bucket)
        job = v1.CustomJob(display_name=display_name, job_spec=job_spec, labels=labels)
        if cfg.encryption_key:
            job.encryption_spec = v1.EncryptionSpec(kms_key_name=cfg.encryption_key)
        client = self._client("custom", cfg.region)
        with api_errors(f"submitting CustomJob {display_name}", cfg.endpoint_for()):
            created = client.create_custom_job(parent=f"projects/{project}/locations/{cfg.region}", custom_job=job)
        name = created.name
        console = self._console_url("custom", name)
        logger.info("submitted CustomJob %s on %s (%s)", name, machine.machine_type, console)
        return SubmissionResult(
            job_id=name,
            wait_for_completion=lambda timeout: self.wait(name, timeout),
            metadata={
                "platform": "vertex_ai", "mode": "single_job", "project": project, "region": cfg.region,
                "job_name": display_name, "image": image, "machine_type": machine.machine_type, "console_url": console,
            },
        )

    # -- waiting --------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float | None = None) -> ExecutionStatus:
        """Poll every ``poll_interval`` seconds until the job ends; TimeoutError after ``timeout``."""
        interval = poll_interval or self.config.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        transient = 0
        while True:
            try:
                status = self.get_run_status(job_id)
                transient = 0
            except FlowymlError as exc:
                transient = _count_transient(exc, transient, job_id)
                status = None
            if status is not None and status.is_finished:
                return status
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    state = status.value if status is not None else "unknown"
                    raise TimeoutError(
                        f"Vertex AI job {job_id} is still {state} after {timeout:.1f}s; it keeps running "
                        f"(check it with `flowyml runs status {job_id}`, stop it with `flowyml runs stop {job_id}`)"
                    )
                time.sleep(min(interval, remaining))
            else:
                time.sleep(interval)

    # -- inspection -------------------------------------------------------------------
    def _get_job(self, job_id: str) -> tuple[JobKind, str, str, Any]:
        from flowyml_vertex.clients import api_errors

        kind, project, region, name = parse_job_name(job_id, self.config.project_id, self.config.region)
        client = self._client(kind, region)
        label = "PipelineJob" if kind == "pipeline" else "CustomJob"
        with api_errors(f"reading {label} {name}", self.config.endpoint_for(region)):
            job = client.get_pipeline_job(name=name) if kind == "pipeline" else client.get_custom_job(name=name)
        return kind, project, region, job

    def get_run_status(self, job_id: str) -> ExecutionStatus:
        kind, _, _, job = self._get_job(job_id)
        return map_state(kind, job.state.name)

    def get_run_details(self, job_id: str) -> dict[str, Any]:
        """State, times, error, labels, console link, and for pipelines each task's state and error."""
        kind, project, region, job = self._get_job(job_id)
        status = map_state(kind, job.state.name)
        details: dict[str, Any] = {
            "job_id": job.name,
            "kind": "pipeline_job" if kind == "pipeline" else "custom_job",
            "display_name": job.display_name,
            "state": job.state.name,
            "status": status.value,
            "create_time": _iso(job.create_time),
            "start_time": _iso(job.start_time),
            "end_time": _iso(job.end_time),
            "error": job.error.message or None,
            "labels": dict(job.labels),
            "platform": "vertex_ai",
            "project": project,
            "region": region,
            "console_url": self._console_url(kind, job.name),
        }
        if kind == "pipeline":
            tasks = []
            # In the order they ran (Vertex lists them in no particular order).
            ordered = sorted(
                (t for t in job.job_detail.task_details if t.parent_task_id),  # skip the root DAG's own detail
                key=lambda t: (_sort_time(t.start_time or t.create_time), t.task_name),
            )
            for task in ordered:
                tasks.append({
                    "name": task.task_name,
                    "key": task.task_unique_name or task.task_name,
                    "state": task.state.name,
                    "status": TASK_STATES.get(task.state.name, ExecutionStatus.RUNNING).value,
                    "error": task.error.message or None,
                    "start_time": _iso(task.start_time),
                    "end_time": _iso(task.end_time),
                })
            failed = [t for t in tasks if t["state"] == "FAILED"]
            if failed:
                reasons = self._error_logs(kind, project, job)
                for task in failed:
                    task["log_errors"] = reasons.get(task["name"], [])
            details["tasks"] = tasks
            details["failed_tasks"] = {
                t["name"]: "\n".join(filter(None, [t["error"], *t.get("log_errors", [])[-3:]])) for t in failed
            }
            details["service_account"] = job.service_account or None
            details["network"] = job.network or None
            details["pipeline_root"] = job.runtime_config.gcs_output_directory or None
        else:
            pools = list(job.job_spec.worker_pool_specs)
            if pools:
                details["machine_type"] = pools[0].machine_spec.machine_type
                details["image"] = pools[0].container_spec.image_uri
            details["service_account"] = job.job_spec.service_account or None
            details["network"] = job.job_spec.network or None
        details["encryption_key"] = job.encryption_spec.kms_key_name or None
        return details

    def _error_logs(self, kind: JobKind, project: str, job: Any) -> dict[str, list[str]]:
        """ERROR-or-worse log messages of a job, by task.

        Vertex's task error only says that the container exited non-zero; why
        (the step's exception, logged by ``flowyml step-runner``) is in the logs.
        """
        since = job.create_time - timedelta(minutes=5) if job.create_time else None
        filter_ = self.log_filter(kind, job.name, since) + " AND severity>=ERROR"
        by_task: dict[str, list[str]] = {}
        for entry in self._entries(project, filter_, max_results=200):
            record = _entry_dict(entry)
            by_task.setdefault(record["task"] or "", []).append(record["message"])
        return by_task

    def _console_url(self, kind: JobKind, name: str) -> str:
        parts = name.split("/")
        project, region, job = parts[1], parts[3], parts[-1]
        if kind == "pipeline":
            return f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}?project={project}"
        return f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job}/cpu?project={project}"

    # -- logs ---------------------------------------------------------------------------
    @staticmethod
    def log_filter(kind: JobKind, job_name: str, since: datetime | None = None) -> str:
        """Cloud Logging filter for a job's container logs.

        Pipeline tasks log under the PipelineJob resource with its job id;
        CustomJob replicas under ``ml_job`` with the numeric job id. A
        ``timestamp`` clause is always given: without one the client library
        silently limits the query to the last 24 hours.
        """
        job = job_name.rsplit("/", 1)[-1]
        if kind == "pipeline":
            clauses = [f'resource.type="{PIPELINE_LOG_RESOURCE}"', f'resource.labels.pipeline_job_id="{job}"']
        else:
            clauses = [f'resource.type="{CUSTOM_JOB_LOG_RESOURCE}"', f'resource.labels.job_id="{job}"']
        since = since or datetime.now(timezone.utc) - timedelta(days=30)
        clauses.append(f'timestamp>="{_rfc3339(since)}"')
        return " AND ".join(clauses)

    def _entries(self, project: str, filter_: str, *, descending: bool = False, max_results: int | None = None) -> list[Any]:
        from google.cloud import logging as cloud_logging

        from flowyml_vertex.clients import api_errors

        client = self._logging(project)
        with api_errors("reading logs from Cloud Logging", self.config.effective_logging_endpoint):
            return list(client.list_entries(
                resource_names=[f"projects/{project}"], filter_=filter_,
                order_by=cloud_logging.DESCENDING if descending else cloud_logging.ASCENDING,
                max_results=max_results, page_size=min(max_results or 1000, 1000),
            ))

    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        """The job's last ``max_entries`` log lines, oldest first, one per line."""
        kind, project, _, job = self._get_job(job_id)
        since = job.create_time - timedelta(minutes=5) if job.create_time else None
        entries = self._entries(project, self.log_filter(kind, job.name, since), descending=True, max_results=max_entries)
        lines = []
        for entry in reversed(entries):
            record = _entry_dict(entry)
            stamp = record["timestamp"][11:19] if record["timestamp"] else "--:--:--"
            source = f" [{record['task']}]" if record["task"] else ""
            lines.append(f"[{stamp}] [{record['severity']}]{source} {record['message']}")
        return "\n".join(lines) if lines else f"no log entries yet for {job.name}"

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{timestamp, severity, message, task, is_finished}`` as entries arrive, until the job ends.

        Each poll reads the job's state *before* its logs, so the entries read
        after the job is seen finished include everything it wrote. The last
        item has ``is_finished`` true and the final ``status``.
        """
        interval = poll_interval or self.config.poll_interval
        kind, project, _, job = self._get_job(job_id)
        name = job.name
        since = job.create_time - timedelta(minutes=5) if job.create_time else None
        seen: set[str] = set()
        transient = 0
        draining = False
        while True:
            try:
                if not draining:
                    status = self.get_run_status(name)
                entries = self._entries(project, self.log_filter(kind, name, since))
                transient = 0
            except FlowymlError as exc:
                transient = _count_transient(exc, transient, name)
                time.sleep(interval)
                continue
            for entry in entries:
                record = _entry_dict(entry)
                key = record.pop("insert_id") or f"{record['timestamp']}|{record['message']}"
                if key in seen:
                    continue
                seen.add(key)
                if entry.timestamp is not None:
                    # Re-read from the newest second seen: entries can share a timestamp.
                    since = max(since or entry.timestamp, entry.timestamp - timedelta(seconds=1))
                yield {**record, "is_finished": False}
            if status.is_finished and not draining:
                # Cloud Logging can deliver the last lines a moment after the job
                # ends: read once more before reporting the end.
                draining = True
                time.sleep(min(interval, LOG_DRAIN_SECONDS))
                continue
            if status.is_finished:
                yield {
                    "timestamp": None, "severity": "ERROR" if status.is_failed else "INFO",
                    "message": f"job {name} finished: {status.value}", "task": None,
                    "is_finished": True, "status": status.value,
                }
                return
            time.sleep(interval)

    # -- control ------------------------------------------------------------------------
    def stop_run(self, job_id: str, graceful: bool = True) -> None:
        """Ask Vertex AI to cancel the job; it moves to CANCELLING, then CANCELLED.

        Vertex has no forced stop, so ``graceful`` changes nothing. Cancelling a
        job that already finished is an error that says so.
        """
        from flowyml_vertex.clients import VertexAPIError, api_errors

        kind, _, region, name = parse_job_name(job_id, self.config.project_id, self.config.region)
        client = self._client(kind, region)
        label = "PipelineJob" if kind == "pipeline" else "CustomJob"
        try:
            with api_errors(f"cancelling {label} {name}", self.config.endpoint_for(region)):
                if kind == "pipeline":
                    client.cancel_pipeline_job(name=name)
                else:
                    client.cancel_custom_job(name=name)
        except VertexAPIError as exc:
            if exc.code == 400:
                status = self.get_run_status(name)
                if status.is_finished:
                    raise FlowymlError(f"{label} {name} already finished ({status.value}); nothing to cancel") from None
            raise
        logger.info("cancellation requested for %s", name)


# -- helpers ------------------------------------------------------------------------------
def _has_module(util: Any, name: str) -> bool:
    try:
        return util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _count_transient(exc: FlowymlError, count: int, job_id: str) -> int:
    if not getattr(exc, "transient", False) or count + 1 >= MAX_TRANSIENT_ERRORS:
        raise exc
    logger.warning("polling %s: %s (retrying, %d/%d)", job_id, exc, count + 1, MAX_TRANSIENT_ERRORS)
    return count + 1


def _label(value: str) -> str:
    """A Vertex label value: lowercase letters, digits, _ and -, at most 63 characters."""
    import re

    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def _store_url(store: Any | None) -> str | None:
    """The root URL of an artifact store, when its config declares one (``url`` or ``path``)."""
    config = getattr(store, "config", None)
    for attr in ("url", "path", "root"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _container_module(module: str | None, root: Path) -> str | None:
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


def _entry_dict(entry: Any) -> dict[str, Any]:
    """A Cloud Logging entry as ``{timestamp, severity, message, task, insert_id}``.

    ``flowyml step-runner`` logs JSON lines, which arrive as structured
    payloads: their ``message`` is the text; other lines are text payloads.
    """
    payload = entry.payload
    task = (entry.labels or {}).get("task_name") if getattr(entry, "labels", None) else None
    if isinstance(payload, dict):
        message = payload.get("message")
        if message is None:
            import json

            message = json.dumps(payload, sort_keys=True, default=str)
        task = task or payload.get("execution_group")
    elif payload is None:
        message = ""
    else:
        message = str(payload)
    return {
        "timestamp": entry.timestamp.isoformat() if entry.timestamp else None,
        "severity": entry.severity or "DEFAULT",
        "message": str(message).rstrip("\n"),
        "task": task,
        "insert_id": entry.insert_id,
    }
