"""The ``docker`` executor: each execution unit in its own container, through ``flowyml step-runner``.

This process walks the run (:meth:`flowyml_core.remote.RemoteRun.walk`): it
checks the cache first (a fully cached run connects to no engine and builds
nothing), builds or finds the image, then starts one container per unit as
its inputs are ready, up to ``max_parallel`` at once, and reads each unit's
results back from the records the step runner wrote. The walk goes on in a
background thread (``run_pipeline`` returns a :class:`SubmissionResult` at
once); the process waits for it before exiting, even with ``--no-wait``, so a
run is never cut short silently.

Data reaches the containers through the stores: a store on this machine is
bind-mounted at the same path; URLs pass unchanged. Secret values
(``${env:…}`` references of the stack) and the stores' per-user signing key
are copied into each container before it starts, never written into its spec
(see :mod:`flowyml_docker.spec`). Run control from any process goes through
the engine and the records (see :mod:`flowyml_docker.runs`).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.log_stream import end_entry, format_entry
from flowyml_core.remote import RemoteRun, module_in_project
from flowyml_core.results import ExecutionStatus, RunResult, SubmissionResult
from flowyml_docker import spec
from flowyml_docker.config import DockerExecutorConfig
from flowyml_docker.engine import connect, engine_url, is_local_engine
from flowyml_docker.launcher import UnitLauncher
from flowyml_docker.runs import RunView, create_handle, line_entry, write_end

logger = logging.getLogger("flowyml.docker")

#: Lines of container output held for a ``--follow`` reader of this process.
MAX_QUEUED_LINES = 10_000
STOP_REASON = "stopped by request (flowyml runs stop)"
INTERRUPT_REASON = "interrupted (Ctrl-C in the process walking the run)"


_live: weakref.WeakSet[_Session] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hook_set = False


def _finish_walks_at_exit() -> None:
    """Let walks this process started end before it exits (``--no-wait``, ``--timeout``).

    Registered with ``threading._register_atexit`` after ``concurrent.futures``
    registered its own: those hooks run last-first, before non-daemon threads
    are joined, so this runs while the walker's thread pool can still start
    units (once ``concurrent.futures`` has shut its pools, nothing more could).
    """
    for session in list(_live):
        if session.done.is_set():
            continue
        run_id = session.remote.run_id
        logger.warning("run %s goes on: this process starts its remaining units and exits when it ends "
                       "(stop it with: flowyml runs stop %s --stack %s)", run_id, run_id,
                       session.remote.stack_name or "STACK")
        try:
            session.done.wait()
        except KeyboardInterrupt:  # Ctrl-C while waiting to exit: stop the run rather than orphan it
            session.stop_running()
            session.done.wait()


def _keep_process_for_walks() -> None:
    global _exit_hook_set
    with _exit_hook:
        if _exit_hook_set:
            return
        import concurrent.futures.thread  # noqa: F401  (its exit hook first, so that ours runs before it)

        register = getattr(threading, "_register_atexit", None)
        if register is None:  # not CPython 3.9+: the walk may stop at exit, as a daemon thread would
            logger.debug("threading._register_atexit is missing: walks do not outlive the main thread")
        else:
            register(_finish_walks_at_exit)
        _exit_hook_set = True


class _Session:
    """One run walked by this process: its thread, its result, its output for ``stream_logs``."""

    def __init__(self, remote: RemoteRun, launcher: UnitLauncher, max_parallel: int, hooks: Any, run: Any) -> None:
        self.remote = remote
        self.launcher = launcher
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue(MAX_QUEUED_LINES)
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        # Set when the walk has ended. Waiters wait on this, never on ``thread.join``: in CPython 3.11 a
        # join interrupted by Ctrl-C marks the still running thread as stopped, and the process would
        # then exit without waiting for the units it was stopping (their containers and records lost).
        self.done = threading.Event()
        launcher.on_line = self.push
        # The process waits for the run to end before exiting (see _finish_walks_at_exit).
        self.thread = threading.Thread(target=self._walk, args=(max_parallel, hooks, run),
                                       name=f"flowyml-docker-{remote.run_id}", daemon=True)
        _keep_process_for_walks()
        _live.add(self)

    def stop_running(self) -> None:
        """Stop the containers of this run that are running (after a stop request)."""
        RunView(self.launcher.client, self.remote.run_id, "this engine").stop(
            INTERRUPT_REASON, self.launcher.config.stop_timeout)

    def push(self, unit: str, line: str) -> None:
        try:
            self.lines.put_nowait(line_entry(unit, line))
        except queue.Full:  # nobody follows this run's output: the records keep it
            logger.debug("output of unit %s not queued for --follow (queue full)", unit)

    def _walk(self, max_parallel: int, hooks: Any, run: Any) -> None:
        try:
            self._walk_and_record(max_parallel, hooks, run)
        finally:
            self.done.set()

    def _walk_and_record(self, max_parallel: int, hooks: Any, run: Any) -> None:
        try:
            self.result = self.remote.walk(self.launcher, max_parallel=max_parallel, hooks=hooks, run=run)
            status = self.result.status
        except BaseException as exc:  # re-raised by wait() in the caller's thread
            self.error = exc
            status = ExecutionStatus.FAILED
        try:
            write_end(self.remote.records, status)
        except Exception as exc:  # the run's result stands; other processes will see it as unfinished
            logger.warning("run %s: could not record its end (%s: %s)", self.remote.run_id, type(exc).__name__, exc)


class DockerExecutor(RemoteOrchestrator):
    """Runs every execution unit in its own container on a Docker engine."""

    def __init__(self, config: DockerExecutorConfig | None = None) -> None:
        super().__init__(config or DockerExecutorConfig())
        self._client: Any = None
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    # -- engine ---------------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        return engine_url(self.config.docker_host)[0]

    def client(self, stack: str | None = None) -> Any:
        with self._lock:
            if self._client is None:
                self._client = connect(self.config.docker_host, stack)
            return self._client

    def validate(self) -> None:
        self.client()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- running ------------------------------------------------------------------------------------
    def run_pipeline(self, pipeline: Any, run_id: str, *, pipeline_module: str | None = None,  # type: ignore[override]
                     hooks: Any = None, run: Any = None, **kwargs: Any) -> RunResult | SubmissionResult:
        cfg = self.config
        root = Path(cfg.build_context).resolve()
        module = module_in_project(pipeline_module, root) if pipeline_module else None
        remote = RemoteRun.from_run_args(pipeline, run_id, pipeline_module=module, **kwargs)
        if not remote.tasks:
            return remote.nothing_to_submit(hooks=hooks, run=run)
        launcher = self.launcher(remote, remote.stack_name)
        create_handle(launcher.client, launcher.image, run_id=run_id, pipeline=pipeline.name,
                      project=pipeline.project_name, units={t.name: list(t.steps) for t in remote.tasks},
                      payload=remote.payload, labels=dict(cfg.labels), command=list(cfg.command))
        session = _Session(remote, launcher, cfg.max_parallel, hooks, run)
        self._sessions[run_id] = session
        session.thread.start()
        metadata = {"units": [t.name for t in remote.tasks], "cached_steps": sorted(remote.cached),
                    "image": launcher.image, "built": launcher.built, "docker_host": self.engine}
        return SubmissionResult(run_id, lambda timeout: self.wait(run_id, timeout), metadata,
                                collect=lambda status, _hooks, _run: self._result(run_id))

    def launcher(self, remote: RemoteRun, stack_name: str | None = None) -> UnitLauncher:
        """What starts the run's units: everything checked and the image ready before the first one starts."""
        cfg = self.config
        client = self.client(stack_name)
        cpus = client.info().get("NCPU")
        limits = {task.name: spec.container_limits(task, cpus) for task in remote.tasks}
        local = is_local_engine(self.engine)
        mounts = spec.store_mounts(remote.payload, local, self.engine)
        user = spec.default_user(cfg.user, bool(mounts))
        secrets = spec.referenced_secrets(remote.payload, os.environ)
        key = spec.user_signing_key() if spec.needs_user_key(remote.payload) else None
        image, built = self._image(client, local)
        labels = {**cfg.labels, spec.LABEL_RUN: remote.run_id, spec.LABEL_PIPELINE: remote.pipeline.name,
                  spec.LABEL_PROJECT: remote.pipeline.project_name}
        common: dict[str, Any] = {
            "command": list(cfg.command), "environment": {**cfg.env_vars, **spec.private_env(secrets, key)},
            "labels": labels, "volumes": {**mounts, **spec.extra_volumes(cfg.volumes)}, "init": True,
        }
        if cfg.network:
            common["network_mode"] = cfg.network
        if user:
            common["user"] = user
        launcher = UnitLauncher(client, image, run_id=remote.run_id, records=remote.records, config=cfg,
                                common=common, limits=limits, private=spec.private_archive(secrets, key, user))
        launcher.built = built
        return launcher

    def _image(self, client: Any, local_engine: bool) -> tuple[str, bool | None]:
        """The image to run and whether it was built now (None: reused or built, per the registry)."""
        import docker

        from flowyml_docker.images import BuildSpec, build_and_push, build_image, image_repository, pack_context

        cfg = self.config
        if cfg.image:
            try:
                client.images.get(cfg.image)
            except docker.errors.ImageNotFound:
                logger.info("pulling %s", cfg.image)
                try:
                    client.images.pull(cfg.image)
                except docker.errors.APIError as exc:
                    raise FlowymlError(
                        f"image {cfg.image} (option image) is not on the docker engine at {self.engine} and could not "
                        f"be pulled: {exc.explanation or exc}; pull or build it there, or leave image unset to build "
                        "one from the project") from None
            return cfg.image, False
        context = Path(cfg.build_context).resolve()
        name = cfg.image_name or "flowyml/" + (re.sub(r"[^a-z0-9._-]+", "-", context.name.lower()).strip("-.") or "project")
        build = BuildSpec(context=context, base_image=cfg.effective_base_image, requirements=tuple(cfg.requirements),
                          dockerfile=cfg.dockerfile, build_args=dict(cfg.build_args), platform=cfg.platform)
        if cfg.registry and not local_engine:
            return build_and_push(client, build, image_repository(cfg.registry, name)), None
        packed = pack_context(build)
        try:
            image = f"{name}:{packed.tag}"
            try:
                client.images.get(image)
                logger.info("image %s is up to date (same content); not rebuilding", image)
                return image, False
            except docker.errors.ImageNotFound:
                return build_image(client, build, name, packed), True
        finally:
            packed.tar.close()

    def _session(self, job_id: str) -> _Session | None:
        return self._sessions.get(job_id)

    def _result(self, job_id: str) -> RunResult:
        session = self._sessions[job_id]
        if session.error is not None:
            raise session.error
        assert session.result is not None
        return session.result

    def wait(self, job_id: str, timeout: float | None = None) -> ExecutionStatus:
        session = self._session(job_id)
        if session is None:  # a run walked by another process: watch its records
            return self._wait_elsewhere(job_id, timeout)
        try:
            finished = session.done.wait(timeout)
        except KeyboardInterrupt:  # Ctrl-C where the run is walked: stop it rather than orphan its containers
            logger.warning("run %s: interrupted; stopping its containers (Ctrl-C again to leave them)", job_id)
            RunView(self.client(), job_id, self.engine).stop(INTERRUPT_REASON, self.config.stop_timeout)
            stack = self._stack_name(session)
            raise KeyboardInterrupt(
                f"run {job_id} was stopped: its running containers were stopped and nothing more starts; "
                f"see it with: flowyml runs show {job_id} (or runs logs {job_id} --stack {stack})") from None
        if not finished:
            raise TimeoutError(f"run {job_id} is still running after {timeout}s")
        return self._result(job_id).status

    @staticmethod
    def _stack_name(session: _Session) -> str:
        from flowyml_core.display import printable

        return printable(session.remote.stack_name) if session.remote.stack_name else "STACK"

    def _wait_elsewhere(self, job_id: str, timeout: float | None) -> ExecutionStatus:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        view = RunView(self.client(), job_id, self.engine)
        while True:
            status = view.status()
            if status.is_finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {job_id} is still running after {timeout}s")
            time.sleep(self.config.poll_interval)

    # -- run control --------------------------------------------------------------------------------
    def get_run_status(self, job_id: str) -> ExecutionStatus:
        session = self._session(job_id)
        if session is not None and session.done.is_set() and session.result is not None:
            return session.result.status
        return RunView(self.client(), job_id, self.engine).status()

    def get_run_details(self, job_id: str) -> dict[str, Any]:
        view = RunView(self.client(), job_id, self.engine)
        return {**view.details(), "status": self.get_run_status(job_id).value, "docker_host": self.engine}

    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        view = RunView(self.client(), job_id, self.engine)
        return "\n".join(format_entry(e) for e in view.entries(max_entries))

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        session = self._session(job_id)
        if session is None:
            yield from RunView(self.client(), job_id, self.engine).stream(poll_interval or self.config.poll_interval)
            return
        while True:
            try:
                yield session.lines.get(timeout=self.config.poll_interval)
            except queue.Empty:
                if session.done.is_set() and session.lines.empty():
                    break
        status = self.get_run_status(job_id)
        yield end_entry(f"run {job_id}", status)

    def stop_run(self, job_id: str, graceful: bool = True) -> None:
        view = RunView(self.client(), job_id, self.engine)
        stopped = view.stop(STOP_REASON, self.config.stop_timeout if graceful else 0)
        logger.info("run %s: nothing more starts; stopped %s", job_id, ", ".join(stopped) or "no running unit")
