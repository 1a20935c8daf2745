"""A run's logs: the pod logs of its orchestrator and of its unit Jobs, merged by time.

Every pod of a run carries the run's label, so one list call finds them all;
each log is read with the API server's timestamps (``timestamps=true``), which
orders lines across pods. Lines the step runner and the orchestrator write
are JSON (severity, message); anything else is kept as it is.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
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


def pod_lines(api: Api, namespace: str, pod: Any, since_seconds: int | None = None) -> list[str]:
    """The pod's log lines with timestamps (the last ``since_seconds`` only, when given); a pod not started has none."""
    if (pod.status.phase or "Pending") == "Pending":
        return []
    window = {} if since_seconds is None else {"since_seconds": since_seconds}
    with api_errors(f"reading the log of pod {namespace}/{pod.metadata.name}", api.where):
        text = api.core.read_namespaced_pod_log(pod.metadata.name, namespace, timestamps=True, **window)
    return [line for line in (text or "").splitlines() if line.strip()]


def merged(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of several pods in time order (those without a time first, as they came)."""
    return sorted(entries, key=lambda e: stamp_order(e["timestamp"] or "") or (0.0, 0))


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


def stamp_key(line: str) -> tuple[float, int] | None:
    """The kubelet timestamp in front of a log line, as :func:`stamp_order` gives it."""
    return stamp_order(line.partition(" ")[0])


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def stamp_order(stamp: str) -> tuple[float, int] | None:
    """An RFC 3339 timestamp as (epoch seconds, nanoseconds), comparable across pods; None if it is not one.

    Not a string comparison: Go's RFC 3339 with nanoseconds drops trailing
    zeros (``...:05.1Z`` is later than ``...:05.09Z``), and datetime keeps
    only microseconds.
    """
    match = _RFC3339.match(stamp)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    return seconds, int(((fraction or "") + "000000000")[:9])


#: Seconds of log a follower asks for before the last line it has, against clock skew between client and cluster.
SKEW_MARGIN = 300


class PodLogFollower:
    """The new lines of a run's pods on each ``read()``, each line once, without re-reading whole logs.

    A pod seen finished (Succeeded or Failed) when it was listed has written
    all it will: it is read once more and then never again. A running pod is
    read from a little before its last line (``sinceSeconds``, with
    :data:`SKEW_MARGIN` for clocks that disagree), and the lines at or before
    that last line are dropped; lines with the same timestamp as the last one
    are told apart by how many of them were already yielded.
    """

    def __init__(self, api: Api, namespace: str, run_label: str) -> None:
        self.api, self.namespace, self.run_label = api, namespace, run_label
        self._last: dict[str, tuple[tuple[float, int], int]] = {}  # pod -> (last stamp, lines seen with that stamp)
        self._count: dict[str, int] = {}  # pod -> lines yielded; what tells them apart when a log has no stamps
        self._done: set[str] = set()

    def read(self) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        for pod in run_pods(self.api, self.namespace, self.run_label):
            name = pod.metadata.name
            if name in self._done:
                continue
            finished = pod.status.phase in ("Succeeded", "Failed")
            source = source_of(pod)
            fresh.extend(parse_line(line, source, name) for line in self._new_lines(pod))
            if finished:
                self._done.add(name)
        return merged(fresh)

    def _new_lines(self, pod: Any) -> list[str]:
        name = pod.metadata.name
        last = self._last.get(name)
        if last is None:  # first read, or a log without stamps: the whole log, minus what was yielded
            new = pod_lines(self.api, self.namespace, pod)[self._count.get(name, 0):]
        else:
            since = max(1, int(time.time() - last[0][0]) + SKEW_MARGIN)
            new, at_last = [], 0
            for line in pod_lines(self.api, self.namespace, pod, since):
                key = stamp_key(line)
                if key is not None and key <= last[0]:
                    at_last += key == last[0]
                    if key < last[0] or at_last <= last[1]:
                        continue
                new.append(line)
        self._count[name] = self._count.get(name, 0) + len(new)
        keys = [k for k in map(stamp_key, new) if k is not None]
        if keys:
            top = max(keys)
            before = last[1] if last is not None and last[0] == top else 0
            self._last[name] = (top, before + keys.count(top))
        return new
