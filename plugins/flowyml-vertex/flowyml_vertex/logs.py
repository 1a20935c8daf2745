"""A job's logs from Cloud Logging: the pipeline's own entries and each task's, merged.

Vertex AI writes a pipeline run's logs in two places. Entries about the run
itself are under ``resource.type="aiplatform.googleapis.com/PipelineJob"``.
What a task's container prints is under the CustomJob that ran it
(``resource.type="ml_job"``, ``resource.labels.job_id=<its numeric id>``),
whose name the job lists in ``task_details[].executor_detail.container_detail
.main_job`` once the task has started. Reading only the first would miss the
steps' own output, so every read here queries both and merges them in time
order, each entry once (by ``insert_id``).

A reader asks for at most two filters per poll (three when tasks have just
started), whatever the number of tasks: task job ids are joined with ``OR``
in batches, because Cloud Logging allows 60 list requests a minute per project.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from flowyml_core.log_stream import follow, format_entry, log_entry
from flowyml_core.results import ExecutionStatus

from flowyml_vertex.states import JobKind, map_state

PIPELINE_LOG_RESOURCE = "aiplatform.googleapis.com/PipelineJob"
CUSTOM_JOB_LOG_RESOURCE = "ml_job"
#: Task job ids per filter (Cloud Logging filters are limited to 20 000 characters).
JOBS_PER_FILTER = 50
#: Each poll re-reads this far behind the newest entry seen: entries can arrive late, and several can share a second.
LOG_OVERLAP = timedelta(seconds=5)
#: How far before a job's creation its logs are read from (clocks differ).
CLOCK_SKEW = timedelta(minutes=5)
#: Longest pause before the last log read of a finished job (log ingestion lag).
LOG_DRAIN_SECONDS = 5.0


def rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def short_id(name: str) -> str:
    """The last part of a resource name (``…/customJobs/123`` → ``123``)."""
    return name.rsplit("/", 1)[-1]


def log_start(job: Any) -> datetime:
    """Where a job's logs begin. A ``timestamp`` clause is always given: without one
    the client library silently limits a query to the last 24 hours."""
    if job.create_time:
        return job.create_time - CLOCK_SKEW
    return datetime.now(timezone.utc) - timedelta(days=30)


def task_jobs(job: Any) -> dict[str, str]:
    """Numeric CustomJob id → pipeline task name, for every task that has started (retried attempts too)."""
    jobs: dict[str, str] = {}
    for task in job.job_detail.task_details:
        if not task.parent_task_id:  # the root DAG's own detail runs no container
            continue
        container = task.executor_detail.container_detail
        for name in (container.main_job, *container.failed_main_jobs):
            if name:
                jobs[short_id(name)] = task.task_name
    return jobs


def pipeline_filter(job_name: str, since: datetime) -> str:
    return (f'resource.type="{PIPELINE_LOG_RESOURCE}" AND resource.labels.pipeline_job_id="{short_id(job_name)}" '
            f'AND timestamp>="{rfc3339(since)}"')


def custom_jobs_filters(job_ids: Iterable[str], since: datetime) -> list[str]:
    """Filters for the entries of these CustomJobs, at most :data:`JOBS_PER_FILTER` ids each."""
    ids = sorted(set(job_ids))
    filters = []
    for start in range(0, len(ids), JOBS_PER_FILTER):
        batch = ids[start:start + JOBS_PER_FILTER]
        value = f'"{batch[0]}"' if len(batch) == 1 else "(" + " OR ".join(f'"{i}"' for i in batch) + ")"
        filters.append(f'resource.type="{CUSTOM_JOB_LOG_RESOURCE}" AND resource.labels.job_id={value} '
                       f'AND timestamp>="{rfc3339(since)}"')
    return filters


def job_filters(kind: JobKind, job: Any, since: datetime) -> list[str]:
    """Every filter that together reads a job's logs since ``since``."""
    if kind == "custom":
        return custom_jobs_filters([short_id(job.name)], since)
    return [pipeline_filter(job.name, since), *custom_jobs_filters(task_jobs(job), since)]


def merged(batches: Iterable[list[Any]]) -> list[Any]:
    """Entries of several queries in time order, each once (by ``insert_id``)."""
    seen: set[str] = set()
    out = []
    for entry in sorted((e for batch in batches for e in batch), key=_entry_time):
        key = entry.insert_id or f"{entry.timestamp}|{entry.payload}"
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


def _entry_time(entry: Any) -> float:
    return entry.timestamp.timestamp() if entry.timestamp else float("inf")


def entry_dict(entry: Any, tasks: dict[str, str] | None = None) -> dict[str, Any]:
    """A Cloud Logging entry as a :func:`~flowyml_core.log_stream.log_entry` plus its ``insert_id``.

    ``flowyml step-runner`` logs JSON lines, which arrive as structured
    payloads: their ``message`` is the text; other lines are text payloads.
    The unit is the task whose CustomJob wrote the entry (``tasks``: job id →
    task name, one task per unit), else the entry's ``task_name`` label, else
    the unit the step runner names in its payload.
    """
    payload = entry.payload
    resource = getattr(entry, "resource", None)
    task = None
    if resource is not None and resource.type == CUSTOM_JOB_LOG_RESOURCE:
        task = (tasks or {}).get((resource.labels or {}).get("job_id", ""))
    task = task or (entry.labels or {}).get("task_name")
    if isinstance(payload, dict):
        message = payload.get("message")
        if message is None:
            message = json.dumps(payload, sort_keys=True, default=str)
        task = task or payload.get("execution_group")
    elif payload is None:
        message = ""
    else:
        message = str(payload)
    return {**log_entry(str(message).rstrip("\n"), unit=task, severity=entry.severity or "DEFAULT",
                        timestamp=entry.timestamp.isoformat() if entry.timestamp else None),
            "insert_id": entry.insert_id}


class _Follower:
    """The filters of each poll while following a job, each stream from where it was last read.

    The pipeline's entries and the tasks' entries are read from their own
    newest timestamp (less :data:`LOG_OVERLAP`). A task first seen in this
    poll is read from the job's start, since it may have logged before it
    was listed.
    """

    def __init__(self, kind: JobKind, job: Any) -> None:
        self.kind = kind
        self.name = job.name
        self.start = log_start(job)
        self.since = {PIPELINE_LOG_RESOURCE: self.start, CUSTOM_JOB_LOG_RESOURCE: self.start}
        self.known: set[str] = set() if kind == "pipeline" else {short_id(job.name)}

    def filters(self, jobs: Iterable[str]) -> list[str]:
        new = set(jobs) - self.known
        filters = custom_jobs_filters(self.known, self.since[CUSTOM_JOB_LOG_RESOURCE])
        filters += custom_jobs_filters(new, self.start)
        if self.kind == "pipeline":
            filters.insert(0, pipeline_filter(self.name, self.since[PIPELINE_LOG_RESOURCE]))
        return filters

    def read(self, jobs: Iterable[str]) -> None:
        """The entries of ``jobs`` were read up to now: from here on they follow the tasks' watermark."""
        self.known |= set(jobs)

    def saw(self, entry: Any) -> None:
        if entry.timestamp is None:
            return
        stream = entry.resource.type if entry.resource is not None else PIPELINE_LOG_RESOURCE
        if stream in self.since:
            self.since[stream] = max(self.since[stream], entry.timestamp - LOG_OVERLAP)


class LogsMixin:
    """``get_run_logs``, ``stream_logs`` and failed tasks' error lines for :class:`VertexAIOrchestrator`.

    Relies on the orchestrator's ``_get_job``, ``_logging`` and ``config``.
    """

    config: Any
    _get_job: Any
    _logging: Any

    def _entries(self, project: str, filter_: str, *, descending: bool = False,
                 max_results: int | None = None) -> list[Any]:
        from google.cloud import logging as cloud_logging

        from flowyml_vertex.clients import api_errors

        client = self._logging(project)
        with api_errors("reading logs from Cloud Logging", self.config.effective_logging_endpoint):
            return list(client.list_entries(
                resource_names=[f"projects/{project}"], filter_=filter_,
                order_by=cloud_logging.DESCENDING if descending else cloud_logging.ASCENDING,
                max_results=max_results, page_size=min(max_results or 1000, 1000),
            ))

    def _read(self, project: str, filters: list[str], **options: Any) -> list[Any]:
        return merged(self._entries(project, f, **options) for f in filters)

    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        """The job's last ``max_entries`` log lines (pipeline and tasks merged), oldest first."""
        kind, project, _, job = self._get_job(job_id)
        tasks = task_jobs(job) if kind == "pipeline" else {}
        entries = self._read(project, job_filters(kind, job, log_start(job)), descending=True,
                             max_results=max_entries)[-max_entries:]
        lines = [format_entry(entry_dict(entry, tasks)) for entry in entries]
        return "\n".join(lines) if lines else f"no log entries yet for {job.name}"

    def error_lines(self, kind: JobKind, project: str, job: Any) -> dict[str, list[str]]:
        """ERROR-or-worse log messages of a job, by task name.

        Vertex's task error only says that the container exited non-zero; why
        (the step's exception, logged by ``flowyml step-runner``) is in the
        task's own logs.
        """
        tasks = task_jobs(job) if kind == "pipeline" else {}
        # A pipeline's own entries only repeat the task's error; the tasks' entries say why.
        filters = custom_jobs_filters(tasks, log_start(job)) or job_filters(kind, job, log_start(job))
        filters = [f"{f} AND severity>=ERROR" for f in filters]
        by_task: dict[str, list[str]] = {}
        for entry in self._read(project, filters, max_results=200):
            record = entry_dict(entry, tasks)
            by_task.setdefault(record["unit"] or "", []).append(record["message"])
        return by_task

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the job's log entries (pipeline and tasks merged) as they arrive, then its end
        (see :mod:`flowyml_core.log_stream`)."""
        kind, project, _, job = self._get_job(job_id)
        follower = _Follower(kind, job)
        state: dict[str, Any] = {"job": job, "tasks": {}}

        def poll() -> ExecutionStatus:
            state["job"] = self._get_job(state["job"].name)[3]
            state["tasks"] = task_jobs(state["job"]) if kind == "pipeline" else {}
            return map_state(kind, state["job"].state.name)

        def read() -> list[tuple[str, dict[str, Any]]]:
            tasks = state["tasks"]
            entries = self._read(project, follower.filters(tasks))
            follower.read(tasks)
            out = []
            for entry in entries:
                follower.saw(entry)
                record = entry_dict(entry, tasks)
                out.append((record.pop("insert_id") or f"{record['timestamp']}|{record['message']}", record))
            return out

        yield from follow(f"job {job.name}", poll, read, interval=poll_interval or self.config.poll_interval,
                          drain_seconds=LOG_DRAIN_SECONDS)
