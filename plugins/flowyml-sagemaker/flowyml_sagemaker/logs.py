"""A run's logs from CloudWatch Logs: what each step's processing job printed, merged in time order.

SageMaker writes a processing job's output to the log group
``/aws/sagemaker/ProcessingJobs``, in streams named ``<job name>/algo-1-<time>``.
A pipeline execution lists the processing job of each step that started
(``ListPipelineExecutionSteps`` → ``Metadata.ProcessingJob.Arn``), so every read
here first lists the steps, then reads the streams of their jobs by prefix.
``flowyml step-runner`` logs JSON lines; their ``severity`` and ``message``
are shown, other lines as they are.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from flowyml_core.log_stream import follow, format_entry, log_entry
from flowyml_core.results import ExecutionStatus
from flowyml_core.step_runner import json_log_line

from flowyml_sagemaker.states import map_execution_status

LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
#: Longest pause before the last log read of a finished execution (CloudWatch ingestion lag).
LOG_DRAIN_SECONDS = 3.0


def step_jobs(steps: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Processing job name (lowercase, as in its ARN) → the unit (step display name) it ran,
    for every step that started a job."""
    jobs = {}
    for step in steps:
        arn = ((step.get("Metadata") or {}).get("ProcessingJob") or {}).get("Arn")
        if arn:
            jobs[arn.rsplit("/", 1)[-1]] = step.get("StepDisplayName") or step.get("StepName") or ""
    return jobs


def event_dict(event: dict[str, Any], unit: str | None) -> dict[str, Any]:
    """A CloudWatch event as a :func:`~flowyml_core.log_stream.log_entry` (a step runner's JSON line unpacked)."""
    text = str(event.get("message") or "").rstrip("\n")
    severity, message = "DEFAULT", text
    payload = json_log_line(text)
    if payload is not None and "message" in payload:
        severity = str(payload.get("severity") or payload.get("level") or "DEFAULT").upper()
        message = str(payload["message"])
        unit = unit or payload.get("execution_group")
    stamp = event.get("timestamp")
    when = datetime.fromtimestamp(stamp / 1000, timezone.utc).isoformat() if stamp is not None else None
    return log_entry(message, unit=unit, severity=severity, timestamp=when)


class LogsMixin:
    """``get_run_logs``, ``stream_logs`` and failed steps' error lines for :class:`SageMakerOrchestrator`.

    Relies on the orchestrator's ``_client``, ``_execution``, ``_steps`` and ``config``.
    """

    config: Any
    _client: Any
    _execution: Any
    _steps: Any
    #: Processing job names by their lowercase form (set by the orchestrator).
    _job_names: dict[str, str]

    def _job_name(self, region: str, lowercase: str) -> str:
        """A job's name as its log streams spell it: ARNs are lowercase, stream names (prefixes are
        case-sensitive) keep the job name's case, which ``DescribeProcessingJob`` tells (once per job)."""
        from flowyml_sagemaker.clients import api_errors

        if lowercase not in self._job_names:
            with api_errors(f"reading processing job {lowercase}", self.config.endpoint_url):
                job = self._client("sagemaker", region).describe_processing_job(ProcessingJobName=lowercase)
            self._job_names[lowercase] = job["ProcessingJobName"]
        return self._job_names[lowercase]

    def _events(self, region: str, job: str, since_ms: int) -> list[dict[str, Any]]:
        """Every event of ``job``'s streams from ``since_ms`` on (a job that has not logged yet has none)."""
        from flowyml_sagemaker.clients import api_errors

        job = self._job_name(region, job)
        client = self._client("logs", region)
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job}/", "startTime": since_ms}
        with api_errors(f"reading the logs of processing job {job} from CloudWatch Logs",
                        self.config.effective_logs_endpoint):
            while True:
                try:
                    page = client.filter_log_events(**request)
                except client.exceptions.ResourceNotFoundException:  # no job has logged in this region yet
                    return []
                events.extend(page.get("events", []))
                token = page.get("nextToken")
                # A page may be empty and still have a token (CloudWatch searches on): stop only when the
                # token ends or repeats.
                if not token or token == request.get("nextToken"):
                    return events
                request["nextToken"] = token

    def _read(self, region: str, jobs: dict[str, str], since_ms: dict[str, int] | int) -> list[tuple[dict, str]]:
        out = []
        for job, unit in jobs.items():
            start = since_ms if isinstance(since_ms, int) else since_ms.get(job, 0)
            out.extend((event, unit) for event in self._events(region, job, start))
        out.sort(key=lambda pair: (pair[0].get("timestamp") or 0, pair[0].get("eventId") or ""))
        return out

    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        """The execution's last ``max_entries`` log lines (every step's job, merged), oldest first."""
        arn, execution = self._execution(job_id)
        jobs = step_jobs(self._steps(arn))
        start = _ms(execution.get("CreationTime"))
        lines = [format_entry(event_dict(event, unit)) for event, unit in self._read(arn.region, jobs, start)]
        return "\n".join(lines[-max_entries:]) if lines else f"no log entries yet for {arn.arn}"

    def error_lines(self, job_id: str) -> dict[str, list[str]]:
        """ERROR-or-worse messages of the execution's jobs, by unit: why a step's job failed."""
        arn, execution = self._execution(job_id)
        by_unit: dict[str, list[str]] = {}
        for event, unit in self._read(arn.region, step_jobs(self._steps(arn)), _ms(execution.get("CreationTime"))):
            entry = event_dict(event, unit)
            if entry["severity"] in ("ERROR", "CRITICAL", "ALERT", "EMERGENCY"):
                by_unit.setdefault(entry["unit"] or "", []).append(entry["message"])
        return by_unit

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the execution's log lines (every step's job, merged) as they arrive, then its end
        (see :mod:`flowyml_core.log_stream`)."""
        arn, execution = self._execution(job_id)
        start = _ms(execution.get("CreationTime"))
        since: dict[str, int] = {}
        jobs: dict[str, str] = {}

        def poll() -> ExecutionStatus:
            status = map_execution_status(self._execution(arn.arn)[1]["PipelineExecutionStatus"])
            jobs.clear()
            jobs.update(step_jobs(self._steps(arn)))
            return status

        def read() -> list[tuple[str, dict[str, Any]]]:
            out = []
            for event, unit in self._read(arn.region, jobs, {job: since.get(job, start) for job in jobs}):
                job = str(event.get("logStreamName") or "").split("/", 1)[0].lower()
                if event.get("timestamp") is not None and job:
                    since[job] = max(since.get(job, start), int(event["timestamp"]))
                key = str(event.get("eventId") or f"{event.get('logStreamName')}|{event.get('timestamp')}|"
                                                  f"{event.get('message')}")
                out.append((key, event_dict(event, unit)))
            return out

        yield from follow(f"execution {arn.arn}", poll, read, interval=poll_interval or self.config.poll_interval,
                          drain_seconds=LOG_DRAIN_SECONDS)


def _ms(value: Any) -> int:
    """Milliseconds since the epoch of an API time (a datetime), a minute early (clocks differ); 0 when unknown."""
    if isinstance(value, datetime):
        return max(0, int(value.timestamp() * 1000) - 60_000)
    return 0
