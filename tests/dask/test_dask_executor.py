"""The dask executor on a real LocalCluster: parallelism, ordering, caching, failures, lost workers, user code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from flowyml_core.context import Context
from flowyml_core.errors import FlowymlError
from flowyml_core.results import ExecutionStatus
from flowyml_core.step import Step
from flowyml_core.testing.samples import CallLog, SamplePipelines, make_pipeline, make_step
from flowyml_core.testing.stores import DirArtifactStore, DirCacheStore, DirStoreConfig
from flowyml_dask.config import DaskExecutorConfig
from flowyml_dask.executor import DaskExecutor

from tests.dask import steps as st


def run(executor, pipeline, calls, **kwargs):
    context = kwargs.pop("context", {})
    return executor.run_pipeline(pipeline, f"run-{uuid.uuid4().hex[:8]}", context=Context(calls=calls, **context), **kwargs)


@pytest.fixture
def calls(tmp_path: Path) -> CallLog:
    return CallLog(tmp_path / "calls.jsonl")


@pytest.fixture
def stores(tmp_path: Path) -> dict:
    return {
        "cache_store": DirCacheStore(DirStoreConfig(path=str(tmp_path / "cache"))),
        "artifact_store": DirArtifactStore(DirStoreConfig(path=str(tmp_path / "artifacts"))),
    }


def spans(calls: CallLog) -> dict[str, tuple[float, float, int]]:
    out: dict[str, list] = {}
    for r in calls.records():
        entry = out.setdefault(r["name"], [None, None, r["pid"]])
        entry[0 if r.get("phase") == "start" else 1] = r["time"]
    return {k: tuple(v) for k, v in out.items()}


def test_independent_units_run_in_parallel_on_both_workers(dask_executor, calls) -> None:
    pipeline = make_pipeline("par", [Step(func=st.timed(f"s{i}", 0.4), name=f"s{i}", outputs=[f"o{i}"], cache=False) for i in range(4)])
    result = run(dask_executor, pipeline, calls)
    assert result.success, result.failed_steps
    s = spans(calls)
    assert len({pid for _, _, pid in s.values()}) == 2, s  # both worker processes ran steps
    assert os.getpid() not in {pid for _, _, pid in s.values()}
    overlapping = sum(1 for a in s.values() for b in s.values() if a is not b and a[0] < b[1] and b[0] < a[1])
    assert overlapping >= 2, s
    # From the steps' own clocks, not the run's: scheduling delays on a loaded machine
    # lengthen the run, but 4 sleeps of 0.4 s run one after another span 1.6 s.
    busy = max(end for _, end, _ in s.values()) - min(start for start, _, _ in s.values())
    assert busy < 1.5, f"4 × 0.4 s on 2 workers spanned {busy:.2f}s (sequential would be 1.6 s)"


def test_dependencies_are_respected(dask_executor, calls) -> None:
    pipeline = make_pipeline("deps", [
        Step(func=st.timed("a", 0.3), name="a", outputs=["x"], cache=False),
        Step(func=st.timed("b", 0.1), name="b", outputs=["y"], cache=False),
        Step(func=st.timed("c", 0.0), name="c", inputs=["x", "y"], outputs=["z"], cache=False),
        Step(func=st.timed("d", 0.0), name="d", inputs=["z"], outputs=["w"], cache=False),
    ])
    result = run(dask_executor, pipeline, calls)
    assert result.success, result.failed_steps
    s = spans(calls)
    assert s["c"][0] >= max(s["a"][1], s["b"][1]) and s["d"][0] >= s["c"][1], s
    assert result.outputs["w"] == result.outputs["z"] + 1 == (result.outputs["x"] + result.outputs["y"] + 1) + 1
    assert list(result.steps) == ["a", "b", "c", "d"]


def test_caching_and_artifacts_match_the_local_executor(dask_executor, calls, stores) -> None:
    from flowyml_local.executor import LocalExecutor

    pipelines = SamplePipelines(calls)
    on_dask = run(dask_executor, pipelines.diamond(), calls, **stores)
    assert on_dask.success and on_dask.outputs["total"] == 5
    assert stores["artifact_store"].load(on_dask.steps["add"].artifact_uri) == 5
    assert {r["pid"] for r in calls.records()} - {os.getpid()}, "steps must run in worker processes"
    # The same cache keys: the local executor finds every step cached, and so does dask again.
    on_local = run(LocalExecutor(), pipelines.diamond(), calls, **stores)
    assert on_local.status is ExecutionStatus.CACHED and on_local.outputs == on_dask.outputs
    again = run(dask_executor, pipelines.diamond(), calls, **stores)
    assert again.status is ExecutionStatus.CACHED and calls.count() == 4
    assert {k: (r.success, r.cached) for k, r in again.steps.items()} == {k: (True, True) for k in on_dask.steps}


def test_a_failing_step_fails_with_its_error_and_skips_dependents(dask_executor, calls) -> None:
    result = run(dask_executor, SamplePipelines(calls).with_failure(), calls)
    assert result.status is ExecutionStatus.FAILED
    assert "ValueError" in result.steps["boom"].error and "intentional failure" in result.steps["boom"].error
    assert "Traceback" in result.steps["boom"].error
    assert result.steps["double"].skipped and result.steps["pair"].success


def test_a_killed_worker_is_a_failed_step_and_the_run_goes_on(dask_executor, calls) -> None:
    pipeline = make_pipeline("killer", [
        make_step(st.die, outputs=["dead"], cache=False),
        Step(func=st.timed("after", 0.0), name="after", inputs=["dead"], outputs=["never"], cache=False),
        Step(func=st.timed("other", 0.2), name="other", outputs=["fine"], cache=False),
    ])
    result = run(dask_executor, pipeline, calls)
    assert result.status is ExecutionStatus.FAILED
    died = result.steps["die"]
    assert not died.success and "died" in died.error and "step 'die'" in died.error, died.error
    assert result.steps["after"].skipped and "die" in result.steps["after"].error
    assert result.steps["other"].success and result.outputs["fine"] == 1
    # The cluster recovers: the next run succeeds.
    follow_up = run(dask_executor, SamplePipelines(calls).linear(), calls)
    assert follow_up.success, follow_up.failed_steps


def test_a_killed_worker_through_execute_step(dask_executor, calls) -> None:
    result = dask_executor.execute_step(make_step(st.die, cache=False), {}, {"calls": calls})
    assert not result.success and "died" in result.error


def test_code_from_a_user_file_reaches_workers_by_value(dask_executor, calls, tmp_path: Path) -> None:
    """A pipeline file (and its helper module next to it) that the workers cannot import."""
    import cloudpickle

    from flowyml_core.loader import load_pipeline

    suffix = uuid.uuid4().hex[:8]
    folder = tmp_path / "userproject"
    folder.mkdir()
    (folder / f"helpers_{suffix}.py").write_text("def scale(v):\n    return v * 100\n\nclass Box:\n    def __init__(self, v):\n        self.v = v\n")
    (folder / f"pipe_{suffix}.py").write_text(textwrap.dedent(f"""
        import os
        from flowyml_core import Pipeline, step
        from helpers_{suffix} import scale, Box

        THRESHOLD = 5

        def big_enough(n):
            return n > THRESHOLD

        def make_adder(k):
            def adder(n):
                return scale(n) + k
            return adder

        @step(outputs=["n"])
        def produce():
            return 7

        @step(inputs=["n"], outputs=["scaled"], condition=big_enough)
        def apply(n):
            return make_adder(1)(n)

        @step(inputs=["scaled"], outputs=["box"])
        def boxed(scaled):
            return Box(scaled), os.getpid()

        pipeline = Pipeline("userfile", steps=[produce, apply, boxed])
    """))
    # Workers started after the file's folder joins sys.path would import it: wait for restarts first.
    dask_executor.client.wait_for_workers(2, timeout=30)
    pipeline = load_pipeline(f"{folder / f'pipe_{suffix}.py'}:pipeline")
    try:
        missing = dask_executor.client.run(__import__("flowyml_dask.worker").worker.unimportable, [f"pipe_{suffix}"])
        assert missing and all(v == [f"pipe_{suffix}"] for v in missing.values()), "the workers must not see this file"
        result = run(dask_executor, pipeline, calls)
        assert result.success, [(r.step_name, r.error) for r in result.failed_steps]
        box, pid = result.outputs["box"]
        assert box.v == 701 and pid != os.getpid()
        assert type(box).__module__ == f"helpers_{suffix}"
        registered = cloudpickle.list_registry_pickle_by_value()
        assert {f"pipe_{suffix}", f"helpers_{suffix}"} <= registered, registered
    finally:
        for name in (f"pipe_{suffix}", f"helpers_{suffix}"):
            if name in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(sys.modules[name])
            sys.modules.pop(name, None)
        sys.path.remove(str(folder))


def test_the_default_local_cluster_is_started_and_closed(calls) -> None:
    executor = DaskExecutor(DaskExecutorConfig(n_workers=1))
    assert executor._cluster is None  # nothing started before it is used
    result = run(executor, SamplePipelines(calls).linear(), calls)
    assert result.success and result.outputs["tripled"] == 6
    cluster = executor._cluster
    assert cluster is not None and len(cluster.workers) == 1
    worker_pids = {r["pid"] for r in calls.records()}
    assert os.getpid() not in worker_pids
    executor.close()
    assert cluster.status.name == "closed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in worker_pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in worker_pids), "the worker processes outlived close()"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_flowyml_run_on_a_dask_stack(run_cli, tmp_path: Path) -> None:
    """The whole path: stacks.toml naming flavor dask, `flowyml run`, a LocalCluster started and closed."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "stacks.toml").write_text(textwrap.dedent("""
        [stacks.dask]
        executor = { flavor = "dask", n_workers = 2 }
        cache_store = { flavor = "local", path = ".flowyml/cache" }
        artifact_store = { flavor = "local", path = ".flowyml/artifacts" }
    """))
    (project / "flow.py").write_text(textwrap.dedent("""
        import os
        from flowyml_core import Pipeline, step

        @step(outputs=["pids"])
        def left():
            return [os.getpid()]

        @step(outputs=["more"])
        def right():
            return [os.getpid()]

        @step(inputs=["pids", "more"], outputs=["all_pids"])
        def join(pids, more):
            return sorted(set(pids + more + [os.getpid()]))

        pipeline = Pipeline("cli-dask", steps=[left, right, join])
    """))
    started = time.monotonic()
    done = run_cli("run", "flow.py:pipeline", "--stack", "dask", cwd=project, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 steps" in done.stdout and "completed" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr and "INFO" not in done.stderr, done.stderr
    assert time.monotonic() - started < 45
    again = run_cli("run", "flow.py:pipeline", "--stack", "dask", cwd=project, timeout=90)
    assert again.returncode == 0 and "fully cached" in again.stdout, again.stdout + again.stderr


def test_flowyml_run_fetches_only_the_final_outputs_from_the_workers(run_cli, tmp_path: Path) -> None:
    """`flowyml run` shows the final results; a large intermediate output never comes to its process."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "stacks.toml").write_text('[stacks.dask]\nexecutor = { flavor = "dask", n_workers = 2 }\n')
    (project / "flow.py").write_text(textwrap.dedent(f"""
        import os
        from flowyml_core import Pipeline, step

        def log(name):
            with open({str(project / "pids.log")!r}, "a") as fh:
                fh.write(f"{{name}} {{os.getpid()}}\\n")

        class Blob:
            def __init__(self, payload):
                self.payload = payload

            def __reduce__(self):
                return arrived, (self.payload,)

        def arrived(payload):
            log("unpickled")
            return Blob(payload)

        @step(outputs=["blob"])
        def big():
            log("step")
            return Blob(b"x" * 1_000_000)

        @step(inputs=["blob"], outputs=["size"])
        def size(blob):
            log("step")
            return len(blob.payload)

        pipeline = Pipeline("cli-held", steps=[big, size])
    """))
    done = run_cli("run", "flow.py:pipeline", "--stack", "dask", cwd=project, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "size = 1000000" in done.stdout.replace("  ", " "), done.stdout
    lines = [line.split() for line in (project / "pids.log").read_text().splitlines()]
    workers = {pid for name, pid in lines if name == "step"}
    assert {pid for name, pid in lines if name == "unpickled"} <= workers, lines


def test_unreachable_scheduler_is_a_clear_error(calls) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    executor = DaskExecutor(DaskExecutorConfig(address=f"tcp://127.0.0.1:{port}", connect_timeout=1))
    with pytest.raises(FlowymlError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port}"):
        executor.validate()
    with pytest.raises(FlowymlError, match="remove `address`"):
        run(executor, SamplePipelines(calls).linear(), calls)


def test_config_is_checked_when_the_stack_resolves(flowyml_project) -> None:
    flowyml_project.add_stack("both", "dask", {"address": "tcp://127.0.0.1:1", "n_workers": 2})
    flowyml_project.add_stack("zero", "dask", {"n_workers": 0})
    flowyml_project.add_stack("typo", "dask", {"n_worker": 2})
    with pytest.raises(FlowymlError, match="n_workers sizes the LocalCluster"):
        flowyml_project.resolve("both")
    with pytest.raises(FlowymlError, match="n_workers must be an integer >= 1"):
        flowyml_project.resolve("zero")
    with pytest.raises(FlowymlError, match="unknown option 'n_worker'"):
        flowyml_project.resolve("typo")


def test_importing_the_plugin_imports_no_dask() -> None:
    code = (
        "import sys\n"
        "from flowyml_core.plugins import Registry\n"
        "r = Registry(); r.load_entry_points()\n"
        "flavor = r.flavor('executor', 'dask'); flavor.load()\n"
        "from flowyml_dask.executor import DaskExecutor; DaskExecutor()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'cloudpickle'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def make_lock() -> object:
    import threading

    return threading.Lock()


def use_lock(lock: object) -> str:
    return "used"


def test_unpicklable_parameters_and_outputs_fail_their_step_with_a_reason(dask_executor, calls) -> None:
    import threading

    # The lock is a run parameter: only the step that takes it fails; the others never carry it.
    sent = make_pipeline("unpicklable-in", [make_step(use_lock, outputs=["u"], cache=False),
                                            make_step(st.whoami, outputs=["pid"], cache=False)])
    result = dask_executor.run_pipeline(sent, "run-lock-in", context=Context(calls=calls, lock=threading.Lock()))
    assert "could not be sent to the Dask cluster" in result.steps["use_lock"].error
    assert "_thread.lock" in result.steps["use_lock"].error
    assert result.steps["whoami"].success and result.outputs["pid"] != os.getpid()
    back = make_pipeline("unpicklable-out", [make_step(make_lock, outputs=["lock"], cache=False)])
    result = dask_executor.run_pipeline(back, "run-lock-out", context=Context(calls=calls))
    assert not result.steps["make_lock"].success
    assert "could not travel back" in result.steps["make_lock"].error, result.steps["make_lock"].error


def scale_input(table: list, factor: int) -> list:
    return [v * factor for v in table]


def test_initial_inputs_reach_steps_by_parameter_name(dask_executor, calls) -> None:
    pipeline = make_pipeline("initial", [make_step(scale_input, outputs=["scaled"], cache=False)])
    result = dask_executor.run_pipeline(pipeline, "run-initial", context=Context(calls=calls, factor=3),
                                        inputs={"table": [1, 2]})
    assert result.success, result.failed_steps
    assert result.outputs["scaled"] == [3, 6]
