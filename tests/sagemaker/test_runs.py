"""Failures, logs, stop and status of SageMaker runs, through the orchestrator and the real ``flowyml`` CLI."""

from __future__ import annotations

import json
import time

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_core.pipeline import run_on_stack
from flowyml_core.results import ExecutionStatus

from .conftest import PIPELINE_REF


def test_a_failing_step_fails_the_run_with_its_error(sm_project, run_cli):
    stack = sm_project.resolve()
    result = run_on_stack(load_pipeline(PIPELINE_REF), stack, context={"explode": True}, timeout=60,
                          source=PIPELINE_REF)
    assert result.status is ExecutionStatus.FAILED
    assert result.steps["fit"].success is False and "fit exploded on purpose" in result.steps["fit"].error
    assert result.steps["report"].skipped and result.steps["clean"].success
    arn = result.submission.job_id
    details = stack.executor.get_run_details(arn)
    assert details["state"] == "Failed" and details["status"] == "failed"
    assert "Step failure" in details["error"]
    # report never started: SageMaker does not start a step whose dependency failed
    assert {s["unit"]: s["state"] for s in details["steps"]} == {"prep": "Succeeded", "fit": "Failed"}
    fit = next(s for s in details["steps"] if s["unit"] == "fit")
    assert "non-zero status of 1" in fit["error"]
    assert any("fit exploded on purpose" in line for line in fit["log_errors"])
    assert "fit exploded on purpose" in details["failed_steps"]["fit"]
    # the unit before the failure did its work
    assert stack.artifact_store.load_artifact(result.run_id, "clean", "clean") == [6, 9, 12, 15]

    status = run_cli("runs", "status", arn, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert status.returncode == 1 and status.stdout.strip() == "failed", status.stderr
    logs = run_cli("runs", "logs", arn, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert logs.returncode == 0 and "[ERROR] [fit]" in logs.stdout and "fit exploded on purpose" in logs.stdout


def test_stop_a_running_execution_through_the_cli(sm_project, run_cli):
    stack = sm_project.resolve()
    result = run_on_stack(load_pipeline(PIPELINE_REF), stack, context={"sleep_seconds": 60}, wait=False,
                          source=PIPELINE_REF)
    arn = result.submission.job_id
    deadline = time.monotonic() + 30
    while not any("load sleeps" in e["message"] for e in sm_project.fake.log_events()):
        assert time.monotonic() < deadline, "the first unit never started sleeping"
        time.sleep(0.1)
    assert stack.executor.get_run_status(arn) is ExecutionStatus.RUNNING
    with pytest.raises(TimeoutError, match="still running after 0.3s"):
        result.submission.wait(0.3)
    stopped = run_cli("runs", "stop", arn, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert stopped.returncode == 0 and f"cancellation requested for {arn}" in stopped.stdout, stopped.stderr
    assert result.submission.wait(20) is ExecutionStatus.STOPPED
    [sleeper] = sm_project.fake.executions
    assert sleeper.task_name == "prep" and sleeper.returncode != 0  # the sleeping step runner was killed
    status = run_cli("runs", "status", arn, "--stack", "sagemaker-local", "--json", cwd=sm_project.path)
    assert status.returncode == 1
    details = json.loads(status.stdout)
    assert details["status"] == "stopped" and [(s["unit"], s["state"]) for s in details["steps"]] == [("prep", "Stopped")]
    again = run_cli("runs", "stop", arn, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert f"pipeline execution {arn} already finished (stopped); nothing to stop" in again.stderr
    with pytest.raises(FlowymlError, match="nothing to stop"):
        stack.executor.stop_run(arn)


def test_runs_commands_name_a_bad_job_id_in_one_line(sm_project, run_cli):
    for args in (["runs", "status", "projects/x/pipelineJobs/y"], ["runs", "logs", "not-an-arn"]):
        out = run_cli(*args, "--stack", "sagemaker-local", cwd=sm_project.path)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "is not a SageMaker pipeline execution: expected an ARN such as" in out.stderr
    unknown = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/flowyml-x/execution/nope"
    out = run_cli("runs", "status", unknown, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert out.returncode == 1 and "ResourceNotFound" in out.stderr and "Traceback" not in out.stderr


def test_a_unit_whose_job_never_started_fails_with_sagemakers_reason(sm_project):
    sm_project.fake.image_map = {}  # strict images: the test image cannot be pulled
    result = run_on_stack(load_pipeline(PIPELINE_REF), sm_project.resolve(), timeout=30, source=PIPELINE_REF)
    assert result.status is ExecutionStatus.FAILED
    load = result.steps["load"]  # the unit left no record: its first step carries SageMaker's failure reason
    assert load.success is False and "could not be pulled" in load.error, load.error
    assert all(result.steps[name].skipped for name in ("clean", "fit", "report"))
    assert sm_project.fake.executions == []
