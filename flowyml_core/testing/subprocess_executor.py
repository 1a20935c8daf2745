"""A complete remote executor in a few lines: each unit is a ``flowyml step-runner`` subprocess.

It is what a third-party remote executor looks like when it is built on
:class:`flowyml_core.remote.RemoteRun`: start the step runner somewhere with
``task.env``, wait, and say why a unit failed when it may have left no record.
Records, the client-side cache check, the shipped stack, skips below failures
and the per-step results all come from the core. The kit uses it to check the
remote machinery without a container engine; register it in a test with
``KitProject(path, plugins={"kit-subprocess": SubprocessExecutorPlugin()})``
and use the executor flavor ``kit-subprocess``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any, Iterator

import attrs

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.hookspecs import hookimpl
from flowyml_core.log_stream import end_entry
from flowyml_core.remote import RemoteRun, UnitTask
from flowyml_core.results import ExecutionStatus, RunResult, SubmissionResult

FLAVOR = "kit-subprocess"


@attrs.define(frozen=True)
class SubprocessExecutorConfig:
    #: Independent units run at once.
    max_parallel: int = 1


class SubprocessExecutor(RemoteOrchestrator):
    """Runs every unit in its own ``flowyml step-runner`` process on this machine."""

    def __init__(self, config: SubprocessExecutorConfig | None = None) -> None:
        super().__init__(config or SubprocessExecutorConfig())
        self._runs: dict[str, tuple[threading.Thread, dict[str, Any]]] = {}
        self.launched: list[str] = []  # unit names, in launch order (tests read it)

    def run_pipeline(self, pipeline: Any, run_id: str, *, pipeline_module: str | None = None, hooks: Any = None,
                     run: Any = None, **kwargs: Any) -> RunResult | SubmissionResult:
        remote = RemoteRun.from_run_args(pipeline, run_id, pipeline_module=pipeline_module, **kwargs)
        if not remote.tasks:
            return remote.nothing_to_submit(hooks=hooks, run=run)
        box: dict[str, Any] = {}
        walker = threading.Thread(
            target=lambda: box.setdefault("result", remote.walk(self._launch, max_parallel=self.config.max_parallel,
                                                                hooks=hooks, run=run)),
            name=f"flowyml-run-{run_id}", daemon=True)
        self._runs[run_id] = (walker, box)
        walker.start()
        return SubmissionResult(run_id, lambda timeout: self.wait(run_id, timeout),
                                {"units": [t.name for t in remote.tasks]},
                                collect=lambda status, _hooks, _run: box["result"])

    def _launch(self, task: UnitTask) -> str | None:
        self.launched.append(task.name)
        env = {**os.environ, **task.env}
        done = subprocess.run([sys.executable, "-m", "flowyml_core.cli", "step-runner"], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode in (0, 1):  # 1: a step failed, and its record says why
            return None
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        return f"step runner exited with code {done.returncode}: " + " | ".join(tail)

    def wait(self, job_id: str, timeout: float | None = None) -> ExecutionStatus:
        thread, box = self._run(job_id)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"run {job_id} is still running after {timeout}s")
        return box["result"].status

    def _run(self, job_id: str) -> tuple[threading.Thread, dict[str, Any]]:
        try:
            return self._runs[job_id]
        except KeyError:
            raise FlowymlError(f"no run {job_id!r} was started by this process") from None

    def get_run_status(self, job_id: str) -> ExecutionStatus:
        thread, box = self._run(job_id)
        return ExecutionStatus.RUNNING if thread.is_alive() else box["result"].status

    def get_run_details(self, job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "status": self.get_run_status(job_id).value}

    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        return ""

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        status = self.wait(job_id)
        yield end_entry(f"run {job_id}", status)

    def stop_run(self, job_id: str, graceful: bool = True) -> None:
        raise FlowymlError("the kit's subprocess executor cannot stop runs")


class SubprocessExecutorPlugin:
    """Registers the ``kit-subprocess`` executor (in process: the kit is not a plugin distribution)."""

    @hookimpl
    def register_executors(self, register: Any) -> None:
        register(FLAVOR, SubprocessExecutor, config=SubprocessExecutorConfig,
                 summary="the kit's remote executor: each unit in a flowyml step-runner subprocess")
