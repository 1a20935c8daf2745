"""A run's logs: the pod logs of its orchestrator and of its unit Jobs, merged by time.

Every pod of a run carries the run's label, so one list call finds them all;
each log is read with the API server's timestamps (``timestamps=true``), which
orders lines across pods. Lines the step runner and the orchestrator write
are JSON (severity, message); anything else is kept as it is.
"""

from __future__ import annotations

from typing import Any, Iterable

from flowyml_core.log_stream import log_entry
from flowyml_core.step_runner import json_log_line

from flowyml_kubernetes.clients import Api, api_errors
from flowyml_kubernetes.manifests import JOB_NAME_LABEL, LABEL_ROLE, LABEL_RUN, LABEL_UNIT, ROLE_ORCHESTRATOR


#: Container states a pod does not leave by itself: the Job would wait (and hold its node) forever.
STUCK_REASONS = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
                           "CreateContainerError"})


def stuck_reason(pod: Any) -> str | None:
    """Why a pod cannot start, when it is a reason it will not get over by itself."""
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state is not None else None
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
    return None


def job_pods(api: Api, namespace: str, job_name: str) -> list[Any]:
    with api_errors(f"listing the pods of Job {job_name}", api.where):
        return api.core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}").items


def job_stuck(api: Api, namespace: str, job_name: str) -> str | None:
    """Why the Job's pod cannot start (image pull, config), or None."""
    return next(filter(None, (stuck_reason(p) for p in job_pods(api, namespace, job_name))), None)


def parse_line(line: str, source: str, pod: str) -> dict[str, Any]:
    """One log entry from a ``<RFC 3339 time> <text>`` line of a pod's log."""
    stamp, _, text = line.partition(" ")
    if not stamp[:4].isdigit():  # no timestamp: the server was not asked for one
        stamp, text = "", line
    severity, message = "INFO", text
    data = json_log_line(text)
    if data is not None and "message" in data:
        severity, message = str(data.get("severity") or "INFO"), str(data["message"])
    return {**log_entry(message, unit=source, severity=severity, timestamp=stamp or None), "pod": pod}


def source_of(pod: Any) -> str:
    labels = pod.metadata.labels or {}
    if labels.get(LABEL_ROLE) == ROLE_ORCHESTRATOR:
        return "orchestrator"
    annotations = pod.metadata.annotations or {}
    return annotations.get("flowyml.io/unit") or labels.get(LABEL_UNIT) or pod.metadata.name


def run_pods(api: Api, namespace: str, run_label: str) -> list[Any]:
    with api_errors(f"listing the pods of run {run_label}", api.where):
        pods = api.core.list_namespaced_pod(namespace, label_selector=f"{LABEL_RUN}={run_label}").items
    return sorted(pods, key=lambda p: (p.metadata.creation_timestamp is None, p.metadata.creation_timestamp or 0,
                                       p.metadata.name))


def pod_lines(api: Api, namespace: str, pod: Any) -> list[str]:
    """The pod's log lines with timestamps; a pod that has not started yet has none."""
    if (pod.status.phase or "Pending") == "Pending":
        return []
    with api_errors(f"reading the log of pod {namespace}/{pod.metadata.name}", api.where):
        text = api.core.read_namespaced_pod_log(pod.metadata.name, namespace, timestamps=True)
    return [line for line in (text or "").splitlines() if line.strip()]


def merged(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: e["timestamp"] or "")


def run_entries(api: Api, namespace: str, run_label: str) -> list[dict[str, Any]]:
    """Every log entry of the run's pods, oldest first."""
    entries: list[dict[str, Any]] = []
    for pod in run_pods(api, namespace, run_label):
        source = source_of(pod)
        entries.extend(parse_line(line, source, pod.metadata.name) for line in pod_lines(api, namespace, pod))
    return merged(entries)


def last_lines(api: Api, namespace: str, job_name: str, count: int) -> list[str]:
    """The last ``count`` messages of a Job's newest pod, or why it never started (why a unit failed)."""
    pods = job_pods(api, namespace, job_name)
    if not pods:
        return []
    pod = max(pods, key=lambda p: (p.metadata.creation_timestamp is not None, p.metadata.creation_timestamp or 0))
    lines = pod_lines(api, namespace, pod)[-count:]
    if not lines:
        reason = stuck_reason(pod)
        return [reason] if reason else []
    return [parse_line(line, "", pod.metadata.name)["message"] for line in lines]
