"""One execution unit in one container: create, copy its private files, start, follow, wait, explain, remove.

:meth:`UnitLauncher.__call__` is the ``launch`` function
:meth:`flowyml_core.remote.RemoteRun.walk` calls for each unit. It blocks
until the container ends and returns None, or one line saying why the unit
failed when it may have left no record: killed by the OOM killer, stopped,
an exit code with the end of its log, an image that cannot run the unit.
"""

from __future__ import annotations

import collections
import json
import logging
from typing import Any, Callable, Mapping

from flowyml_core.records import RunRecords
from flowyml_core.remote import UnitTask
from flowyml_docker import spec

logger = logging.getLogger("flowyml.docker")
output_logger = logging.getLogger("flowyml.docker.output")

#: Lines of a container's output kept to explain a failure.
TAIL_LINES = 20
#: Lines of that tail shown in a failed step's error.
SHOWN_TAIL = 5
#: Exit codes of a process ended by SIGKILL / SIGTERM.
SIGNAL_EXITS = {137: "SIGKILL", 143: "SIGTERM"}


def readable(line: str) -> str:
    """The message of a step runner's JSON log line (other lines as they are)."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return line
        if isinstance(entry, dict) and "message" in entry:
            return str(entry["message"])
    return line


class UnitLauncher:
    """Runs units of one run in containers of one image on one engine."""

    def __init__(
        self,
        client: Any,
        image: str,
        *,
        run_id: str,
        records: RunRecords,
        config: Any,
        common: Mapping[str, Any],
        limits: Mapping[str, Mapping[str, Any]],
        private: bytes | None,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.image = image
        self.run_id = run_id
        self.records = records
        self.config = config
        self.common = dict(common)
        self.limits = limits
        self.private = private
        self.on_line = on_line
        self.started: list[str] = []  # unit names, in start order
        self.built: bool | None = None  # whether the image was built for this run (None: not known)

    # -- the container's life ---------------------------------------------------------------
    def __call__(self, task: UnitTask) -> str | None:
        failure = self._launch(task)
        if failure is not None:
            self._record_failure(task, failure)
        return failure

    def _record_failure(self, task: UnitTask, failure: str) -> None:
        """Leave the reason in the records too, so ``runs status|logs`` elsewhere show it after the container is gone."""
        from flowyml_core.records import StepRecord
        from flowyml_core.walker import failure_reason

        for name in task.steps:
            if self.records.read(name) is None:
                self.records.write(StepRecord(step=name, status="failed", unit=task.name, error=failure,
                                              blocks=failure_reason(name)))
                return

    def _launch(self, task: UnitTask) -> str | None:
        import docker
        import requests

        kwargs = dict(self.common)
        kwargs["environment"] = {**self.common.get("environment", {}), **task.env}
        kwargs["labels"] = {**self.common.get("labels", {}), spec.LABEL_ROLE: "unit", spec.LABEL_UNIT: task.name}
        kwargs.update(self.limits.get(task.name, {}))
        try:
            container = self._create(kwargs, task.name)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return f"docker could not create the container of unit {task.name!r}: {_explain(exc)}"
        try:
            return self._run(container, task, kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return f"docker failed while running unit {task.name!r}: {_explain(exc)}"
        finally:
            if self.config.remove:
                self._remove(container)

    def _create(self, kwargs: dict[str, Any], unit: str) -> Any:
        import docker

        name = spec.container_name(f"flowyml-{self.run_id}-{unit}")
        try:
            return self.client.containers.create(self.image, name=name, **kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: the name is taken (a kept container of an earlier try)
                raise
            logger.info("container name %s is taken; letting docker name the container of unit %s", name, unit)
            return self.client.containers.create(self.image, **kwargs)

    def _run(self, container: Any, task: UnitTask, kwargs: Mapping[str, Any]) -> str | None:
        import docker

        if self.private is not None:
            container.put_archive("/", self.private)
        stop = self.records.stop_requested()
        if stop is not None:  # asked between the walker's check and now: start nothing more
            return f"not started: {stop}"
        try:
            container.start()
        except docker.errors.APIError as exc:
            return self._start_failure(exc, task, kwargs)
        self.started.append(task.name)
        tail = self._follow(container, task.name)
        code = int(container.wait().get("StatusCode", -1))
        container.reload()
        state = container.attrs.get("State") or {}
        return self._explain_exit(code, state, tail, task, kwargs)

    def _follow(self, container: Any, unit: str) -> collections.deque[str]:
        """Pass each line of the container's output on as it arrives; keep the last ones."""
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        pending = b""
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._line(unit, raw, tail)
        if pending:
            self._line(unit, pending, tail)
        return tail

    def _line(self, unit: str, raw: bytes, tail: collections.deque[str]) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        tail.append(text)
        output_logger.info("[%s] %s", unit, readable(text))
        if self.on_line is not None:
            self.on_line(unit, text)

    def _remove(self, container: Any) -> None:
        import docker
        import requests

        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            logger.debug("container %s was removed already", container.short_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            logger.warning("could not remove container %s: %s", container.short_id, _explain(exc))

    # -- why it failed ------------------------------------------------------------------------
    def _start_failure(self, exc: Any, task: UnitTask, kwargs: Mapping[str, Any]) -> str:
        text = _explain(exc)
        if "executable file not found" in text or "no such file or directory" in text:
            return self._missing_command(kwargs, text)
        if "could not select device driver" in text:
            return (f"unit {task.name!r} asks for GPUs, and the docker engine has no GPU runtime ({text}); "
                    "install the NVIDIA container toolkit on the engine's host, or run without GPUs")
        return f"docker could not start the container of unit {task.name!r}: {text}"

    def _missing_command(self, kwargs: Mapping[str, Any], detail: str) -> str:
        command = " ".join(kwargs.get("command") or [])
        return (f"image {self.image} cannot run {command!r}: the command is not in the image ({detail}); "
                "install flowyml-core in the image (add it to requirements), or set command to where it is")

    def _explain_exit(self, code: int, state: Mapping[str, Any], tail: collections.deque[str], task: UnitTask,
                      kwargs: Mapping[str, Any]) -> str | None:
        if state.get("OOMKilled"):
            limit = spec.memory_limit(kwargs)
            return f"killed: out of memory (limit {limit})" if limit else "killed: out of memory"
        if code == 0:
            return None
        stop = self.records.stop_requested()
        if stop is not None and code in SIGNAL_EXITS:
            return f"stopped: {stop}"
        lines = [readable(line) for line in tail]
        if code == 127 and any("tini" in line and "exec" in line for line in lines):  # docker's init could not exec it
            return self._missing_command(kwargs, lines[-1])
        if any("No module named 'flowyml_core'" in line for line in lines):
            return (f"image {self.image} has no flowyml: No module named 'flowyml_core'; install flowyml-core in "
                    "the image (add it to requirements)")
        if code == 3 and any("cannot load pipeline" in line for line in lines):
            self._name_image_in_records(task)
        shown = " | ".join(lines[-SHOWN_TAIL:]) or "no output"
        signal = f" ({SIGNAL_EXITS[code]})" if code in SIGNAL_EXITS else ""
        return f"exit code {code}{signal}: {shown}"

    def _name_image_in_records(self, task: UnitTask) -> None:
        """The step runner could not import the pipeline: say which image lacks it, in the records it left."""
        for name in task.steps:
            record = self.records.read(name)
            if record is not None and record.status == "failed" and record.error and self.image not in record.error:
                record.error = f"image {self.image} lacks the pipeline's module: {record.error}"
                self.records.write(record)


def _explain(exc: Any) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())
