"""SageMaker execution and step statuses → flowyml's :class:`ExecutionStatus`, and the names SageMaker accepts.

The tables are keyed by the API's enum values, so they need no boto3 import; a
test checks them against botocore's service model (``PipelineExecutionStatus``,
``StepStatus``), so a status AWS adds shows up as a failing test rather than
as a silent guess.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from flowyml_core.errors import FlowymlError
from flowyml_core.results import ExecutionStatus

S = ExecutionStatus

EXECUTION_STATES: dict[str, ExecutionStatus] = {
    "Executing": S.RUNNING,
    "Stopping": S.STOPPING,
    "Stopped": S.STOPPED,
    "Failed": S.FAILED,
    "Succeeded": S.COMPLETED,
    # Some steps failed and the execution went on with the others: the run did not succeed.
    "CompletedWithFailures": S.FAILED,
}

STEP_STATES: dict[str, ExecutionStatus] = {
    "Starting": S.PROVISIONING,
    "Executing": S.RUNNING,
    "Stopping": S.STOPPING,
    "Stopped": S.STOPPED,
    "Failed": S.FAILED,
    "Succeeded": S.COMPLETED,
}

#: ``arn:aws:sagemaker:<region>:<account>:pipeline/<name>/execution/<id>``
_EXECUTION_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z\-]*):sagemaker:(?P<region>[a-z0-9\-]+):(?P<account>\d{12}):"
    r"pipeline/(?P<pipeline>[^/]+)/execution/(?P<id>[^/]+)$"
)
#: Pipeline names, execution display names and processing job names: letters, digits, single dashes.
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9]+")
PIPELINE_NAME_LIMIT = 256
EXECUTION_NAME_LIMIT = 82
#: Step names: letters, digits, ``-`` and ``_``; short, because SageMaker puts them into processing job names.
STEP_NAME_LIMIT = 48


def map_execution_status(value: str) -> ExecutionStatus:
    try:
        return EXECUTION_STATES[value]
    except KeyError:
        raise FlowymlError(f"SageMaker reported an unknown pipeline execution status {value!r}; upgrade "
                           "flowyml-sagemaker, or report it if this is the newest version") from None


def map_step_status(value: str | None) -> ExecutionStatus:
    return STEP_STATES.get(value or "", S.RUNNING)


class ExecutionArn(NamedTuple):
    arn: str
    region: str
    account: str
    pipeline: str
    execution_id: str


def parse_execution_arn(job_id: str) -> ExecutionArn:
    """The parts of a pipeline execution ARN, or one line saying what a job id looks like."""
    match = _EXECUTION_ARN.match(job_id.strip())
    if not match:
        raise FlowymlError(
            f"{job_id!r} is not a SageMaker pipeline execution: expected an ARN such as "
            "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/NAME/execution/ID (as `flowyml run` prints it)"
        )
    return ExecutionArn(match.group(0), match["region"], match["account"], match["pipeline"], match["id"])


def api_name(text: str, limit: int, fallback: str = "x") -> str:
    """``text`` as letters, digits and single dashes, within ``limit`` characters (never empty)."""
    name = _NAME_CHARS.sub("-", text).strip("-")[:limit].rstrip("-")
    return name or fallback


def _digest(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:size]


def pipeline_name(prefix: str, pipeline: str) -> str:
    """``<prefix>-<pipeline>``: one SageMaker pipeline per flowyml pipeline, updated by each run."""
    name = api_name(pipeline, PIPELINE_NAME_LIMIT - len(prefix) - 1, "pipeline")
    return f"{prefix}-{name}"


def execution_name(run_id: str) -> str:
    """The execution's display name: the run id, or a readable form of it with a digest when it had to change."""
    name = api_name(run_id, EXECUTION_NAME_LIMIT, "run")
    if name == run_id:
        return name
    return f"{name[:EXECUTION_NAME_LIMIT - 9]}-{_digest(run_id)}".lstrip("-")


def step_names(units: list[str]) -> dict[str, str]:
    """Unit name → a distinct SageMaker step name (``[A-Za-z0-9_-]``, at most :data:`STEP_NAME_LIMIT`)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for unit in units:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", unit).strip("-")[:STEP_NAME_LIMIT] or "unit"
        name, n = base, 2
        while name in used:
            suffix = f"-{n}"
            name, n = base[:STEP_NAME_LIMIT - len(suffix)] + suffix, n + 1
        used.add(name)
        names[unit] = name
    return names


def request_token(*parts: str) -> str:
    """An idempotency token (32-128 characters) derived from what identifies the request.

    A retried ``StartPipelineExecution`` with the same token starts nothing
    new, so a client that lost the answer cannot start a run twice.
    """
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:64]
