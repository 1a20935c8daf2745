"""``flowyml run``, ``flowyml runs status|logs|stop`` and ``flowyml step-runner``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from flowyml_core.cli.common import out
from flowyml_core.errors import FlowymlError


def cmd_run(args: argparse.Namespace) -> int:
    from flowyml_core.loader import load_pipeline
    from flowyml_core.params import check_params, parse_param_items
    from flowyml_core.pipeline import run_on_stack
    from flowyml_core.plugins import get_registry
    from flowyml_core.progress import Progress
    from flowyml_core.stacks import StackRegistry, printable

    raw_params = parse_param_items(args.param)
    pipeline = load_pipeline(args.target)
    pipeline.build()
    params = check_params(pipeline, raw_params)
    stack = StackRegistry.load().resolve(args.stack)
    plugins = get_registry()
    progress = Progress(pipeline, stack.name, sys.stdout, secrets=stack.secrets)
    plugins.pm.register(progress, name="flowyml-cli-progress")
    started = time.perf_counter()
    submission = None
    interrupt = _InterruptRecorder()
    try:
        with interrupt:
            result = run_on_stack(
                pipeline, stack, context=params, run_id=args.run_id, wait=False,
                source=args.target, registry=plugins,
            )
            submission = result.submission
            if submission is not None and not args.no_wait:
                status = _wait_for_remote(stack, submission, args.timeout, args.follow)
                result = submission.result(status, result.run_id)
    except KeyboardInterrupt as exc:
        if submission is not None and str(exc):  # the executor says what it did about the run (stopped it)
            raise KeyboardInterrupt(str(exc)) from None
        if submission is not None:
            raise KeyboardInterrupt(
                f"while waiting for {submission.job_id}, which goes on remotely; cancel it with: "
                f"flowyml runs stop {submission.job_id} --stack {printable(stack.name)}"
            ) from None
        raise KeyboardInterrupt(progress.interrupted(interrupt.frames)) from None
    finally:
        plugins.pm.unregister(name="flowyml-cli-progress")
    return progress.summary(result, stack, time.perf_counter() - started)


class _InterruptRecorder:
    """While active, Ctrl-C first notes every thread's frames, then interrupts as usual.

    The frames say which steps were running: by the time KeyboardInterrupt
    reaches the CLI the stacks have unwound, and worker threads have finished.
    Only the default handler is replaced, and only in the main thread.
    """

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.frames = [frame, *sys._current_frames().values()]
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptRecorder:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            import signal

            signal.signal(signal.SIGINT, self._previous)


def _wait_for_remote(stack: Any, submission: Any, timeout: float | None, follow: bool) -> Any:
    """Wait for a remote run (streaming its logs with ``--follow``), within ``timeout``."""
    import threading

    from flowyml_core.stacks import printable

    streamer = None
    if follow:
        print(f"following {submission.job_id}", flush=True)
        streamer = threading.Thread(
            target=_print_log_entries, args=(stack.executor.stream_logs(submission.job_id), False),
            name="flowyml-follow", daemon=True,
        )
        streamer.start()
    try:
        status = submission.wait(timeout)
    except TimeoutError:
        raise FlowymlError(
            f"run {submission.job_id} is still running after {timeout:g}s; it goes on remotely. "
            f"Check it with: flowyml runs status {submission.job_id} --stack {printable(stack.name)}"
        ) from None
    if streamer is not None:
        # The stream ends by itself once it sees the job finished; give it a poll or two.
        streamer.join(timeout=30)
    return status


def _print_log_entries(entries: Any, as_json: bool) -> None:
    from flowyml_core.log_stream import format_entry

    for entry in entries:
        if as_json:
            print(json.dumps(entry, default=str), flush=True)
        else:
            print(format_entry(entry), flush=True)


# -- runs status|logs|stop ----------------------------------------------------------
def remote_stack(stack_name: str | None) -> Any:
    """The stack ``stack_name`` resolved, refused unless its executor is a remote orchestrator."""
    from flowyml_core.components import RemoteOrchestrator
    from flowyml_core.stacks import StackRegistry

    stack = StackRegistry.load().resolve(stack_name)
    if not isinstance(stack.executor, RemoteOrchestrator):
        flavor = stack.spec.components["executor"].flavor
        raise FlowymlError(
            f"stack {stack.name!r} runs on executor {flavor!r}, which does not track remote runs; "
            "pass --stack with a remote stack (e.g. a vertex one)"
        )
    return stack


def _recorded_run(run_or_job_id: str) -> Any:
    """The history entry ``run_or_job_id`` names (a run id, its start, or a job id), if any."""
    from flowyml_core.cli.history import project_dir
    from flowyml_core.history import RunNotFoundError, find_run, list_runs

    directory = project_dir()
    try:
        return find_run(run_or_job_id, directory)
    except RunNotFoundError:
        pass  # perhaps a job id (or a run this project did not record): asked of the stack below
    for entry in list_runs(directory):
        if entry.job_id == run_or_job_id:
            return entry
    return None


def cmd_runs(args: argparse.Namespace) -> int:
    from flowyml_core.stacks import printable

    entry = _recorded_run(args.job_id)
    job_id, stack_name = args.job_id, args.stack
    if entry is not None and entry.job_id is None:
        return _in_process_run(entry, args)
    if entry is not None:
        job_id, stack_name = entry.job_id, args.stack or entry.stack
    try:
        stack = remote_stack(stack_name)
    except FlowymlError:
        if entry is not None or args.stack is not None:
            raise
        # Neither a recorded run nor a job of the active stack: say that first, not that the stack is local.
        from flowyml_core.cli.history import project_dir
        from flowyml_core.history import runs_dir

        raise FlowymlError(
            f"no run {printable(args.job_id)} is recorded in {runs_dir(project_dir())} (see: flowyml runs "
            "list), and the active stack is not a remote one; for a job this project did not record, pass --stack "
            "with the remote stack it ran on"
        ) from None
    orchestrator = stack.executor
    if args.action == "status":
        status = orchestrator.get_run_status(job_id)
        if entry is not None:
            from flowyml_core.cli.history import write_back

            write_back(entry, status, stack)
        details = orchestrator.get_run_details(job_id) if args.json else {}
        out({"job_id": job_id, "status": status.value, **details}, args.json, lambda: status.value)
        return 0 if not status.is_failed else 1
    if args.action == "logs":
        if args.follow:
            _print_log_entries(orchestrator.stream_logs(job_id), as_json=args.json)
            return 0
        print(orchestrator.get_run_logs(job_id))
        return 0
    orchestrator.stop_run(job_id)
    print(f"cancellation requested for {printable(job_id)}")
    return 0


def _in_process_run(entry: Any, args: argparse.Namespace) -> int:
    """``runs status|logs|stop`` of a run that ran in the process that started it (no job to ask)."""
    from flowyml_core.stacks import printable

    if args.action == "status":
        out({"run_id": entry.run_id, "status": entry.status, "stack": entry.stack}, args.json, lambda: entry.status)
        return 1 if entry.status == "failed" else 0
    what = "there are no remote logs to read" if args.action == "logs" else "there is nothing to stop"
    raise FlowymlError(
        f"run {printable(entry.run_id)} (stack {printable(entry.stack)}, executor {printable(entry.executor or '?')}) "
        f"has no remote job: it ran in the process that started it, or ended before anything was submitted, so "
        f"{what}; see its steps with: flowyml runs show {printable(entry.run_id)}"
    )


# -- step-runner ------------------------------------------------------------------
def cmd_step_runner(args: argparse.Namespace) -> int:
    from flowyml_core.step_runner import main as step_runner_main

    return step_runner_main(os.environ)
