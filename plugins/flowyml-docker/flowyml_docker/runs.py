"""A docker run as any process sees it: its handle on the engine, its unit containers, its records.

``flowyml runs status|logs|stop RUN_ID --stack docker`` may run in another
process (or on another machine using the same engine) than the one walking
the run. Everything they need is on the engine and in the run's records:

* the run's **handle**: a container created (never started) when the run
  starts, named ``flowyml-run-<run id>``, whose labels hold the pipeline,
  project, units and steps, and the process walking the run; its environment
  holds the shipped stack (``${env:…}`` references only), so the stores and
  the records can be found from the run id alone;
* the **unit containers**, labelled with the run id and the unit, while they
  exist (``remove = true`` removes each one when it ends);
* the **records** (:mod:`flowyml_core.records`): each step's status, error
  and captured output, the stop request, and the run's end (written by the
  walking process when the run ends).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from typing import Any, Iterator

from flowyml_core.errors import FlowymlError
from flowyml_core.log_stream import end_entry, log_entry
from flowyml_core.records import RECORDS_DIR, RunRecords
from flowyml_core.results import ExecutionStatus
from flowyml_core.shipping import STACK_CONFIG_ENV
from flowyml_core.step_runner import json_log_line
from flowyml_docker import spec
from flowyml_docker.launcher import readable

#: The record of the run's end, next to its step records.
END_RECORD = "__docker_run__"
END_FORMAT = "flowyml-docker-run/1"
ACTIVE = ("created", "running", "restarting", "paused")


def handle_name(run_id: str) -> str:
    return spec.container_name(f"flowyml-run-{run_id}")


def create_handle(client: Any, image: str, *, run_id: str, pipeline: str, project: str,
                  units: dict[str, list[str]], payload: str | None, labels: dict[str, str], command: list[str]) -> Any:
    """The run's handle: a container that is never started, holding what other processes need."""
    env = {STACK_CONFIG_ENV: payload} if payload else {}
    all_labels = {
        **labels, spec.LABEL_RUN: run_id, spec.LABEL_ROLE: "run", spec.LABEL_PIPELINE: pipeline,
        spec.LABEL_PROJECT: project, spec.LABEL_UNITS: json.dumps(units), spec.LABEL_CLIENT: client_id(),
    }
    import docker

    try:
        return client.containers.create(image, command=command, name=handle_name(run_id), labels=all_labels,
                                        environment=env, network_mode="none")
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        raise FlowymlError(f"run id {run_id!r} was used before on this docker engine (its handle "
                           f"{handle_name(run_id)} exists); choose another --run-id, or remove the old run's "
                           f"handle: docker rm {handle_name(run_id)}") from None


def client_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def write_end(records: RunRecords, status: ExecutionStatus) -> None:
    records.store.materialize(
        obj={"format": END_FORMAT, "status": status.value, "finished": time.time()}, name=END_RECORD,
        run_id=records.run_id, step_name=RECORDS_DIR, project_name=records.project_name)


def read_end(records: RunRecords) -> dict[str, Any] | None:
    uri = records.store.uri_for(records.run_id, RECORDS_DIR, END_RECORD, records.project_name)
    try:
        data = records.store.load(uri)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) and data.get("format") == END_FORMAT else None


def line_entry(unit: str, line: str) -> dict[str, Any]:
    """A log entry from one line of a container's output (the step runner writes JSON lines)."""
    severity, stamp = "INFO", None
    data = json_log_line(line)
    if data is not None:
        severity, stamp = str(data.get("severity") or "INFO"), data.get("time")
    return log_entry(readable(line), unit=unit, severity=severity, timestamp=stamp)


class RunView:
    """One run, found on the engine by its id."""

    def __init__(self, client: Any, run_id: str, engine: str) -> None:
        self.client = client
        self.run_id = run_id
        # ignore_removed: the SDK lists ids, then inspects each; a container removed in between
        # (``remove = true`` units end all the time) is no error of this run's.
        handles = client.containers.list(
            all=True, ignore_removed=True, filters={"label": [f"{spec.LABEL_RUN}={run_id}", f"{spec.LABEL_ROLE}=run"]})
        if not handles:
            raise FlowymlError(
                f"no run {run_id!r} on the docker engine at {engine}: it ran on another engine, was fully cached "
                "(nothing was started), or its handle was removed (docker rm flowyml-run-<id>)")
        self.handle = handles[0]
        labels = self.handle.labels
        self.units: dict[str, list[str]] = json.loads(labels.get(spec.LABEL_UNITS) or "{}")
        self.project = labels.get(spec.LABEL_PROJECT) or "default"
        self.pipeline = labels.get(spec.LABEL_PIPELINE) or ""
        self._records: RunRecords | None = None

    @property
    def records(self) -> RunRecords:
        if self._records is None:
            from flowyml_core.shipping import stack_from_payload

            env = dict(item.split("=", 1) for item in self.handle.attrs["Config"].get("Env") or [] if "=" in item)
            payload = env.get(STACK_CONFIG_ENV)
            if not payload:
                raise FlowymlError(f"run {self.run_id}'s handle carries no stack: it was started by another version "
                                   "of flowyml-docker")
            stack = stack_from_payload(payload, os.environ, kinds=("artifact_store",))
            self._records = RunRecords(stack.artifact_store, self.run_id, self.project)
        return self._records

    def unit_containers(self) -> dict[str, Any]:
        found = self.client.containers.list(
            all=True, ignore_removed=True,
            filters={"label": [f"{spec.LABEL_RUN}={self.run_id}", f"{spec.LABEL_ROLE}=unit"]})
        return {c.labels.get(spec.LABEL_UNIT, c.name): c for c in found}

    # -- status -----------------------------------------------------------------------------
    def status(self) -> ExecutionStatus:
        end = read_end(self.records)
        if end is not None:
            return ExecutionStatus(end["status"])
        stop = self.records.stop_requested()
        active = [c for c in self.unit_containers().values() if c.status in ACTIVE]
        if not active and self.walker_gone():
            return ExecutionStatus.STOPPED if stop else ExecutionStatus.FAILED
        return ExecutionStatus.STOPPING if stop else ExecutionStatus.RUNNING

    def walker_gone(self) -> bool:
        """Whether the process walking the run has died (known only on its own machine)."""
        host, _, pid = (self.handle.labels.get(spec.LABEL_CLIENT) or "").rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def details(self) -> dict[str, Any]:
        containers = self.unit_containers()
        units = {}
        for unit, steps in self.units.items():
            container = containers.get(unit)
            info: dict[str, Any] = {"steps": steps}
            if container is not None:
                state = container.attrs.get("State") or {}
                info.update(container=container.name, state=container.status, exit_code=state.get("ExitCode"),
                            oom_killed=state.get("OOMKilled", False))
            records = self.records.read_all(steps)
            info["records"] = {name: {"status": r.status, "error": r.error} for name, r in records.items()}
            units[unit] = info
        return {"job_id": self.run_id, "pipeline": self.pipeline, "project": self.project,
                "image": self.handle.attrs["Config"].get("Image"),
                "handle": self.handle.name, "units": units}

    # -- logs -------------------------------------------------------------------------------
    def entries(self, max_entries: int = 200) -> list[dict[str, Any]]:
        """Each unit's output: from its container while it exists, else from its steps' records."""
        containers = self.unit_containers()
        found: list[dict[str, Any]] = []
        for unit, steps in self.units.items():
            container = containers.get(unit)
            if container is not None:
                text = container.logs(tail=max_entries).decode("utf-8", "replace")
                found.extend(line_entry(unit, line) for line in text.splitlines() if line.strip())
            else:
                found.extend(self.record_entries(unit, steps))
        return found[-max_entries:]

    def record_entries(self, unit: str, steps: list[str]) -> list[dict[str, Any]]:
        found = []
        records = self.records.read_all(steps)
        for step in steps:
            record = records.get(step)
            if record is None:
                continue
            for line in (record.logs or "").splitlines():
                found.append(log_entry(f"[{step}] {line}", unit=unit))
            if record.status == "failed":
                found.append(log_entry(f"step {step} failed: {record.error}", unit=unit, severity="ERROR"))
            else:
                found.append(log_entry(f"step {step} {record.status}", unit=unit))
        return found

    def stream(self, poll_interval: float) -> Iterator[dict[str, Any]]:
        """Follow every unit container of the run as it appears, until the run ends."""
        lines: queue.Queue[dict[str, Any]] = queue.Queue()
        followed: dict[str, threading.Thread] = {}
        while True:
            for unit, container in self.unit_containers().items():
                if unit not in followed:
                    followed[unit] = threading.Thread(target=_follow, args=(container, unit, lines), daemon=True,
                                                      name=f"flowyml-docker-follow-{unit}")
                    followed[unit].start()
            yield from _drain(lines, poll_interval)
            status = self.status()
            if status.is_finished:
                for thread in followed.values():
                    thread.join(timeout=5)
                yield from _drain(lines, 0)
                for unit, steps in self.units.items():
                    if unit not in followed:  # started and removed between two looks
                        yield from self.record_entries(unit, steps)
                yield end_entry(f"run {self.run_id}", status)
                return

    # -- stop -------------------------------------------------------------------------------
    def stop(self, reason: str, timeout: float) -> list[str]:
        """Let nothing more start, then stop the running containers (SIGTERM, SIGKILL after ``timeout``)."""
        import docker

        self.records.request_stop(reason)
        stopped = []
        for unit, container in self.unit_containers().items():
            if container.status not in ACTIVE:
                continue
            try:
                container.stop(timeout=int(timeout))
            except docker.errors.NotFound:
                continue  # it ended and was removed meanwhile
            stopped.append(unit)
        return stopped


def _follow(container: Any, unit: str, lines: queue.Queue) -> None:
    import docker

    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                if raw.strip():
                    lines.put(line_entry(unit, raw.decode("utf-8", "replace")))
    except docker.errors.NotFound:
        pass  # removed before we attached: its records hold its output
    if pending.strip():
        lines.put(line_entry(unit, pending.decode("utf-8", "replace")))


def _drain(lines: queue.Queue, wait: float) -> Iterator[dict[str, Any]]:
    try:
        yield lines.get(timeout=wait) if wait > 0 else lines.get_nowait()
    except queue.Empty:
        return
    while True:
        try:
            yield lines.get_nowait()
        except queue.Empty:
            return
