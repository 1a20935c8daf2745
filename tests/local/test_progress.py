"""The run display: plain lines off a terminal, one redrawn line on it, and a useful summary."""

from __future__ import annotations

import io
import logging
import re
from types import SimpleNamespace

import pytest

from flowyml_core import Context, Pipeline, step
from flowyml_core.execution import Run
from flowyml_core.progress import Progress, _common_root, format_duration
from flowyml_local.executor import LocalExecutor


def _pipeline() -> Pipeline:
    @step(outputs=["rows"])
    def load() -> list[int]:
        print("read 3 rows")
        return [1, 2, 3]

    @step(inputs=["rows"], outputs=["total"], retry=1, retry_delay=0)
    def add(rows: list[int], _calls: list[int] = []) -> int:  # noqa: B006 - counts attempts across calls
        _calls.append(1)
        if len(_calls) == 1:
            raise ConnectionError("flaky")
        return sum(rows)

    @step(inputs=["rows"], outputs=["extra"], condition=lambda enabled: enabled)
    def optional(rows: list[int]) -> int:
        return len(rows)

    return Pipeline("demo", [load, add, optional])


class _Hooks:
    """Adapts a Progress to the walker's ``hooks.on_step_end`` call."""

    def __init__(self, progress: Progress) -> None:
        self.on_step_end = _Call(progress.on_step_end)


class _Call:
    def __init__(self, fn):  # type: ignore[no-untyped-def]
        self.fn = fn

    def get_hookimpls(self) -> list[object]:
        return [self.fn]

    def __call__(self, **kwargs):  # type: ignore[no-untyped-def]
        return self.fn(**kwargs)


def _run(tty: bool) -> tuple[str, int, Progress]:
    pipeline = _pipeline()
    stream = io.StringIO()
    progress = Progress(pipeline, "local", stream, tty=tty)
    run = Run(run_id="r1", pipeline_name="demo", stack_name="local")
    progress.on_run_start(run=run)
    result = LocalExecutor().run_pipeline(pipeline, "r1", context=Context(enabled=False), hooks=_Hooks(progress), run=run)
    progress.on_run_end(run=run, result=result)
    stack = SimpleNamespace(name="local", artifact_store=None, cache_store=None)
    code = progress.summary(result, stack, 0.25)
    return stream.getvalue(), code, progress


def test_plain_lines_when_not_a_terminal() -> None:
    text, code, _ = _run(tty=False)
    assert code == 0
    assert "\r" not in text and "\033" not in text
    lines = text.splitlines()
    assert lines[0] == "running demo on stack local (3 steps, run r1)"
    assert lines[1].startswith("[1/3] load ") and " done " in lines[1]
    assert lines[2].strip() == "| read 3 rows"
    assert lines[3].startswith("[2/3] add ") and lines[3].endswith("(after 1 retry)")
    assert lines[4].startswith("[3/3] optional  skipped")
    assert lines[5] == "run r1 completed in 0.250s: 2 ran, 0 cached, 1 skipped, 0 failed"
    assert lines[6:] == ["results:", "  total = 6"]


def test_terminal_redraws_one_status_line() -> None:
    text, code, _ = _run(tty=True)
    assert code == 0
    assert text.count("\r\033[K") >= 3  # redrawn after each step and cleared before the summary
    # the step that printed something stays on screen with its output
    assert "\n[1/3] load      done " in text and "| read 3 rows\n" in text
    assert re.search(r"\[3/3\] 2 done, 1 skipped in \d+\.\d{3}s\r\033\[K", text)  # the live tally, then cleared
    screen = [segment.split("\r\033[K")[-1] for segment in text.split("\n")]  # what a terminal shows
    assert [line.split()[1] for line in screen if line.startswith("[")] == ["load", "add", "optional"]
    assert text.rstrip("\n").splitlines()[-3].endswith("run r1 completed in 0.250s: 2 ran, 0 cached, 1 skipped, 0 failed")


def test_failure_summary_exit_code_and_error(capsys: pytest.CaptureFixture[str]) -> None:
    @step(outputs=["a"])
    def bad() -> int:
        print("partial work")
        raise ZeroDivisionError("division by zero in bad")

    pipeline = Pipeline("f", [bad])
    stream = io.StringIO()
    progress = Progress(pipeline, "local", stream, tty=False)
    result = LocalExecutor().run_pipeline(pipeline, "r2", hooks=_Hooks(progress))
    code = progress.summary(result, SimpleNamespace(name="local", artifact_store=None, cache_store=None), 1.0)
    assert code == 1
    text = stream.getvalue()
    assert "[1/1] bad  FAILED" in text and "ZeroDivisionError('division by zero in bad')" in text
    assert "run r2 FAILED in 1.000s: 0 ran, 0 cached, 0 skipped, 1 failed" in text
    err = capsys.readouterr().err
    assert err.startswith("error: step 'bad' failed: ZeroDivisionError('division by zero in bad')\nTraceback")
    assert 'in bad\n    raise ZeroDivisionError' in err
    assert "flowyml_core/execution.py" not in err  # the user's frames only
    assert "| partial work" in err


def test_step_failure_logged_once_while_progress_shows_it(caplog: pytest.LogCaptureFixture) -> None:
    @step
    def bad() -> None:
        raise ValueError("x")

    pipeline = Pipeline("f", [bad])
    progress = Progress(pipeline, "local", io.StringIO(), tty=False)
    run = Run(run_id="r", pipeline_name="f")
    caplog.set_level(logging.ERROR, logger="flowyml.execution")
    progress.on_run_start(run=run)
    LocalExecutor().run_pipeline(pipeline, "r")
    progress.on_run_end(run=run, result=None)
    assert not [r for r in caplog.records if r.name == "flowyml.execution"]
    LocalExecutor().run_pipeline(pipeline, "r")  # without a progress display the failure is logged
    assert [r.getMessage() for r in caplog.records if r.name == "flowyml.execution"] == ["step bad failed: ValueError('x')"]


def test_long_step_output_is_shortened() -> None:
    @step
    def chatty() -> None:
        for i in range(100):
            print(f"line {i}")

    pipeline = Pipeline("c", [chatty])
    stream = io.StringIO()
    progress = Progress(pipeline, "local", stream, tty=False)
    LocalExecutor().run_pipeline(pipeline, "r", hooks=_Hooks(progress))
    text = stream.getvalue()
    assert "| line 39\n" in text and "line 40\n" not in text
    assert "... 60 more lines" in text


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0123, "0.012s"), (3.4, "3.400s"), (42.25, "42.2s"), (125, "2m05s"), (3725, "1h02m")]
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_common_root_of_artifact_uris() -> None:
    assert _common_root(["/a/p/r1/s1/out", "/a/p/r1/s2/out"]) == "/a/p/r1"
    assert _common_root(["/a/p/r1/s1/out"]) == "/a/p/r1/s1"
    assert _common_root(["gs://b/p/r/s1/x", "gs://b/p/r/s2/y"]) == "gs://b/p/r"


def test_terminal_keeps_only_notable_lines_of_a_big_pipeline() -> None:
    from flowyml_core.step import Step

    def quiet(x: int) -> int:
        return x + 1

    def loud(x: int) -> int:
        print("something worth reading")
        return x

    steps = [Step(func=lambda: 0, name="s0", outputs=("a0",))]
    for i in range(1, 60):
        steps.append(Step(func=loud if i == 30 else quiet, name=f"s{i}", inputs=(f"a{i - 1}",), outputs=(f"a{i}",)))
    pipeline = Pipeline("big", steps)
    stream = io.StringIO()
    progress = Progress(pipeline, "local", stream, tty=True)
    LocalExecutor().run_pipeline(pipeline, "r", hooks=_Hooks(progress))
    text = stream.getvalue()
    screen = [segment.split("\r\033[K")[-1] for segment in text.split("\n")]  # what a terminal shows
    assert [line.split()[1] for line in screen[:-1] if line.startswith("[")] == ["s30"]
    assert "        | something worth reading" in screen
    assert re.fullmatch(r"\[60/60\] 60 done in \d+\.\d{3}s \| last: s59 done \d+\.\d{3}s", screen[-1]), screen[-1]
