"""``VertexAIOrchestrator``: flowyml pipelines as Vertex AI Pipelines runs.

``run_pipeline`` (:mod:`flowyml_vertex.submission`) turns the pipeline's
execution units into a KFP pipeline with one container task per unit, each
running ``flowyml step-runner`` in an image that holds the project (used as
given, or built and pushed with flowyml-docker), submits it as a
``PipelineJob`` and returns at once. With ``submit = "custom_job"`` the run is
one ``CustomJob`` that runs every step instead.

Every other method takes a job id and dispatches on its kind: full resource
names contain ``/pipelineJobs/`` or ``/customJobs/`` (the seed treated every id
as a CustomJob, so it could neither see nor stop its own pipeline runs). Logs
are read by :mod:`flowyml_vertex.logs`.

This module imports no Google, KFP or Docker code at import time; building the
orchestrator from a stack does not either. They load on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.remote import wait_until_finished
from flowyml_core.results import ExecutionStatus

from flowyml_vertex.config import VertexConfig
from flowyml_vertex.logs import LogsMixin
from flowyml_vertex.states import TASK_STATES, JobKind, map_state, parse_job_name
from flowyml_vertex.submission import SubmissionMixin

logger = logging.getLogger("flowyml.vertex")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _sort_time(value: Any) -> float:
    return value.timestamp() if value else float("inf")


class VertexAIOrchestrator(SubmissionMixin, LogsMixin, RemoteOrchestrator):
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

    # -- waiting --------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float | None = None) -> ExecutionStatus:
        """Poll every ``poll_interval`` seconds until the job ends; TimeoutError after ``timeout``."""
        return wait_until_finished(self.get_run_status, job_id, timeout, poll_interval or self.config.poll_interval,
                                   "Vertex AI")

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
                    # The CustomJob that ran the task's container: its logs are under it.
                    "custom_job": task.executor_detail.container_detail.main_job or None,
                })
            failed = [t for t in tasks if t["state"] == "FAILED"]
            if failed:
                reasons = self.error_lines(kind, project, job)
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

    def _console_url(self, kind: JobKind, name: str) -> str:
        parts = name.split("/")
        project, region, job = parts[1], parts[3], parts[-1]
        if kind == "pipeline":
            return f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}?project={project}"
        return f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job}/cpu?project={project}"

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
