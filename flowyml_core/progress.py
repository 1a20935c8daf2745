"""What ``flowyml run`` shows while a pipeline runs, through the observer hooks.

On a terminal one status line is redrawn in place (steps done/total, the last
step, counts so far); failures and what steps printed stay on screen above it.
Anywhere else (CI logs, pipes, files) each step is one plain line, so logs stay
readable and greppable. The run ends with a summary: counts, time, where the
outputs are, the pipeline's final results, and for a failure the step's error.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Iterable, TextIO

from flowyml_core.display import count, format_duration
from flowyml_core.hookspecs import hookimpl

#: A step's captured output longer than this many lines is shortened on screen.
MAX_LOG_LINES = 40
#: A final result's repr longer than this is shortened in the summary.
MAX_VALUE_CHARS = 100
#: On a terminal, pipelines with at most this many steps keep a line per step;
#: bigger ones keep only failed, printing or slow steps (the status line has the rest).
MAX_TTY_LINES = 50
#: A step that took at least this many seconds keeps its line on a terminal.
SLOW_STEP = 1.0
#: A final result that is text is shown up to this length.
MAX_TEXT_CHARS = 300

logger = logging.getLogger("flowyml.progress")


def _describe(result: Any) -> str:
    if not result.success:
        return "FAILED"
    if result.cached:
        return "cached"
    if result.skipped:
        return "skipped"
    return "done"


def _short(value: Any) -> str:
    """One line for a final result: text as it is (it is meant to be read), anything else as repr."""
    if isinstance(value, str):
        text = " ".join(value.split())
        limit = MAX_TEXT_CHARS
        return text if len(text) <= limit else text[: limit - 3] + "..."
    try:
        text = repr(value)
    except Exception as exc:  # a user's __repr__ must not break the summary
        text = f"<{type(value).__name__}: repr failed: {exc!r}>"
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _location(component: Any) -> str | None:
    """Where a store keeps things: its ``root`` (absolute), else its config's ``path``/``url``/``root``."""
    try:
        root = getattr(component, "root", None)
    except Exception as exc:  # a store that cannot say where it is must not break the summary
        logger.debug("cannot read root of %r: %r", component, exc)
        root = None
    if isinstance(root, str) and root:
        return root
    config = getattr(component, "config", None)
    for attr in ("path", "url", "root"):
        value = getattr(config, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class _ReportedByProgress(logging.Filter):
    """Drop the executor's step-failure log records: the progress output shows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "flowyml_step_failure", False)


class Progress:
    """Observer-hook plugin registered by ``flowyml run`` for the duration of a run."""

    def __init__(
        self, pipeline: Any, stack_name: str, stream: TextIO, tty: bool | None = None, secrets: Iterable[str] = ()
    ) -> None:
        self.total = len(pipeline.steps)
        self.pipeline = pipeline
        self.stack_name = stack_name
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)()) if tty is None else tty
        self.done = 0
        self.counts = {"done": 0, "cached": 0, "skipped": 0, "FAILED": 0}
        self.width = max((len(s.name) for s in pipeline.steps), default=4)
        self._status_shown = False
        self.started = time.perf_counter()
        self._filter = _ReportedByProgress()
        self._filtered_logger = logging.getLogger("flowyml.execution")
        #: Values read from ``${env:…}`` for this stack: never shown, whatever line they end up in.
        self.secrets = [s for s in secrets if s]
        self._closed = False  # the reader went away (``flowyml run … | head``)
        self.ended: set[str] = set()

    def _scrub(self, text: str) -> str:
        if not self.secrets:
            return text
        from flowyml_core.stacks import scrub

        return scrub(text, self.secrets)

    def _write(self, text: str) -> None:
        if self._closed:
            return
        try:
            self.stream.write(self._scrub(text))
            self.stream.flush()
        except BrokenPipeError:
            # The run goes on (its results are cached and stored) but shows nothing more.
            self._closed = True
            discard_output(self.stream)

    def _clear_status(self) -> None:
        if self.tty and self._status_shown:
            self._write("\r\033[K")
            self._status_shown = False

    @hookimpl
    def on_run_start(self, run: Any) -> None:
        self.started = time.perf_counter()
        from flowyml_core.stacks import printable

        self._filtered_logger.addFilter(self._filter)
        stack = printable(str(run.stack_name))
        self._write(f"running {run.pipeline_name} on stack {stack} ({count(self.total, 'step')}, run {run.run_id})\n")

    @hookimpl
    def on_step_end(self, run: Any, result: Any) -> None:
        self.ended.add(result.step_name)
        self.done += 1
        state = _describe(result)
        self.counts[state] += 1
        counter = f"[{self.done:>{len(str(self.total))}}/{self.total}]"
        line = f"{counter} {result.step_name:<{self.width}}  {state:<7} {format_duration(result.duration_seconds):>8}"
        if result.retries:
            line += f"  (after {result.retries} retr{'y' if result.retries == 1 else 'ies'})"
        if not result.success and result.error:
            line += f"  {result.error.splitlines()[0]}"
        elif result.skipped and result.error:
            line += f"  ({result.error})"
        detail = self._log_lines(result.logs, " " * (len(counter) + 1) + "| ")
        if not self.tty:
            self._write(line + "\n" + detail)
            return
        self._clear_status()
        # Every step stays on screen in a small pipeline; in a big one only
        # those worth reading (failed, printed something, or slow), and the
        # redrawn status line carries the rest.
        keep = (
            self.total <= MAX_TTY_LINES or not result.success or bool(detail) or result.duration_seconds >= SLOW_STEP
        )
        if keep:
            self._write(line + "\n" + detail)
        tally = ", ".join(f"{n} {k.lower()}" for k, n in self.counts.items() if n)
        elapsed = format_duration(time.perf_counter() - self.started)
        status = f"{counter} {tally} in {elapsed}"
        if not keep:
            status += f" | last: {result.step_name} {state} {format_duration(result.duration_seconds)}"
        self._write(status[: self._columns()])
        self._status_shown = True

    @hookimpl
    def on_run_end(self, run: Any, result: Any) -> None:
        self._filtered_logger.removeFilter(self._filter)

    def _columns(self) -> int:
        import shutil

        return max(40, shutil.get_terminal_size((100, 24)).columns - 1)

    @staticmethod
    def _log_lines(logs: str | None, prefix: str) -> str:
        if not logs:
            return ""
        lines = logs.rstrip("\n").splitlines()
        more = len(lines) - MAX_LOG_LINES
        if more > 0:
            lines = lines[:MAX_LOG_LINES] + [f"... {more} more lines (in RunResult.steps[...].logs)"]
        return "".join(f"{prefix}{text}\n" for text in lines)

    # -- the end ---------------------------------------------------------------
    def summary(self, result: Any, stack: Any, elapsed: float) -> int:
        """Print the closing lines; return the exit code of ``flowyml run``."""
        self._filtered_logger.removeFilter(self._filter)
        self._clear_status()
        steps = list(result.steps.values())
        if result.submission is not None and not steps:  # not waited for, or no per-step results
            return self._remote_summary(result, stack)
        ran = sum(1 for r in steps if r.success and not r.cached and not r.skipped)
        cached = sum(1 for r in steps if r.cached)
        skipped = sum(1 for r in steps if r.skipped)
        failed = [r for r in steps if not r.success]
        counts = f"{ran} ran, {cached} cached, {skipped} skipped, {len(failed)} failed"
        if failed:
            head = f"run {result.run_id} FAILED in {format_duration(elapsed)}: {counts}"
        elif steps and cached == len(steps):
            head = f"run {result.run_id} completed in {format_duration(elapsed)}, fully cached: " + \
                ("its one step came from the cache" if cached == 1 else f"all {cached} steps came from the cache")
            if _is_remote(stack):
                head += "; nothing was built or submitted"
        else:
            head = f"run {result.run_id} completed in {format_duration(elapsed)}: {counts}"
        self._write(head + "\n")
        if result.submission is not None:
            self._write(f"job: {result.submission.job_id} on stack {stack.name}\n")
        self._write_locations(result, stack, steps, cached)
        if not failed and not _is_remote(stack):  # a remote run's values stay in its stores until asked for
            self._write_results(result)
        for bad in failed:
            self._report_failure(bad)
        return 1 if failed else 0

    def _write_locations(self, result: Any, stack: Any, steps: list[Any], cached: int) -> None:
        uris = [uri for r in steps for uri in r.artifact_uris.values()]
        if uris:
            self._write(f"outputs: {_common_root(uris)}\n")
        store = getattr(stack, "artifact_store", None)
        if not uris and store is not None and _location(store):
            reason = "nothing new was written (cached steps reuse earlier runs' outputs)" if cached else "nothing was written"
            self._write(f"outputs: {reason}; artifact store at {_location(store)}\n")
        cache = getattr(stack, "cache_store", None)
        if cached and cache is not None and _location(cache):
            self._write(f"cache: {_location(cache)}\n")

    def _write_results(self, result: Any) -> None:
        """The pipeline's final assets (produced, consumed by no step): what the user came for."""
        consumed = {a for s in self.pipeline.steps for a in s.inputs}
        # By name, then read: outputs an executor left elsewhere (a Dask worker) are fetched when read,
        # and only the final ones are shown.
        finals = [(name, result.outputs[name]) for name in result.outputs if name not in consumed]
        if not finals:
            return
        width = max(len(name) for name, _ in finals)
        self._write("results:\n")
        for name, value in finals:
            self._write(f"  {name:<{width}} = {_short(value)}\n")

    def _report_failure(self, failed: Any) -> None:
        self._write("")  # flushes what is above, so the error follows it on a shared terminal
        error = self._scrub(failed.error or "failed").rstrip("\n")
        first, _, rest = error.partition("\n")
        print(f"error: step {failed.step_name!r} failed: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        if failed.logs:
            print(f"output of step {failed.step_name!r} before it failed:", file=sys.stderr)
            print(self._scrub(self._log_lines(failed.logs, "  | ")).rstrip("\n"), file=sys.stderr)

    def _remote_summary(self, result: Any, stack: Any) -> int:
        from flowyml_core.stacks import printable

        sub = result.submission
        self._write(f"submitted {sub.job_id} on stack {printable(stack.name)}\n")
        for key, value in sorted(sub.metadata.items()):
            self._write(f"  {key}: {value}\n")
        self._write(f"status: {result.status.value}\n")
        return 1 if result.status.is_failed else 0

    # -- Ctrl-C ------------------------------------------------------------------
    def running_steps(self, frames: Iterable[Any]) -> tuple[list[str], bool]:
        """The steps running when Ctrl-C came, and whether that is certain.

        ``frames`` are the threads' current frames at the interrupt: a step
        running in this process (in any thread) has its function's frame on
        one of those stacks. A step running elsewhere (another process, a
        container) does not; then the best answer is the steps that had not
        ended although every step they depend on had.
        """
        import inspect

        codes = {}
        for s in self.pipeline.steps:
            func = inspect.unwrap(s.func)
            code = getattr(func, "__code__", None)
            if code is not None:
                codes[code] = s.name
        seen: list[str] = []
        for frame in frames:
            while frame is not None:
                name = codes.get(frame.f_code)
                if name is not None and name not in seen:
                    seen.append(name)
                frame = frame.f_back
        if seen:
            return [s.name for s in self.pipeline.steps if s.name in seen], True
        producers = {a: s.name for s in self.pipeline.steps for a in s.outputs}
        frontier = [
            s.name for s in self.pipeline.steps
            if s.name not in self.ended and all(producers[a] in self.ended for a in s.inputs if a in producers)
        ]
        return frontier, False

    def interrupted(self, frames: Iterable[Any]) -> str:
        """What ``flowyml run`` says after Ctrl-C: which steps were cut short."""
        self._clear_status()
        names, certain = self.running_steps(frames)
        done = f"{self.done}/{self.total} steps had ended"
        if not names:
            return f"{done}; no step was running"
        listed = ", ".join(repr(n) for n in names)
        plural = "s" if len(names) > 1 else ""
        if certain:
            return f"while running step{plural} {listed} ({done})"
        return f"while step{plural} {listed} {'were' if plural else 'was'} running or about to run ({done})"


def discard_output(stream: TextIO) -> None:
    """Point a stream whose reader went away at /dev/null.

    Python flushes stdout once more at exit; with the pipe closed that flush
    fails too and prints "Exception ignored ... BrokenPipeError". Writing to
    /dev/null instead lets the process end quietly, as ``| head`` expects.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a StringIO, or a closed stream: nothing at exit to fail
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _is_remote(stack: Any) -> bool:
    from flowyml_core.components import RemoteOrchestrator

    return isinstance(getattr(stack, "executor", None), RemoteOrchestrator)


def _common_root(uris: list[str]) -> str:
    """The longest common directory of the URIs (the run's directory, usually)."""
    parts = [u.rstrip("/").split("/") for u in uris]
    if len(parts) == 1:
        parts[0] = parts[0][:-1] or parts[0]
    prefix = []
    for column in zip(*parts):
        if all(c == column[0] for c in column):
            prefix.append(column[0])
        else:
            break
    root = "/".join(prefix)
    if root.endswith(":/"):  # "gs://bucket" split on "/" keeps an empty part
        root += "/"
    return root or uris[0]
