"""A multi-group pipeline from ``flowyml run`` to outputs in GCS, through the fake Vertex AI.

The fake executes the compiled KFP spec: each task is a real ``flowyml
step-runner`` process with the environment the orchestrator compiled into the
spec, reading and writing artifacts in the GCS emulator through the stack's
``gcs`` store. Nothing is replaced: if the spec, the runner or the stores
disagree, these tests fail.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_core.pipeline import run_on_stack
from flowyml_core.results import ExecutionStatus
from flowyml_core.testing import StackParityContract

from .conftest import PIPELINE_REF


def test_flowyml_run_follow_multi_group_pipeline(vertex_project, run_cli):
    out = run_cli("run", PIPELINE_REF, "--stack", "vertex-local", "--follow", "--param", "factor=1",
                  "--timeout", "60", cwd=vertex_project.path)
    assert out.returncode == 0, out.stdout + out.stderr
    job = re.search(r"^following (\S+)$", out.stdout, re.M).group(1)
    run_id = re.search(r"pipelineJobs/vertex-multi-group-(\w+)$", job).group(1)
    assert job.startswith("projects/fake-project/locations/us-central1/pipelineJobs/")
    assert f"run {run_id}" in out.stdout
    assert f"run {run_id} completed" in out.stdout and "4 ran, 0 cached, 0 skipped, 0 failed" in out.stdout

    # The logs streamed while following: each unit's runner, the steps' own output, then the end.
    streamed = out.stdout[out.stdout.index("following"):]
    for expected in ("running prep (load, clean)", "[load] loading with factor 1", "step clean done",
                     "running train (fit)", "[fit] fitting the model", "running evaluate (evaluate)",
                     f"job {job} finished: completed"):
        assert expected in streamed, expected
    assert streamed.index("running prep") < streamed.index("running train") < streamed.index("running evaluate")
    # The pipeline's own entries are merged in, in time order, and nothing is shown twice.
    assert streamed.index("Task prep started") < streamed.index("running prep") < streamed.index("Task prep succeeded")
    assert streamed.index("Task prep succeeded") < streamed.index("Task train started") < streamed.index("running train")
    for line in ("running prep (load, clean)", "Task train started", "[fit] fitting the model"):
        assert streamed.count(line) == 1, line

    # `runs logs`: the same merge, each line with its task.
    logs = run_cli("runs", "logs", job, "--stack", "vertex-local", cwd=vertex_project.path)
    assert logs.returncode == 0, logs.stderr
    text = logs.stdout
    assert re.search(r"\[INFO\] \[prep\] running prep \(load, clean\)", text)
    assert re.search(r"\[INFO\] \[train\] \[fit\] fitting the model", text)
    assert re.search(r"\[INFO\] \[evaluate\] Task evaluate started", text)
    assert text.index("Task prep started") < text.index("running prep") < text.index("Task train started")
    assert text.count("running train (fit)") == 1 and text.count("finished: completed") == 0
    assert text.rstrip().endswith(f"PipelineJob {job.rsplit('/', 1)[1]} succeeded")

    # Task output is only under each task's CustomJob (ml_job), found through the job's task details.
    fake = vertex_project.fake
    task_jobs = {e["resource"]["labels"]["job_id"] for e in fake.log_entries if e["resource"]["type"] == "ml_job"}
    assert len(task_jobs) == 3
    filters = [r.body["filter"] for r in fake.requests_to("POST", r"/v2/entries:list$")]
    assert any('resource.type="ml_job" AND resource.labels.job_id=("' in f and " OR " in f for f in filters)

    # Three tasks ran, in dependency order, each with its unit.
    ran = [(e.task_name, e.env["FLOWYML_STEP_NAMES"], e.returncode) for e in fake.executions]
    assert ran == [("prep", "load,clean", 0), ("train", "fit", 0), ("evaluate", "evaluate", 0)]
    assert all(e.env["FLOWYML_STACK"] == "vertex-local" and e.env["FLOWYML_RUN_ID"] == run_id for e in fake.executions)

    # The outputs are in GCS, loadable through the stack's artifact store.
    store = vertex_project.resolve().artifact_store
    assert store.load_artifact(run_id, "load", "raw") == [1, 2, 3, 4, 5]
    assert store.load_artifact(run_id, "clean", "clean") == [2, 4]
    assert store.load_artifact(run_id, "fit", "model") == {"mean": 3.0, "n": 2}
    assert store.load_artifact(run_id, "evaluate", "metrics") == {"score": 0.6, "n_raw": 5}
    assert store.uri_for(run_id, "evaluate", "metrics").startswith(vertex_project.artifact_url)


def test_failing_task_is_failed_with_its_error(vertex_project):
    stack = vertex_project.resolve()
    pipeline = load_pipeline(PIPELINE_REF)
    result = run_on_stack(pipeline, stack, context={"explode": True}, timeout=60, source=PIPELINE_REF)
    assert result.status is ExecutionStatus.FAILED
    details = stack.executor.get_run_details(result.submission.job_id)
    assert details["state"] == "PIPELINE_STATE_FAILED"
    states = {t["name"]: t["state"] for t in details["tasks"]}
    assert states == {"prep": "SUCCEEDED", "train": "FAILED", "evaluate": "SKIPPED"}
    assert "train" in details["error"]
    train = next(t for t in details["tasks"] if t["name"] == "train")
    assert "non-zero status of 1" in train["error"]
    assert "/customJobs/" in train["custom_job"]
    assert any("fit exploded on purpose" in line for line in train["log_errors"])
    assert "fit exploded on purpose" in details["failed_tasks"]["train"]
    # the unit before the failure did its work
    assert stack.artifact_store.load_artifact(result.run_id, "clean", "clean") == [6, 9, 12, 15]


def test_cancel_a_running_pipeline(vertex_project):
    stack = vertex_project.resolve()
    orchestrator = stack.executor
    pipeline = load_pipeline(PIPELINE_REF)
    result = run_on_stack(pipeline, stack, context={"sleep_seconds": 60}, wait=False, source=PIPELINE_REF)
    job = result.submission.job_id
    deadline = time.monotonic() + 20
    while not any("load sleeps" in e.get("jsonPayload", {}).get("message", "") for e in vertex_project.fake.log_entries):
        assert time.monotonic() < deadline, "the first unit never started sleeping"
        time.sleep(0.1)
    assert orchestrator.get_run_status(job) is ExecutionStatus.RUNNING
    with pytest.raises(TimeoutError, match="still running after 0.3s"):
        result.submission.wait(0.3)
    orchestrator.stop_run(job)
    assert result.submission.wait(20) is ExecutionStatus.CANCELLED
    details = orchestrator.get_run_details(job)
    assert {t["name"]: t["state"] for t in details["tasks"]} == {"prep": "CANCELLED", "train": "CANCELLED", "evaluate": "CANCELLED"}
    sleeper = vertex_project.fake.executions[0]
    assert sleeper.task_name == "prep" and sleeper.returncode != 0  # the sleeping step runner was killed
    with pytest.raises(FlowymlError, match="already finished \\(cancelled\\); nothing to cancel"):
        orchestrator.stop_run(job)


def test_one_custom_job_runs_every_step_through_the_step_runner(vertex_project):
    """submit = "custom_job": one container, every step in topological order, outputs in GCS."""
    vertex_project.write_stacks(submit="custom_job")
    stack = vertex_project.resolve()
    result = run_on_stack(load_pipeline(PIPELINE_REF), stack, context={"factor": 2}, timeout=60, source=PIPELINE_REF)
    assert result.status is ExecutionStatus.COMPLETED
    assert "/customJobs/" in result.submission.job_id
    [ran] = vertex_project.fake.executions
    assert ran.env["FLOWYML_STEP_NAMES"] == "load,clean,fit,evaluate" and ran.returncode == 0
    store = stack.artifact_store
    assert store.load_artifact(result.run_id, "clean", "clean") == [2, 4, 6, 8, 10]
    assert store.load_artifact(result.run_id, "evaluate", "metrics") == {"score": 0.6, "n_raw": 5}
    logs = stack.executor.get_run_logs(result.submission.job_id)
    assert "[fit] fitting the model" in logs


def test_quickstart_twice_then_with_a_new_parameter(vertex_project, run_cli):
    """The issue's acceptance run: the second run submits nothing and says so; after --param epochs=...
    only train, evaluate and report are submitted, and their outputs are right."""
    import shutil

    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "quickstart.py", vertex_project.path / "quickstart.py")
    fake = vertex_project.fake

    def flowyml_run(*params):
        args = [a for p in params for a in ("--param", p)]
        out = run_cli("run", "quickstart.py:pipeline", "--stack", "vertex-local", "--follow", "--timeout", "120",
                      *args, cwd=vertex_project.path)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    flowyml_run()
    assert len(fake.requests_to("POST", r"/pipelineJobs$")) == 1
    second = flowyml_run()
    assert len(fake.requests_to("POST", r"/pipelineJobs$")) == 1, "the second run submitted a job"
    assert "fully cached" in second.stdout and "nothing was built or submitted" in second.stdout

    executions = len(fake.executions)
    third = flowyml_run("epochs=7")
    jobs = fake.requests_to("POST", r"/pipelineJobs$")
    assert len(jobs) == 2
    assert sorted(jobs[-1].body["pipelineSpec"]["root"]["dag"]["tasks"]) == ["evaluate", "report", "train"]
    assert sorted(e.task_name for e in fake.executions[executions:]) == ["evaluate", "report", "train"]
    assert "3 ran, 2 cached" in third.stdout

    # Their outputs are those of a local run with the same parameter.
    from flowyml_core.loader import load_pipeline
    from flowyml_core.records import RunRecords

    local = load_pipeline("quickstart.py:pipeline").run(stack="local", context={"epochs": 7})
    run_id = re.search(r"run (\w+) completed", third.stdout).group(1)
    stack = vertex_project.resolve()
    records = RunRecords(stack.artifact_store, run_id)
    report = records.read("report")
    assert report.status == "completed"
    assert records.load_output(report, "report", None) == local.outputs["report"]


class TestVertexStackParity(StackParityContract):
    """The parity contract on vertex-local: the executing fake Vertex AI, stores in the GCS emulator."""

    @pytest.fixture
    def parity_stack(self, vertex_project):
        return {
            "executor": vertex_project.executor_options(),
            "artifact_store": vertex_project.store_options("parity-artifacts"),
            "cache_store": vertex_project.store_options("parity-cache"),
        }

    @pytest.fixture
    def routed_store(self, vertex_project):
        return f"gs://{vertex_project.bucket}/parity-routed"

    @pytest.fixture
    def parity_env(self, vertex_project):
        return {"STORAGE_EMULATOR_HOST": vertex_project.emulator_url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
