"""``SageMakerOrchestrator``: flowyml pipelines as SageMaker Pipelines executions.

``run_pipeline`` (:mod:`flowyml_sagemaker.submission`) turns the units that
must run into a pipeline definition with one Processing step per unit, each
running ``flowyml step-runner`` in an image that holds the project (used as
given, or built and pushed with flowyml-docker), starts an execution and
returns at once. A run is tracked by its pipeline execution ARN: status and
details from ``DescribePipelineExecution`` and ``ListPipelineExecutionSteps``,
logs from CloudWatch Logs (:mod:`flowyml_sagemaker.logs`), stop with
``StopPipelineExecution``.

This module imports no boto3 code at import time; building the orchestrator
from a stack does not either. It loads on first use.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Sequence

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.remote import wait_until_finished
from flowyml_core.results import ExecutionStatus

from flowyml_sagemaker.config import SageMakerConfig
from flowyml_sagemaker.definition import StepPlan
from flowyml_sagemaker.logs import LogsMixin
from flowyml_sagemaker.states import ExecutionArn, map_execution_status, map_step_status, parse_execution_arn
from flowyml_sagemaker.submission import SubmissionMixin

logger = logging.getLogger("flowyml.sagemaker")


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


class SageMakerOrchestrator(SubmissionMixin, LogsMixin, RemoteOrchestrator):
    """Runs pipelines on SageMaker Pipelines and tracks them by execution ARN."""

    def __init__(self, config: SageMakerConfig | None = None) -> None:
        super().__init__(config if config is not None else SageMakerConfig())
        self.config: SageMakerConfig
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._job_names: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------------------
    def _client(self, service: str, region: str | None = None) -> Any:
        from flowyml_sagemaker.clients import make_client

        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = make_client(self.config, service, region)
            return client

    def _region(self) -> str:
        from flowyml_sagemaker.clients import region_of, session

        return region_of(self.config, session(self.config))

    # -- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Fail with one message listing what is missing or wrong before anything is submitted."""
        import importlib.util

        problems = []
        if not self.config.role_arn:
            problems.append("role_arn is not set (the IAM role SageMaker runs the pipeline as, "
                            "e.g. role_arn = \"arn:aws:iam::123456789012:role/flowyml-sagemaker\")")
        if importlib.util.find_spec("boto3") is None:
            from flowyml_core.plugins import install_command

            problems.append(f"boto3 is not installed ({install_command('flowyml-sagemaker')})")
        else:
            try:
                region = self._region()
            except FlowymlError as exc:
                problems.append(str(exc))
            else:
                problems += _unknown_region(region, self.config.endpoint_url)
            if self.config.instance_type:
                from flowyml_sagemaker.instances import check_instance_type

                try:
                    check_instance_type(self.config.instance_type, "instance_type")
                except FlowymlError as exc:
                    problems.append(str(exc))
        if not self.config.image and not self.config.registry:
            problems.append("neither image (a pre-built image) nor registry (where to push a built one) is set")
        elif not self.config.image and importlib.util.find_spec("docker") is None:
            problems.append("building the image needs the docker SDK (pip install docker), or set image")
        if problems:
            raise FlowymlError("sagemaker executor: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["type"] = "sagemaker"
        return data

    def console_url(self, job_id: str) -> str:
        arn = parse_execution_arn(job_id)
        return (f"https://{arn.region}.console.aws.amazon.com/sagemaker/home?region={arn.region}"
                f"#/pipelines/{arn.pipeline}/executions/{arn.execution_id}")

    # -- reading an execution -------------------------------------------------------------
    def _execution(self, job_id: str) -> tuple[ExecutionArn, dict[str, Any]]:
        from flowyml_sagemaker.clients import api_errors

        arn = parse_execution_arn(job_id)
        with api_errors(f"reading pipeline execution {arn.arn}", self.config.endpoint_url):
            return arn, self._client("sagemaker", arn.region).describe_pipeline_execution(PipelineExecutionArn=arn.arn)

    def _steps(self, arn: ExecutionArn) -> list[dict[str, Any]]:
        """The execution's steps, in the order they started."""
        from flowyml_sagemaker.clients import api_errors

        client = self._client("sagemaker", arn.region)
        steps: list[dict[str, Any]] = []
        with api_errors(f"listing the steps of pipeline execution {arn.arn}", self.config.endpoint_url):
            for page in client.get_paginator("list_pipeline_execution_steps").paginate(
                    PipelineExecutionArn=arn.arn, SortOrder="Ascending"):
                steps.extend(page.get("PipelineExecutionSteps", []))
        return steps

    def get_run_status(self, job_id: str) -> ExecutionStatus:
        return map_execution_status(self._execution(job_id)[1]["PipelineExecutionStatus"])

    def get_run_details(self, job_id: str) -> dict[str, Any]:
        """Status, times, failure reason, and each step's status, processing job and failure reason."""
        arn, execution = self._execution(job_id)
        state = execution["PipelineExecutionStatus"]
        steps = []
        for step in self._steps(arn):
            job_arn = ((step.get("Metadata") or {}).get("ProcessingJob") or {}).get("Arn")
            steps.append({
                "name": step.get("StepName"),
                "unit": step.get("StepDisplayName") or step.get("StepName"),
                "state": step.get("StepStatus"),
                "status": map_step_status(step.get("StepStatus")).value,
                "error": step.get("FailureReason") or None,
                "start_time": _iso(step.get("StartTime")),
                "end_time": _iso(step.get("EndTime")),
                "processing_job": job_arn.rsplit("/", 1)[-1] if job_arn else None,
                "attempts": step.get("AttemptCount"),
            })
        failed = [s for s in steps if s["state"] == "Failed"]
        if failed:
            try:
                reasons = self.error_lines(arn.arn)
            except FlowymlError as exc:  # the statuses are still worth reporting without the log lines
                logger.warning("cannot read the logs of the failed steps of %s: %s", arn.arn, exc)
                reasons = {}
            for step in failed:
                step["log_errors"] = reasons.get(step["unit"], [])
        return {
            "job_id": arn.arn,
            "kind": "pipeline_execution",
            "pipeline": arn.pipeline,
            "display_name": execution.get("PipelineExecutionDisplayName"),
            "state": state,
            "status": map_execution_status(state).value,
            "error": execution.get("FailureReason") or None,
            "create_time": _iso(execution.get("CreationTime")),
            "last_modified_time": _iso(execution.get("LastModifiedTime")),
            "platform": "sagemaker",
            "region": arn.region,
            "account": arn.account,
            "console_url": self.console_url(arn.arn),
            "steps": steps,
            "failed_steps": {s["unit"]: "\n".join(filter(None, [s["error"], *s.get("log_errors", [])[-3:]]))
                             for s in failed},
        }

    def unit_failures(self, job_id: str, plans: Sequence[StepPlan], units: Sequence[str]) -> dict[str, str]:
        """Why each failed unit failed, as SageMaker and its job's logs tell it (for units that left no record)."""
        unit_of = {name: plan.unit for plan in plans for name in (plan.name, plan.unit)}
        details = self.get_run_details(job_id)
        failures = {unit_of.get(name, name): reason or "the processing job failed"
                    for name, reason in details["failed_steps"].items()}
        if not failures and details["error"]:
            started = {s["unit"] for s in details["steps"]}
            failures = {unit: details["error"] for unit in units if unit not in started}
        return failures

    # -- waiting and stopping ----------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float | None = None) -> ExecutionStatus:
        """Poll every ``poll_interval`` seconds until the execution ends; TimeoutError after ``timeout``."""
        return wait_until_finished(self.get_run_status, job_id, timeout, poll_interval or self.config.poll_interval,
                                   "SageMaker")

    def stop_run(self, job_id: str, graceful: bool = True) -> None:
        """Ask SageMaker to stop the execution; it moves to Stopping, then Stopped.

        SageMaker stops running processing jobs itself, so ``graceful``
        changes nothing. Stopping an execution that already ended is an error
        that says so.
        """
        from flowyml_sagemaker.clients import api_errors
        from flowyml_sagemaker.states import request_token

        arn, execution = self._execution(job_id)
        status = map_execution_status(execution["PipelineExecutionStatus"])
        if status.is_finished:
            raise FlowymlError(f"pipeline execution {arn.arn} already finished ({status.value}); nothing to stop")
        with api_errors(f"stopping pipeline execution {arn.arn}", self.config.endpoint_url):
            self._client("sagemaker", arn.region).stop_pipeline_execution(
                PipelineExecutionArn=arn.arn, ClientRequestToken=request_token("stop", arn.arn))
        logger.info("stop requested for %s", arn.arn)


def _unknown_region(region: str, endpoint_url: str | None) -> list[str]:
    """A region botocore does not list for SageMaker (a typo such as 'eu-west-9'), unless an endpoint is given."""
    import boto3

    known = set(boto3.Session().get_available_regions("sagemaker"))
    if endpoint_url or not known or region in known:
        return []
    close = sorted(r for r in known if r.split("-")[0] == region.split("-")[0])
    return [f"region {region!r} is not a region SageMaker runs in" + (f" (nearby: {', '.join(close)})" if close else "")]
