"""What a Job's status means for a flowyml run.

A batch/v1 Job reports ``active``/``succeeded``/``failed`` pod counts and
conditions (``Complete``, ``Failed``, ``Suspended``). The orchestrator Job's
status is the run's; a ``flowyml.io/stopped`` annotation (written by
``flowyml runs stop``) turns "ended" into STOPPED.

This module imports no Kubernetes code: it reads the client's model objects
by attribute.
"""

from __future__ import annotations

from typing import Any

from flowyml_core.results import ExecutionStatus

from flowyml_kubernetes.manifests import ANNOTATION_FAILED, ANNOTATION_STOPPED


def _true_conditions(job: Any) -> dict[str, Any]:
    conditions = getattr(job.status, "conditions", None) or []
    return {c.type: c for c in conditions if str(c.status) == "True"}


def job_outcome(job: Any) -> str | None:
    """``"complete"``, why the Job failed, or None while it runs (or waits to)."""
    conditions = _true_conditions(job)
    if "Complete" in conditions:
        return "complete"
    failed = conditions.get("Failed")
    if failed is not None:
        reason = " ".join(filter(None, [failed.reason, failed.message]))
        return reason or "the Job failed"
    return None


def given_up(job: Any) -> str | None:
    """Why the client gave the run up (its orchestrator pod could not start), if it did."""
    return (getattr(job.metadata, "annotations", None) or {}).get(ANNOTATION_FAILED)


def stopped(job: Any) -> bool:
    annotations = getattr(job.metadata, "annotations", None) or {}
    return ANNOTATION_STOPPED in annotations


def run_status(job: Any) -> ExecutionStatus:
    """The run's status from its orchestrator Job."""
    conditions = _true_conditions(job)
    status = job.status
    if given_up(job):
        return ExecutionStatus.FAILED
    if stopped(job):
        finished = bool({"Complete", "Failed", "Suspended"} & set(conditions)) or not (status.active or 0)
        return ExecutionStatus.STOPPED if finished else ExecutionStatus.STOPPING
    if "Complete" in conditions:
        return ExecutionStatus.COMPLETED
    if "Failed" in conditions:
        return ExecutionStatus.FAILED
    if "Suspended" in conditions or getattr(job.spec, "suspend", False):
        return ExecutionStatus.STOPPED
    if status.active or getattr(status, "ready", None):
        return ExecutionStatus.RUNNING
    if status.start_time is not None:
        return ExecutionStatus.PROVISIONING
    return ExecutionStatus.INITIALIZING


def unit_status(job: Any) -> ExecutionStatus:
    """A unit Job's status (no stop annotation: a stopped run's units are deleted)."""
    outcome = job_outcome(job)
    if outcome == "complete":
        return ExecutionStatus.COMPLETED
    if outcome is not None:
        return ExecutionStatus.FAILED
    return ExecutionStatus.RUNNING if job.status.active else ExecutionStatus.PROVISIONING
