"""Tests of the fake Vertex AI / Cloud Logging server, through the real clients.

Each test compiles a real KFP pipeline (or builds a real CustomJob proto),
submits it with the real ``google.cloud.aiplatform_v1`` REST clients, and
checks what actually ran on this machine: files the tasks wrote, their env,
their exit codes, their processes, and their log lines read back with
``google.cloud.logging``.  Everything stays on 127.0.0.1.

No ``from __future__ import annotations`` here: kfp reads the component
functions' annotations at decoration time and needs real types, not strings.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from google.api_core import exceptions as gexc
from google.cloud.aiplatform_v1 import types as v1
from kfp import compiler, dsl

from .fake_vertex import FakeGoogleCloud, LogFilterError, parse_log_filter, parse_timestamp
from .vertex_fixtures import (  # noqa: F401  (fixtures are used by name)
    TEST_LOCATION,
    TEST_PROJECT,
    fake_gcp,
    fake_gcp_factory,
    init_aiplatform,
    job_service_client,
    logging_client,
    parent,
    pipeline_service_client,
    task_details_by_name,
    wait_for_custom_job,
    wait_for_pipeline_job,
)

PY = sys.executable

# The script every "step" task runs: append a JSON record of what it saw to
# order.txt in the workdir, then log a JSON line, a plain line and a stderr
# line so the log mapping can be checked.
STEP_SCRIPT = """
import json, os, sys, time
label = sys.argv[1]
time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
with open("order.txt", "a") as f:
    f.write(json.dumps({"label": label, "stage": os.environ.get("STAGE"),
                        "home": os.environ.get("HOME"),
                        "canary": os.environ.get("FAKE_VERTEX_CANARY"),
                        "job": sys.argv[2], "task": sys.argv[3],
                        "t": time.time()}) + "\\n")
print(json.dumps({"severity": "WARNING", "message": "structured " + label, "step": label}))
print("plain stdout " + label, flush=True)
print("plain stderr " + label, file=sys.stderr)
"""


def compile_to_spec(pipeline_func: Callable[..., Any], tmp_path: Path) -> dict[str, Any]:
    """Compile with kfp to YAML on disk and load it back: the YAML is the artefact."""
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline_func, str(path))
    return yaml.safe_load(path.read_text())


@dsl.container_component
def step(label: str):
    return dsl.ContainerSpec(
        image="busybox",
        command=[PY, "-c", STEP_SCRIPT],
        args=[label, dsl.PIPELINE_JOB_NAME_PLACEHOLDER, dsl.PIPELINE_TASK_NAME_PLACEHOLDER],
    )


@dsl.container_component
def shell(script: str):
    return dsl.ContainerSpec(image="busybox", command=[PY, "-c", script])


@dsl.pipeline(name="three-steps")
def three_steps(prefix: str = "default"):
    first = step(label=prefix).set_env_variable("STAGE", "one")
    first.set_env_variable("STEP_SLEEP", "0.3")
    second = step(label="second").set_env_variable("STAGE", "two").after(first)
    step(label="third").set_env_variable("STAGE", "three").after(second)


def submit(fake: FakeGoogleCloud, spec: dict[str, Any], job_id: str,
           parameter_values: dict[str, Any] | None = None) -> tuple[Any, Any]:
    client = pipeline_service_client(fake)
    job = client.create_pipeline_job(
        parent=parent(),
        pipeline_job=v1.PipelineJob(
            display_name=job_id, pipeline_spec=spec,
            runtime_config=v1.PipelineJob.RuntimeConfig(
                gcs_output_directory="gs://bucket/root",
                parameter_values=parameter_values or {})),
        pipeline_job_id=job_id)
    return client, job


def read_order(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "order.txt"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------
# Pipeline jobs
# --------------------------------------------------------------------------


def test_pipeline_runs_tasks_in_dependency_order_with_their_env(
        fake_gcp: FakeGoogleCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A variable of the test process must NOT reach the tasks (no os.environ).
    monkeypatch.setenv("FAKE_VERTEX_CANARY", "leaked")
    spec = compile_to_spec(three_steps, tmp_path)
    client, created = submit(fake_gcp, spec, "order-job", {"prefix": "from-runtime"})

    assert created.name == f"{parent()}/pipelineJobs/order-job"
    assert created.state.name in ("PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")
    job = wait_for_pipeline_job(client, created.name)

    assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error
    records = read_order(tmp_path)
    assert [(r["label"], r["stage"]) for r in records] == [
        ("from-runtime", "one"), ("second", "two"), ("third", "three")]
    assert all(r["canary"] is None for r in records)
    assert all(r["home"] == str(tmp_path) for r in records)  # base_env reached them
    assert {r["job"] for r in records} == {"order-job"}  # placeholders resolved
    assert [r["task"] for r in records] == ["step", "step-2", "step-3"]

    details = task_details_by_name(job)
    assert details["three-steps"].task_id and details["three-steps"].state.name == "SUCCEEDED"
    for name in ("step", "step-2", "step-3"):
        assert details[name].state.name == "SUCCEEDED"
        assert details[name].parent_task_id == details["three-steps"].task_id
    # Dependants start only after their dependency ended, despite the sleep in "step".
    assert details["step-2"].start_time >= details["step"].end_time
    assert details["step-3"].start_time >= details["step-2"].end_time
    assert job.create_time <= job.start_time <= job.end_time
    assert job.update_time >= job.start_time

    argvs = [e.argv for e in fake_gcp.executions]
    assert [a[3] for a in argvs] == ["from-runtime", "second", "third"]
    create = fake_gcp.requests_to("POST", r"/pipelineJobs$")[0]
    assert create.query["pipelineJobId"] == ["order-job"]
    assert create.body["pipelineSpec"]["pipelineInfo"]["name"] == "three-steps"


def test_failing_task_fails_job_with_stderr_and_skips_dependants(
        fake_gcp: FakeGoogleCloud, tmp_path: Path) -> None:
    @dsl.pipeline(name="fails")
    def fails():
        ok = shell(script="open('ok.txt', 'w').write('ok')")
        bad = shell(script="import sys; print('about to fail'); "
                           "sys.stderr.write('boom: disk on fire\\n'); sys.exit(3)").after(ok)
        shell(script="open('after.txt', 'w').write('ran')").after(bad)

    client, created = submit(fake_gcp, compile_to_spec(fails, tmp_path), "fail-job")
    job = wait_for_pipeline_job(client, created.name)

    assert job.state.name == "PIPELINE_STATE_FAILED"
    assert "shell-2" in job.error.message
    assert "boom: disk on fire" in job.error.message
    assert job.error.code != 0
    details = task_details_by_name(job)
    assert details["shell"].state.name == "SUCCEEDED"
    assert details["shell-2"].state.name == "FAILED"
    assert "boom: disk on fire" in details["shell-2"].error.message
    assert "non-zero status of 3" in details["shell-2"].error.message
    assert "about to fail" not in details["shell-2"].error.message  # stdout is not stderr
    assert details["shell-3"].state.name == "SKIPPED"
    assert (tmp_path / "ok.txt").exists()
    assert not (tmp_path / "after.txt").exists()
    assert [e.task_name for e in fake_gcp.executions] == ["shell", "shell-2"]
    assert fake_gcp.executions[1].returncode == 3


def test_cancel_kills_the_running_task_process(fake_gcp: FakeGoogleCloud, tmp_path: Path) -> None:
    @dsl.pipeline(name="sleeper")
    def sleeper():
        slow = shell(script="import os, time; open('pid.txt', 'w').write(str(os.getpid())); "
                            "time.sleep(30)")
        shell(script="open('after.txt', 'w').write('ran')").after(slow)

    client, created = submit(fake_gcp, compile_to_spec(sleeper, tmp_path), "cancel-job")
    pid_file = tmp_path / "pid.txt"
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, "the task to start")
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # alive right now

    started = time.monotonic()
    client.cancel_pipeline_job(name=created.name)
    assert client.get_pipeline_job(name=created.name).state.name in (
        "PIPELINE_STATE_CANCELLING", "PIPELINE_STATE_CANCELLED")
    job = wait_for_pipeline_job(client, created.name, timeout=5)
    elapsed = time.monotonic() - started

    assert job.state.name == "PIPELINE_STATE_CANCELLED"
    assert elapsed < 3, f"cancel took {elapsed:.1f}s"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    details = task_details_by_name(job)
    assert details["shell"].state.name == "CANCELLED"
    assert details["shell-2"].state.name == "CANCELLED"
    assert not (tmp_path / "after.txt").exists()
    with pytest.raises(gexc.BadRequest, match="CANCELLED"):
        client.cancel_pipeline_job(name=created.name)  # already terminal


def test_pipeline_errors_are_google_style(fake_gcp: FakeGoogleCloud, tmp_path: Path) -> None:
    spec = compile_to_spec(three_steps, tmp_path)
    client, created = submit(fake_gcp, spec, "dup-job")
    with pytest.raises(gexc.Conflict):
        submit(fake_gcp, spec, "dup-job")
    with pytest.raises(gexc.NotFound):
        client.get_pipeline_job(name=f"{parent()}/pipelineJobs/nope")

    broken = json.loads(json.dumps(spec))
    broken["root"]["dag"]["tasks"]["step"]["dependentTasks"] = ["step-3"]  # a cycle
    with pytest.raises(gexc.BadRequest, match="cycle"):
        submit(fake_gcp, broken, "cycle-job")
    with pytest.raises(gexc.BadRequest, match="not defined"):
        submit(fake_gcp, spec, "param-job", {"unknown": 1})
    # Vertex's rules for ids and display names: a letter first, at most 128 characters
    with pytest.raises(gexc.BadRequest, match="invalid pipelineJobId '2024-forecast-1'"):
        submit(fake_gcp, spec, "2024-forecast-1")
    with pytest.raises(gexc.BadRequest, match="display_name is 129 characters long"):
        pipeline_service_client(fake_gcp).create_pipeline_job(parent=parent(), pipeline_job=v1.PipelineJob(
            display_name="d" * 129, pipeline_spec=spec), pipeline_job_id="long-name")

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{fake_gcp.url}/v1/projects/p/locations/l/models", timeout=5)
    assert info.value.code == 404
    error = json.loads(info.value.read())["error"]
    assert error["status"] == "NOT_FOUND" and error["code"] == 404

    listed = list(client.list_pipeline_jobs(parent=parent()))
    assert [j.name for j in listed] == [created.name]
    wait_for_pipeline_job(client, created.name)


# --------------------------------------------------------------------------
# Custom jobs
# --------------------------------------------------------------------------


def custom_job(display_name: str, script: str, image: str = "busybox",
               env: dict[str, str] | None = None) -> Any:
    return v1.CustomJob(
        display_name=display_name,
        job_spec=v1.CustomJobSpec(worker_pool_specs=[v1.WorkerPoolSpec(
            machine_spec=v1.MachineSpec(machine_type="n1-standard-4"),
            replica_count=1,
            container_spec=v1.ContainerSpec(
                image_uri=image, command=[PY, "-c"], args=[script],
                env=[v1.EnvVar(name=k, value=v) for k, v in (env or {}).items()]))]))


def test_custom_job_runs_its_container_spec(fake_gcp: FakeGoogleCloud, tmp_path: Path) -> None:
    client = job_service_client(fake_gcp)
    created = client.create_custom_job(parent=parent(), custom_job=custom_job(
        "train", "import os; open('custom.txt', 'w').write(os.environ['MODE']); print('trained')",
        env={"MODE": "fast"}))
    assert created.name.startswith(f"{parent()}/customJobs/")
    assert created.state.name in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    job = wait_for_custom_job(client, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error
    assert (tmp_path / "custom.txt").read_text() == "fast"
    assert job.start_time <= job.end_time

    failing = client.create_custom_job(parent=parent(), custom_job=custom_job(
        "broken", "import sys; sys.exit('no GPU found')"))
    job = wait_for_custom_job(client, failing.name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert "no GPU found" in job.error.message and "non-zero status of 1" in job.error.message

    job_id = created.name.rsplit("/", 1)[1]
    entries = list(logging_client(fake_gcp).list_entries(
        filter_=f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'))
    assert [(e.payload, e.severity) for e in entries] == [("trained", "INFO")]


def test_custom_job_cancel_and_image_map(fake_gcp_factory: Callable[..., FakeGoogleCloud],
                                         tmp_path: Path) -> None:
    fake = fake_gcp_factory(image_map={"busybox": None})
    client = job_service_client(fake)
    slow = client.create_custom_job(parent=parent(), custom_job=custom_job(
        "slow", "import os, time; open('cj.pid', 'w').write(str(os.getpid())); time.sleep(30)"))
    pid_file = tmp_path / "cj.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, "the replica to start")
    client.cancel_custom_job(name=slow.name)
    job = wait_for_custom_job(client, slow.name, timeout=5)
    assert job.state.name == "JOB_STATE_CANCELLED"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)

    unknown = client.create_custom_job(parent=parent(), custom_job=custom_job(
        "unknown-image", "print('never')", image="gcr.io/nope/missing:1"))
    job = wait_for_custom_job(client, unknown.name)
    assert job.state.name == "JOB_STATE_FAILED"
    assert "could not be pulled" in job.error.message


# --------------------------------------------------------------------------
# Cloud Logging
# --------------------------------------------------------------------------


def test_task_output_is_under_each_tasks_custom_job_and_run_events_under_the_pipeline(
        fake_gcp: FakeGoogleCloud, tmp_path: Path) -> None:
    client, created = submit(fake_gcp, compile_to_spec(three_steps, tmp_path), "logs-job")
    job = wait_for_pipeline_job(client, created.name)
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"

    logs = logging_client(fake_gcp)
    # As on Vertex, each task's container ran as a CustomJob that the task detail names.
    details = task_details_by_name(job)
    main_jobs = {n: details[n].executor_detail.container_detail.main_job for n in ("step", "step-2", "step-3")}
    assert all(j.startswith(f"{parent()}/customJobs/") for j in main_jobs.values()), main_jobs
    assert len(set(main_jobs.values())) == 3
    assert not details["three-steps"].executor_detail.container_detail.main_job  # the root DAG runs no container
    second = main_jobs["step-2"].rsplit("/", 1)[1]
    entries = list(logs.list_entries(filter_=f'resource.type="ml_job" AND resource.labels.job_id="{second}"'))
    by_kind = {type(e).__name__: e for e in entries}
    assert len(entries) == 3, [e.payload for e in entries]
    structured = by_kind["StructEntry"]
    assert structured.severity == "WARNING"
    assert structured.payload == {"message": "structured second", "step": "second"}
    texts = {e.payload: e.severity for e in entries if type(e).__name__ == "TextEntry"}
    assert texts == {"plain stdout second": "INFO", "plain stderr second": "ERROR"}
    assert all(e.resource.labels["job_id"] == second for e in entries)

    # The pipeline's own log has the run's events, and none of the tasks' output.
    base = ('resource.type="aiplatform.googleapis.com/PipelineJob" '
            'AND resource.labels.pipeline_job_id="logs-job"')
    events = [e.payload["message"] for e in logs.list_entries(filter_=base)]
    assert events[0] == "PipelineJob logs-job is running" and events[-1] == "PipelineJob logs-job succeeded"
    assert f"Task step-2 started (CustomJob {second})" in events and "Task step-2 succeeded" in events
    assert not [m for m in events if "second" in m]
    assert [e.payload["message"] for e in logs.list_entries(filter_=f"{base} AND labels.task_name=step-2")] == [
        f"Task step-2 started (CustomJob {second})", "Task step-2 succeeded"]

    # Several jobs in one query: `field = ("a" OR "b")`
    ids = " OR ".join(f'"{j.rsplit("/", 1)[1]}"' for j in main_jobs.values())
    tasks_filter = f'resource.type="ml_job" AND resource.labels.job_id=({ids})'
    assert len({e.insert_id for e in logs.list_entries(filter_=tasks_filter)}) == 9

    # severity comparison, descending order and paging through pageToken
    errors = list(logs.list_entries(filter_=f"{tasks_filter} severity>=ERROR", order_by="timestamp desc",
                                    page_size=1))
    assert [e.payload for e in errors] == [
        "plain stderr third", "plain stderr second", "plain stderr default"]
    pages = fake_gcp.requests_to("POST", r"^/v2/entries:list$")[-3:]
    assert [bool(r.body.get("pageToken")) for r in pages] == [False, True, True]
    assert all(r.body["resourceNames"] == [f"projects/{TEST_PROJECT}"] for r in pages)
    assert all('timestamp>="' in r.body["filter"] for r in pages)  # added by the client

    # an explicit future timestamp bound excludes everything
    assert list(logs.list_entries(filter_=f'{tasks_filter} timestamp>"2999-01-01T00:00:00Z"')) == []
    # other projects see nothing
    assert list(logging_client(fake_gcp, "other-project").list_entries(filter_=tasks_filter)) == []

    with pytest.raises(gexc.BadRequest, match="unsupported log filter syntax"):
        list(logs.list_entries(filter_='labels.task_name="step" OR labels.task_name="step-2"'))


def test_written_entries_are_listed(fake_gcp: FakeGoogleCloud) -> None:
    logs = logging_client(fake_gcp)
    logs.logger("flowyml").log_struct({"message": "hello", "n": 1}, severity="NOTICE",
                                      labels={"run": "r1"})
    entries = list(logs.list_entries(filter_='labels.run="r1" logName:"flowyml"'))
    assert len(entries) == 1
    assert entries[0].payload == {"message": "hello", "n": 1}
    assert entries[0].severity == "NOTICE"
    assert entries[0].log_name == f"projects/{TEST_PROJECT}/logs/flowyml"


@pytest.mark.parametrize("text,expected", [
    ('resource.type="ml_job" AND resource.labels.job_id=12', 2),
    ('resource.labels.job_id=("1" OR "2" OR 3) severity>=ERROR', 2),
    ('labels."ml.googleapis.com/x"="a b" severity>=WARNING', 2),
    ('timestamp>="2024-01-01T00:00:00.000000+0000"', 1),
    ("", 0),
])
def test_log_filter_subset_parses(text: str, expected: int) -> None:
    assert len(parse_log_filter(text)) == expected


@pytest.mark.parametrize("text", [
    'labels.a="x" OR labels.b="y"',
    'NOT labels.a="x"',
    '(labels.a="x")',
    '-labels.a="x"',
    'labels.a="x" AND',
    'httpRequest.status=500',
    'labels.a>"x"',
    'timestamp>="yesterday"',
    'jsonPayload.message=~"x"',
    'labels.a!=("x" OR "y")',
    'timestamp=("2024-01-01T00:00:00Z" OR "2024-01-02T00:00:00Z")',
    'labels.a=("x" AND "y")',
])
def test_log_filter_rejects_what_it_cannot_honour(text: str) -> None:
    with pytest.raises(LogFilterError):
        parse_log_filter(text)


def test_parse_timestamp_accepts_client_formats() -> None:
    a = parse_timestamp("2024-05-06T07:08:09.123456+0000")
    b = parse_timestamp("2024-05-06T07:08:09.123456789Z")
    assert a == b


# --------------------------------------------------------------------------
# High-level SDK
# --------------------------------------------------------------------------


@pytest.fixture
def aiplatform_on_fake(fake_gcp: FakeGoogleCloud) -> Any:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    init_aiplatform(fake_gcp)
    yield aiplatform
    initializer.global_config.__init__()  # don't leak the fake endpoint to other tests


def test_high_level_sdk_parses_the_fake_answers(
        fake_gcp: FakeGoogleCloud, aiplatform_on_fake: Any, tmp_path: Path) -> None:
    aiplatform = aiplatform_on_fake
    client, created = submit(fake_gcp, compile_to_spec(three_steps, tmp_path), "sdk-job")
    wait_for_pipeline_job(client, created.name)

    pipeline = aiplatform.PipelineJob.get(created.name)
    assert pipeline.resource_name == created.name
    assert pipeline.state.name == "PIPELINE_STATE_SUCCEEDED"
    assert pipeline.has_failed is False
    assert {t.task_name for t in pipeline.task_details} >= {"step", "step-2", "step-3"}

    jobs = job_service_client(fake_gcp)
    cj = jobs.create_custom_job(parent=parent(), custom_job=custom_job("sdk", "print(1)"))
    wait_for_custom_job(jobs, cj.name)
    sdk_job = aiplatform.CustomJob.get(cj.name)
    assert sdk_job.state.name == "JOB_STATE_SUCCEEDED"
    assert sdk_job.display_name == "sdk"
    assert TEST_LOCATION in sdk_job.resource_name
    gets = fake_gcp.requests_to("GET", r"/(pipelineJobs|customJobs)/")
    assert any(r.path.endswith("/pipelineJobs/sdk-job") for r in gets)
