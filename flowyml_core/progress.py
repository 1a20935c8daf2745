"""What ``flowyml run`` shows while a pipeline runs, through the observer hooks.

On a terminal one status line is redrawn; otherwise each step is one plain
line, so CI logs stay readable.
"""

from __future__ import annotations

from typing import Any, TextIO

from flowyml_core.hookspecs import hookimpl


def _describe(result: Any) -> str:
    if not result.success:
        return "FAILED"
    if result.cached:
        return "cached"
    if result.skipped:
        return "skipped"
    return "done"


class Progress:
    def __init__(self, pipeline: Any, stack_name: str, stream: TextIO) -> None:
        self.total = len(pipeline.steps)
        self.pipeline = pipeline
        self.stack_name = stack_name
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0
        self.width = max((len(s.name) for s in pipeline.steps), default=4)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    @hookimpl
    def on_run_start(self, run: Any) -> None:
        self._write(f"running {run.pipeline_name} ({self.total} steps) on stack {run.stack_name}, run {run.run_id}\n")

    @hookimpl
    def on_step_end(self, run: Any, result: Any) -> None:
        self.done += 1
        line = (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {result.step_name:<{self.width}} "
            f"{_describe(result):<7} {result.duration_seconds:8.3f}s"
        )
        if self.tty:
            end = "\n" if not result.success or self.done == self.total else ""
            self._write("\r\033[K" + line + end)
        else:
            self._write(line + "\n")

    def summary(self, result: Any, stack: Any, elapsed: float) -> int:
        """Print the closing lines; the exit code of ``flowyml run``."""
        if result.submission is not None:
            return self._remote_summary(result, stack)
        steps = result.steps.values()
        counts = {
            "ran": sum(1 for r in steps if r.success and not r.cached and not r.skipped),
            "cached": sum(1 for r in steps if r.cached),
            "skipped": sum(1 for r in steps if r.skipped),
            "failed": sum(1 for r in steps if not r.success),
        }
        if self.tty and self.done and self.done < self.total:
            self._write("\n")
        state = "failed" if counts["failed"] else "completed"
        note = " (fully cached)" if counts["cached"] == len(result.steps) and result.steps else ""
        self._write(
            f"run {result.run_id} {state}{note}: {len(result.steps)} steps, "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + f" in {elapsed:.2f}s\n"
        )
        uris = [uri for r in steps for uri in r.artifact_uris.values()]
        if uris:
            root = _common_root(uris)
            self._write(f"outputs: {root}\n")
        for failed in result.failed_steps:
            self.stream.flush()
            import sys

            print(f"error: step {failed.step_name!r} failed: {failed.error}", file=sys.stderr)
        return 1 if counts["failed"] else 0

    def _remote_summary(self, result: Any, stack: Any) -> int:
        sub = result.submission
        self._write(f"submitted {sub.job_id} on stack {stack.name}\n")
        for key, value in sorted(sub.metadata.items()):
            self._write(f"  {key}: {value}\n")
        self._write(f"status: {result.status.value}\n")
        return 1 if result.status.is_failed else 0


def _common_root(uris: list[str]) -> str:
    parts = [u.rstrip("/").split("/") for u in uris]
    prefix = []
    for column in zip(*parts):
        if all(c == column[0] for c in column):
            prefix.append(column[0])
        else:
            break
    root = "/".join(prefix)
    return root or uris[0]
