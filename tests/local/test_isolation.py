"""``executor = { flavor = "local", isolation = "process" }``: each unit's step functions in a fresh process.

Real processes throughout: steps that segfault, exit or kill themselves, a
timeout that must kill a process (and what it started), and results compared
field by field with the in-process executor's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowyml_core.context import Context
from flowyml_core.grouping import StepGroup
from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult
from flowyml_core.step import Step
from flowyml_core.testing import samples
from flowyml_core.testing.samples import CallLog, SamplePipelines, make_pipeline, make_step
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig
from tests.conftest import REPO
from tests.local import isolation_steps as steps

QUICKSTART = REPO / "examples" / "quickstart.py"


@pytest.fixture
def isolated() -> LocalExecutor:
    return LocalExecutor(LocalExecutorConfig(isolation="process"))


@pytest.fixture
def in_process() -> LocalExecutor:
    return LocalExecutor()


@pytest.fixture
def calls(tmp_path: Path) -> CallLog:
    return CallLog(tmp_path / "calls.jsonl")


def run(executor: LocalExecutor, pipeline: Any, **params: Any) -> RunResult:
    stores = params.pop("stores", {})
    return executor.run_pipeline(pipeline, f"run-{time.monotonic_ns()}", context=Context(**params), **stores)


def same(result: ExecutionResult) -> tuple[Any, ...]:
    """What must not differ between the in-process and the isolated executor."""
    return (result.step_name, result.success, result.skipped, result.cached, result.error, result.retries,
            result.output, result.logs)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether the process has ended (a zombie waiting for init to reap it counts as ended)."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- a process that dies is that step's failure --------------------------------------------
def test_a_segfault_fails_that_step_and_the_run_goes_on(isolated: LocalExecutor, calls: CallLog) -> None:
    pipeline = make_pipeline("crashes", [
        make_step(steps.segfault, outputs=["a"]),
        make_step(samples.double, inputs=["a"], outputs=["doubled"]),
        make_step(samples.pair, outputs=["left", "right"]),
    ])
    result = run(isolated, pipeline, calls=calls)
    crash = result.steps["segfault"]
    assert not crash.success
    assert "step 'segfault': its process was killed by signal 11 (SIGSEGV)" in crash.error.splitlines()[0]
    assert "Fatal Python error: Segmentation fault" in crash.error
    assert "isolation_steps.py" in crash.error and "in segfault" in crash.error  # faulthandler's frames
    assert result.steps["double"].skipped and result.steps["double"].error == "not run: upstream step 'segfault' failed"
    assert result.steps["pair"].success and result.outputs["left"] == 3
    assert result.status is ExecutionStatus.FAILED
    assert calls.count("segfault") == 1 and calls.count("double") == 0


@pytest.mark.parametrize(("func", "expected"), [
    (steps.exit_three, "its process exited with code 3 before the step returned"),
    (steps.exit_by_sys, "its process exited with code 2 before the step returned"),
    (steps.kill_self, "its process was killed by signal 9 (SIGKILL)"),
])
def test_an_exit_or_a_kill_is_the_steps_failure(isolated: LocalExecutor, calls: CallLog, func: Any, expected: str) -> None:
    result = isolated.execute_step(make_step(func), {}, {"calls": calls}, run_id="exits")
    assert not result.success and not result.skipped
    assert f"StepProcessError(\"step '{func.__name__}': {expected}" in result.error.splitlines()[0]
    assert calls.count(func.__name__) == 1


def test_a_crash_is_retried_like_any_failed_attempt(isolated: LocalExecutor, calls: CallLog) -> None:
    result = isolated.execute_step(make_step(steps.exit_three, retry=1, retry_delay=0), {}, {"calls": calls}, run_id="r")
    assert not result.success and result.retries == 1
    assert calls.count("exit_three") == 2
    assert len({r["pid"] for r in calls.records("exit_three")}) == 2  # a fresh process for the retry


# -- timeouts kill -------------------------------------------------------------------------------
def test_a_timeout_kills_the_process_and_what_it_started(isolated: LocalExecutor, calls: CallLog) -> None:
    step = make_step(steps.hang, timeout=1, cache=False)
    result = isolated.execute_step(step, {}, {"calls": calls, "seconds": 60}, run_id="timeout")
    assert not result.success
    assert result.error.splitlines()[0] == "StepTimeoutError(\"step 'hang' timed out after 1s\")"
    assert result.logs == "hanging now\n"  # what it printed before it was killed
    [record] = calls.records("hang")
    assert record["pid"] != os.getpid()
    assert gone(record["pid"]), "the timed-out step's process is still running"
    assert gone(record["child"]), "a process started by the timed-out step is still running"


def test_a_timeout_reads_as_in_process(isolated: LocalExecutor, in_process: LocalExecutor, calls: CallLog) -> None:
    step = make_step(samples.sleeper, timeout=0.5, cache=False)
    ours = isolated.execute_step(step, {}, {"calls": calls, "seconds": 3}, run_id="t")
    theirs = in_process.execute_step(step, {}, {"calls": calls, "seconds": 3}, run_id="t")
    assert same(ours) == same(theirs)
    assert "timed out after 0.5s" in ours.error


def test_retries_after_a_timeout_each_attempt_in_a_fresh_process(isolated: LocalExecutor, calls: CallLog,
                                                                   tmp_path: Path) -> None:
    step = make_step(steps.hang_then_succeed, timeout=1, retry=1, retry_delay=0, cache=False)
    result = isolated.execute_step(step, {}, {"calls": calls, "marker": str(tmp_path / "marker")}, run_id="retry")
    assert result.success, result.error
    assert (result.output, result.retries) == ("second", 1)
    assert result.logs == (
        "attempt 1 hangs\n"
        "[flowyml] attempt 1 failed: StepTimeoutError(\"step 'hang_then_succeed' timed out after 1s\"); retrying\n"
        "attempt 2 returns\n"
    )
    first, second = calls.records("hang_then_succeed")
    assert first["pid"] != second["pid"]
    assert gone(first["pid"])


# -- same results as in process ---------------------------------------------------------------
def test_a_raising_step_reads_exactly_as_in_process(isolated: LocalExecutor, in_process: LocalExecutor,
                                                    calls: CallLog) -> None:
    step = make_step(steps.nested_failure, retry=1, retry_delay=0)
    ours = isolated.execute_step(step, {}, {"calls": calls}, run_id="raise")
    theirs = in_process.execute_step(step, {}, {"calls": calls}, run_id="raise")
    assert same(ours) == same(theirs)
    assert ours.error.startswith("KeyError('missing')\nTraceback (most recent call last):\n")
    assert "in _inner" in ours.error and "flowyml_local" not in ours.error  # the user's frames only
    assert calls.count("nested_failure") == 4


def test_printed_output_and_log_records_are_captured_as_in_process(isolated: LocalExecutor, in_process: LocalExecutor,
                                                                   calls: CallLog) -> None:
    ours = isolated.execute_step(make_step(steps.chatty), {}, {"calls": calls}, run_id="logs")
    theirs = in_process.execute_step(make_step(steps.chatty), {}, {"calls": calls}, run_id="logs")
    assert same(ours) == same(theirs)
    assert "to stdout\n" in ours.logs and "to stderr\n" in ours.logs and "more stdout\n" in ours.logs


def test_a_step_that_forks_keeps_its_own_output_apart(isolated: LocalExecutor, calls: CallLog,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    result = isolated.execute_step(make_step(steps.forks), {}, {"calls": calls}, run_id="fork")
    assert result.success, result.error
    assert result.output == "forked" and result.logs == "the child exited with 0\n"
    out, err = capfd.readouterr()  # the forked child writes to the terminal, as it would in process
    assert "from the forked child" in out and "a warning from the forked child" in err


def test_cache_keys_and_hits_are_those_of_in_process(isolated: LocalExecutor, in_process: LocalExecutor,
                                                     calls: CallLog, tmp_path: Path) -> None:
    pipelines = SamplePipelines(calls)
    for index, (first, second) in enumerate([(in_process, isolated), (isolated, in_process)]):
        cache = LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / f"cache-{index}")))
        calls.clear()
        cold = run(first, pipelines.linear(), calls=calls, seed=2, stores={"cache_store": cache})
        warm = run(second, pipelines.linear(), calls=calls, seed=2, stores={"cache_store": cache})
        assert cold.success and cold.outputs["tripled"] == 12
        assert warm.status is ExecutionStatus.CACHED and warm.outputs == cold.outputs
        assert [r.output_fingerprint for r in warm.steps.values()] == [r.output_fingerprint for r in cold.steps.values()]
        assert calls.count() == 3
    assert isolated.processes_started == 3  # the cold run's three units; the fully cached one started none


def test_a_group_runs_in_one_process_with_the_cores_group_semantics(isolated: LocalExecutor, in_process: LocalExecutor,
                                                                    calls: CallLog) -> None:
    pipelines = SamplePipelines(calls)
    ours = run(isolated, pipelines.grouped(), calls=calls)
    grouped = [r for r in calls.records() if r["name"] in ("pair", "add", "double")]
    assert len(grouped) == 3 and len({r["pid"] for r in grouped}) == 1
    [triple] = calls.records("triple")
    assert os.getpid() not in (grouped[0]["pid"], triple["pid"]) and triple["pid"] != grouped[0]["pid"]
    theirs = run(in_process, pipelines.grouped(), calls=calls)
    assert [same(r) for r in ours.steps.values()] == [same(r) for r in theirs.steps.values()]
    assert ours.outputs == theirs.outputs and ours.outputs["tripled"] == 42

    failing = [make_step(samples.source, outputs=["x"]), make_step(samples.boom, inputs=["x"], outputs=["y"]),
               make_step(samples.double, inputs=["y"], outputs=["z"])]
    group = StepGroup("g", failing, ["source", "boom", "double"])
    ours_g = isolated.execute_step_group(group, {}, context=Context(calls=calls), run_id="g")
    theirs_g = in_process.execute_step_group(group, {}, context=Context(calls=calls), run_id="g")
    assert [same(r) for r in ours_g] == [same(r) for r in theirs_g]
    assert ours_g[2].skipped and ours_g[2].error == "skipped: step 'boom' failed earlier in group 'g'"


@pytest.mark.parametrize("outputs", [["table"], ["table", "unused"]])
def test_a_later_group_member_gets_the_object_an_earlier_one_returned(isolated: LocalExecutor, calls: CallLog,
                                                                      outputs: list[str]) -> None:
    """As in process: the very object (kept by the unit's process), not a copy sent back and forth."""
    value = {"table": {"rows": [0, 1, 2, 3, 4]}, "unused": None} if len(outputs) == 2 else {"rows": [0, 1, 2, 3, 4]}
    producer = steps.make_table if len(outputs) == 1 else steps.make_tables
    members = [make_step(producer, name="make_table", outputs=outputs),
               make_step(steps.row_count, inputs=["table"], outputs=["n"])]
    results = isolated.execute_step_group(StepGroup("g", members, ["make_table", "row_count"]), {},
                                          context=Context(calls=calls), run_id="g")
    assert [r.output for r in results] == [value, 5]
    made, received = calls.records()
    assert made["pid"] == received["pid"] and made["object"] == received["object"]


def test_independent_units_run_at_once_in_their_own_processes(calls: CallLog) -> None:
    executor = LocalExecutor(LocalExecutorConfig(isolation="process", max_workers=3))
    result = run(executor, SamplePipelines(calls).independent(3), calls=calls, seconds=3)
    assert result.success
    starts = [r for r in calls.records("sleeper") if r["phase"] == "start"]
    ends = [r for r in calls.records("sleeper") if r["phase"] == "end"]
    assert len({r["pid"] for r in starts}) == 3
    # Each started before any finished: they ran at the same time (not a timing target).
    assert max(r["time"] for r in starts) < min(r["time"] for r in ends)


# -- code that must travel -------------------------------------------------------------------
def test_closures_and_lambdas_built_in_a_function(isolated: LocalExecutor, in_process: LocalExecutor) -> None:
    def build() -> Any:
        factor = 3

        def scale(x: int) -> int:
            return x * factor

        return make_pipeline("closures", [
            Step(func=lambda: 7, name="seven", outputs=["x"]),
            Step(func=scale, name="scale", inputs=["x"], outputs=["y"], condition=lambda: factor > 1),
        ])

    ours, theirs = run(isolated, build()), run(in_process, build())
    assert ours.success, [r.error for r in ours.failed_steps]
    assert ours.outputs == theirs.outputs == {"x": 7, "y": 21}


def test_a_closure_that_cannot_travel_fails_with_one_line(isolated: LocalExecutor) -> None:
    lock = threading.Lock()

    def locked() -> int:
        with lock:
            return 1

    result = isolated.execute_step(Step(func=locked, name="locked"), {}, {})
    assert not result.success
    first = result.error.splitlines()[0]
    assert first.startswith("StepProcessError(\"step 'locked' cannot be sent to its process: TypeError: cannot pickle")
    assert first.endswith("or run the step without process isolation\")")


def test_arguments_and_values_that_cannot_travel_are_named(isolated: LocalExecutor, calls: CallLog) -> None:
    sent = isolated.execute_step(make_step(steps.takes_anything), {}, {"calls": calls, "thing": threading.Lock()})
    assert not sent.success
    assert "the arguments of step 'takes_anything' cannot be sent to its process (argument 'thing', a lock)" in sent.error
    back = isolated.execute_step(make_step(steps.returns_lock), {}, {"calls": calls})
    assert not back.success
    assert "step 'returns_lock' returned a value that cannot be sent back from its process" in back.error
    unloadable = isolated.execute_step(make_step(steps.returns_unloadable, retry=1, retry_delay=0), {}, {"calls": calls})
    assert not unloadable.success and unloadable.retries == 1
    assert ("step 'returns_unloadable': what its process sent back cannot be loaded here: "
            "RuntimeError: this object cannot be rebuilt here") in unloadable.error.splitlines()[0]


MAIN_SCRIPT = '''
import sys
from flowyml_core import Pipeline, step
from flowyml_core.step import Step
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig

SCALE = 10


@step(outputs=["a"])
def source():
    return 4


@step(inputs=["a"], outputs=["b"])
def scaled(a):
    print("scaling in", __name__)
    return a * SCALE


@step
def broken():
    raise RuntimeError("raised in __main__")


def shifted():
    offset = 5

    def shift(b):
        return b + offset

    return Step(func=shift, name="shift", inputs=["b"], outputs=["c"])


if __name__ == "__main__":
    pipeline = Pipeline("main-steps", steps=[source, scaled, shifted()])
    result = pipeline.run(stack="iso")
    print("outputs", result.outputs, "logs", repr(result.steps["scaled"].logs))
    isolated = LocalExecutor(LocalExecutorConfig(isolation="process"))
    ours, theirs = isolated.execute_step(broken, {}, {}).error, LocalExecutor().execute_step(broken, {}, {}).error
    print("same error:", ours == theirs)
    print(ours)
'''

ISO_STACK = '[stacks.iso]\nexecutor = { flavor = "local", isolation = "process" }\n'


def test_steps_defined_in_main_run_in_their_process(project: Path) -> None:
    (project / "stacks.toml").write_text(ISO_STACK)
    (project / "script.py").write_text(MAIN_SCRIPT)
    done = subprocess.run([sys.executable, "script.py"], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "outputs {'a': 4, 'b': 40, 'c': 45} logs 'scaling in __main__\\n'" in done.stdout
    assert "same error: True" in done.stdout
    assert 'script.py", line 23, in broken' in done.stdout  # the script's own file and line


UNGUARDED = '''
import os
from flowyml_core import Pipeline, step

COUNTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.txt")


def note(name):
    with open(COUNTER, "a") as f:
        f.write(f"{name} {os.getpid()}\\n")


@step(outputs=["a"])
def first():
    note("first")
    return 1


@step(inputs=["a"], outputs=["b"])
def second(a):
    note("second")
    return a + 1


pipeline = Pipeline("unguarded", steps=[first, second])
pipeline.run(stack="iso")  # no __main__ guard: importing this file runs it
'''


def test_an_unguarded_run_in_a_pipeline_file_does_not_run_again_in_the_unit_processes(project: Path, run_cli) -> None:
    (project / "stacks.toml").write_text(ISO_STACK)
    (project / "unguarded.py").write_text(UNGUARDED)
    done = run_cli("run", "unguarded.py:pipeline", "--stack", "iso", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "2 ran, 0 cached, 0 skipped, 0 failed" in done.stdout
    lines = (project / "calls.txt").read_text().splitlines()
    # Once when `flowyml run` imported the file, once for the run it asked for; never from a unit's process.
    assert sorted(line.split()[0] for line in lines) == ["first", "first", "second", "second"]
    assert len({line.split()[1] for line in lines}) == 4  # every call in a process of its own
    output = done.stdout + done.stderr
    assert "run() was called while" in output and 'if __name__ == "__main__":' in output


def test_an_invalid_isolation_is_refused_naming_the_field_and_the_choices(project: Path, run_cli) -> None:
    (project / "stacks.toml").write_text('[stacks.bad]\nexecutor = { flavor = "local", isolation = "thread" }\n')
    shutil.copy(QUICKSTART, project / "quickstart.py")
    done = run_cli("run", "quickstart.py:pipeline", "--stack", "bad", cwd=project)
    assert done.returncode == 1
    assert "stack 'bad'" in done.stderr and "executor 'local'" in done.stderr
    assert "isolation must be one of 'none', 'process', got 'thread'" in done.stderr
    assert "Traceback" not in done.stderr


# -- no process outlives its run ----------------------------------------------------------------
class _InterruptAfter:
    """Observer hook that raises KeyboardInterrupt (a Ctrl-C) when a given step ends."""

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name

    def get_hookimpls(self) -> list[Any]:
        return [self]

    def __call__(self, run: Any, result: ExecutionResult) -> None:
        if result.step_name == self.step_name:
            raise KeyboardInterrupt


class _Hooks:
    def __init__(self, step_name: str) -> None:
        self.on_step_end = _InterruptAfter(step_name)


def test_an_interrupted_run_kills_its_unit_processes(calls: CallLog) -> None:
    executor = LocalExecutor(LocalExecutorConfig(isolation="process", max_workers=2))
    pipeline = make_pipeline("interrupted", [
        make_step(steps.hang, outputs=["slow"], cache=False),
        make_step(steps.wait_for, outputs=["quick"], cache=False),
    ])
    with pytest.raises(KeyboardInterrupt):
        executor.run_pipeline(pipeline, "interrupted", context=Context(calls=calls, name="hang", seconds=60),
                              hooks=_Hooks("wait_for"))
    [record] = calls.records("hang")
    assert gone(record["pid"]) and gone(record["child"])


ORPHAN_SCRIPT = '''
import sys
from flowyml_core.testing.samples import CallLog, make_step
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig
from tests.local import isolation_steps

executor = LocalExecutor(LocalExecutorConfig(isolation="process"))
executor.execute_step(make_step(isolation_steps.hang), {}, {"calls": CallLog(sys.argv[1]), "seconds": 60})
'''


def test_unit_processes_end_when_their_parent_is_killed(calls: CallLog) -> None:
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, calls.path], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while calls.count("hang") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        [record] = calls.records("hang")
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert gone(record["pid"]), "the unit process outlived its parent"
    assert gone(record["child"]), "a process started by the step outlived the run"


def test_the_worker_imports_nothing_heavy(tmp_path: Path) -> None:
    """What each unit pays for: Python, the worker, and what the steps import (not the stores, not attrs)."""
    script = textwrap.dedent('''
        import sys
        from flowyml_local import isolation_worker
        heavy = sorted(m for m in ("attr", "attrs", "fsspec", "cloudpickle", "flowyml_core.execution",
                                   "flowyml_local.executor") if m in sys.modules)
        print(heavy)
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
