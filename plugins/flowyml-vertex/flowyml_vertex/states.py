"""Vertex AI job states → flowyml's :class:`ExecutionStatus`.

Keyed by the enum *names* so that this table needs no Google import; a test
checks that every member of ``aiplatform_v1.PipelineState``, ``JobState`` and
``PipelineTaskDetail.State`` is mapped, so a state added by Google shows up as
a failing test rather than as a silent guess.
"""

from __future__ import annotations

import re
from typing import Literal

from flowyml_core.errors import FlowymlError
from flowyml_core.results import ExecutionStatus

S = ExecutionStatus

PIPELINE_STATES: dict[str, ExecutionStatus] = {
    "PIPELINE_STATE_UNSPECIFIED": S.INITIALIZING,
    "PIPELINE_STATE_QUEUED": S.PROVISIONING,
    "PIPELINE_STATE_PENDING": S.PROVISIONING,
    "PIPELINE_STATE_RUNNING": S.RUNNING,
    "PIPELINE_STATE_SUCCEEDED": S.COMPLETED,
    "PIPELINE_STATE_FAILED": S.FAILED,
    "PIPELINE_STATE_CANCELLING": S.CANCELLING,
    "PIPELINE_STATE_CANCELLED": S.CANCELLED,
    # A paused run makes no progress until someone resumes it in the console:
    # waiting on it would only run into the timeout, so it counts as stopped.
    "PIPELINE_STATE_PAUSED": S.STOPPED,
}

JOB_STATES: dict[str, ExecutionStatus] = {
    "JOB_STATE_UNSPECIFIED": S.INITIALIZING,
    "JOB_STATE_QUEUED": S.PROVISIONING,
    "JOB_STATE_PENDING": S.PROVISIONING,
    "JOB_STATE_RUNNING": S.RUNNING,
    "JOB_STATE_SUCCEEDED": S.COMPLETED,
    "JOB_STATE_FAILED": S.FAILED,
    "JOB_STATE_CANCELLING": S.CANCELLING,
    "JOB_STATE_CANCELLED": S.CANCELLED,
    "JOB_STATE_PAUSED": S.STOPPED,
    "JOB_STATE_EXPIRED": S.FAILED,
    "JOB_STATE_UPDATING": S.RUNNING,
    "JOB_STATE_PARTIALLY_SUCCEEDED": S.FAILED,
}

TASK_STATES: dict[str, ExecutionStatus] = {
    "STATE_UNSPECIFIED": S.INITIALIZING,
    "PENDING": S.PROVISIONING,
    "RUNNING": S.RUNNING,
    "SUCCEEDED": S.COMPLETED,
    "CANCEL_PENDING": S.CANCELLING,
    "CANCELLING": S.CANCELLING,
    "CANCELLED": S.CANCELLED,
    "FAILED": S.FAILED,
    # Skipped because an upstream task failed, or not triggered by a condition:
    # the task did not run and will not.
    "SKIPPED": S.STOPPED,
    "NOT_TRIGGERED": S.STOPPED,
}

JobKind = Literal["pipeline", "custom"]

_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/(?P<collection>pipelineJobs|customJobs)/(?P<id>[^/]+)$"
)


def map_state(kind: JobKind, state_name: str) -> ExecutionStatus:
    table = PIPELINE_STATES if kind == "pipeline" else JOB_STATES
    try:
        return table[state_name]
    except KeyError:
        raise FlowymlError(
            f"Vertex AI reported an unknown {kind} job state {state_name!r}; "
            "upgrade flowyml-vertex, or report it if this is the newest version"
        ) from None


def parse_job_name(job_id: str, project: str | None, region: str) -> tuple[JobKind, str, str, str]:
    """``(kind, project, region, resource_name)`` for a job id.

    Full resource names are dispatched on ``/pipelineJobs/`` vs ``/customJobs/``
    (the seed treated every id as a CustomJob). A bare id is a CustomJob when it
    is numeric, as Vertex numbers custom jobs, and a PipelineJob otherwise.
    """
    job_id = job_id.strip()
    match = _NAME.match(job_id)
    if match:
        kind: JobKind = "pipeline" if match["collection"] == "pipelineJobs" else "custom"
        return kind, match["project"], match["region"], job_id
    if "/" in job_id or not job_id:
        raise FlowymlError(
            f"{job_id!r} is not a Vertex AI job: expected "
            "projects/P/locations/R/pipelineJobs/ID, projects/P/locations/R/customJobs/ID, or a bare job id"
        )
    if not project:
        raise FlowymlError(f"cannot look up job {job_id!r}: the vertex executor has no project_id")
    kind = "custom" if job_id.isdigit() else "pipeline"
    collection = "customJobs" if kind == "custom" else "pipelineJobs"
    return kind, project, region, f"projects/{project}/locations/{region}/{collection}/{job_id}"
