"""A run from ``flowyml run`` to outputs in S3, through the executing fake SageMaker.

The fake runs each Processing step of the definition the orchestrator wrote as
a real ``flowyml step-runner`` process, with the step's ``Environment`` (checked
against SageMaker's limits), reading and writing through the stack's ``s3``
stores on moto. Nothing is replaced: if the definition, the runner or the
stores disagree, these tests fail.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_core.pipeline import run_on_stack
from flowyml_core.results import ExecutionStatus

from .conftest import PIPELINE_REF, REGION, ROLE, TEST_IMAGE


def test_flowyml_run_follow_runs_every_unit_in_order(sm_project, run_cli):
    sm_project.fake.steps_page_size, sm_project.fake.log_page_size = 1, 2  # every read below pages
    out = run_cli("run", PIPELINE_REF, "--stack", "sagemaker-local", "--follow", "--param", "factor=1",
                  "--timeout", "60", cwd=sm_project.path)
    assert out.returncode == 0, out.stdout + out.stderr
    arn = re.search(r"^following (\S+)$", out.stdout, re.M).group(1)
    assert re.match(rf"arn:aws:sagemaker:{REGION}:123456789012:pipeline/flowyml-sm-multi-unit/execution/\w+$", arn)
    assert "4 ran, 0 cached, 0 skipped, 0 failed" in out.stdout
    streamed = out.stdout[out.stdout.index("following"):]
    for expected in ("running prep (load, clean)", "loading with factor 1", "fitting the model",
                     f"execution {arn} finished: completed"):
        assert expected in streamed, expected
    assert streamed.index("running prep") < streamed.index("fitting the model")
    assert len(re.findall(r"\] \[fit\] fitting the model", streamed)) == 1, streamed  # each line once

    fake = sm_project.fake
    ran = [(e.task_name, e.env["FLOWYML_STEP_NAMES"], e.returncode) for e in fake.executions]
    assert ran == [("prep", "load,clean", 0), ("fit", "fit", 0), ("report", "report", 0)]
    run_id = fake.executions[0].env["FLOWYML_RUN_ID"]
    store = sm_project.resolve().artifact_store
    assert store.load_artifact(run_id, "clean", "clean") == [2, 4]
    assert store.load_artifact(run_id, "report", "report") == {"score": 0.6, "n_raw": 5}

    logs = run_cli("runs", "logs", arn, "--stack", "sagemaker-local", cwd=sm_project.path)
    assert logs.returncode == 0, logs.stderr
    assert re.search(r"\[INFO\] \[prep\] running prep \(load, clean\)", logs.stdout), logs.stdout
    assert re.search(r"\[fit\] fitting the model", logs.stdout)
    status = run_cli("runs", "status", run_id, "--json", cwd=sm_project.path)  # by run id, from the history
    assert status.returncode == 0, status.stderr
    details = json.loads(status.stdout)
    assert details["status"] == "completed" and details["state"] == "Succeeded"
    assert [(s["unit"], s["state"]) for s in details["steps"]] == [("prep", "Succeeded"), ("fit", "Succeeded"),
                                                                    ("report", "Succeeded")]
    assert all(s["processing_job"].startswith("pipelines-") for s in details["steps"])
    assert any(body.get("nextToken") for body in sm_project.fake.calls("Logs_20140328.FilterLogEvents"))
    assert any(body.get("NextToken") for body in sm_project.fake.calls("SageMaker.ListPipelineExecutionSteps"))
