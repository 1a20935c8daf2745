"""Status, details, logs, waiting and cancelling, for PipelineJobs and CustomJobs, on the fake.

The orchestrator talks to the fake Vertex AI / Cloud Logging server with the
real ``aiplatform_v1`` and ``google.cloud.logging`` clients; the fake executes
what was submitted as local processes. Here the containers' commands are
replaced (``image_map`` wrappers, or the fallback's own command) so that these
tests need no artifact store; ``test_end_to_end.py`` runs the real step runner.
"""

from __future__ import annotations

import sys

import pytest

from flowyml_core import DockerConfig
from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_core.results import ExecutionStatus
from flowyml_vertex.config import VertexConfig
from flowyml_vertex.orchestrator import VertexAIOrchestrator

from .conftest import PIPELINE_FILE, TEST_IMAGE, TEST_LOCATION, TEST_PROJECT

PY = sys.executable
SCRIPT = (
    "import json, os, sys\n"
    "print(json.dumps({'severity': 'WARNING', 'message': 'structured ' + os.environ['FLOWYML_RUN_ID']}))\n"
    "print('plain line from', os.environ['FLOWYML_PIPELINE_NAME'], flush=True)\n"
    "code = int(os.environ.get('EXIT_CODE', '0'))\n"
    "if code: sys.stderr.write('boom: disk on fire\\n')\n"
    "sys.exit(code)\n"
)


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests" / "vertex").mkdir(parents=True)
    (tmp_path / "tests" / "vertex" / PIPELINE_FILE.name).write_text(PIPELINE_FILE.read_text())
    return load_pipeline("tests/vertex/multi_group_pipeline.py:pipeline")


def orchestrator_for(fake, **options) -> VertexAIOrchestrator:
    config = dict(project_id=TEST_PROJECT, region=TEST_LOCATION, api_endpoint=fake.url, image=TEST_IMAGE,
                  staging_bucket="gs://bucket/root", poll_interval=0.1)
    config.update(options)
    return VertexAIOrchestrator(VertexConfig(**config))


def test_custom_job_fallback_status_details_and_logs(fake_gcp_factory, pipeline):
    fake = fake_gcp_factory()
    orchestrator = orchestrator_for(fake, labels={"team": "ml"}, service_account="sa@p.iam.gserviceaccount.com")
    submission = orchestrator.run_pipeline(
        pipeline, "customrun0000001", stack_name="gcp-dev", pipeline_module=None,
        docker_config=DockerConfig(command=[PY, "-c", SCRIPT]),
    )
    assert "/customJobs/" in submission.job_id
    assert submission.metadata["mode"] == "single_job"
    assert submission.metadata["machine_type"] == "n1-highmem-2"  # fit asks for 2 CPUs and 4Gi
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    assert orchestrator.get_run_status(submission.job_id) is ExecutionStatus.COMPLETED
    # a bare numeric id is a CustomJob of the configured project and region
    assert orchestrator.get_run_status(submission.job_id.rsplit("/", 1)[1]) is ExecutionStatus.COMPLETED

    details = orchestrator.get_run_details(submission.job_id)
    assert details["kind"] == "custom_job" and details["state"] == "JOB_STATE_SUCCEEDED"
    assert details["status"] == "completed" and details["error"] is None
    assert details["machine_type"] == "n1-highmem-2" and details["image"] == TEST_IMAGE
    assert details["labels"] == {"team": "ml", "flowyml-run-id": "customrun0000001", "flowyml-pipeline": "vertex-multi-group"}
    assert details["service_account"] == "sa@p.iam.gserviceaccount.com"
    assert "/training/" in details["console_url"]
    env = fake.executions[0].env
    assert env["FLOWYML_RUN_ID"] == "customrun0000001" and env["FLOWYML_STACK"] == "gcp-dev"

    logs = orchestrator.get_run_logs(submission.job_id)
    assert "[WARNING] structured customrun0000001" in logs
    assert "[INFO] plain line from vertex-multi-group" in logs
    assert logs.index("structured") < logs.index("plain line")
    entries = list(orchestrator.stream_logs(submission.job_id, poll_interval=0.05))
    assert [e["message"] for e in entries[:-1]] == ["structured customrun0000001", "plain line from vertex-multi-group"]
    assert entries[-1]["is_finished"] and entries[-1]["status"] == "completed"
    filters = [r.body["filter"] for r in fake.requests_to("POST", r"/v2/entries:list$")]
    assert all('resource.type="ml_job"' in f and "resource.labels.job_id=" in f for f in filters)


def test_custom_job_of_a_pipeline_without_groups_runs_every_step(fake_gcp_factory, memory_store):
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def first():
        return 1

    @step(inputs=["a"])
    def second(a):
        return a

    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    orchestrator = orchestrator_for(fake)
    submission = orchestrator.run_pipeline(Pipeline("flat", steps=[first, second]), "flatrun000000001",
                                           pipeline_module="flat.py:pipeline", context={"x": 1},
                                           artifact_store=memory_store)
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    record = fake.executions[0]
    assert record.argv[-2:] == ["flowyml", "step-runner"]
    assert record.env["FLOWYML_STEP_NAMES"] == "first,second"
    assert record.env["FLOWYML_EXECUTION_GROUP"] == "flat"
    assert record.env["FLOWYML_CONTEXT"] == '{"x": 1}'
    assert orchestrator.get_run_details(submission.job_id)["machine_type"] == "n1-standard-4"


def test_failed_custom_job_reports_its_error(fake_gcp_factory, pipeline):
    fake = fake_gcp_factory(base_env={"EXIT_CODE": "3"})
    orchestrator = orchestrator_for(fake)
    submission = orchestrator.run_pipeline(pipeline, "failrun000000001", docker_config=DockerConfig(command=[PY, "-c", SCRIPT]))
    assert submission.wait(30) is ExecutionStatus.FAILED
    details = orchestrator.get_run_details(submission.job_id)
    assert details["state"] == "JOB_STATE_FAILED"
    assert "non-zero status of 3" in details["error"] and "boom: disk on fire" in details["error"]
    assert "[ERROR] boom: disk on fire" in orchestrator.get_run_logs(submission.job_id)


def test_a_stack_without_artifact_store_is_refused_before_submission(fake_gcp_factory, pipeline):
    fake = fake_gcp_factory()
    with pytest.raises(FlowymlError, match="stack 'bare' has no artifact_store: steps on Vertex AI exchange data"):
        orchestrator_for(fake).run_pipeline(pipeline, "bare000000000001", stack_name="bare",
                                            pipeline_module="tests/vertex/multi_group_pipeline.py:pipeline")
    assert not fake.requests_to("POST", "Jobs$")


def test_a_pipeline_root_is_required_before_submission(fake_gcp_factory, pipeline, memory_store):
    fake = fake_gcp_factory()
    with pytest.raises(FlowymlError, match="needs a gs:// pipeline root: set staging_bucket"):
        orchestrator_for(fake, staging_bucket=None).run_pipeline(
            pipeline, "noroot0000000001", artifact_store=memory_store,
            pipeline_module="tests/vertex/multi_group_pipeline.py:pipeline")
    assert not fake.requests_to("POST", "Jobs$")


def test_unknown_jobs_and_unreachable_endpoints_are_clear_errors(fake_gcp_factory):
    fake = fake_gcp_factory()
    orchestrator = orchestrator_for(fake)
    missing = f"projects/{TEST_PROJECT}/locations/{TEST_LOCATION}/pipelineJobs/nope"
    with pytest.raises(FlowymlError, match=f"reading PipelineJob {missing}: not found"):
        orchestrator.get_run_status(missing)
    with pytest.raises(FlowymlError, match="cancelling CustomJob .*/customJobs/42: not found"):
        orchestrator.stop_run("42")
    from tests.servers.gcs_emulator import free_port

    dead = orchestrator_for(fake, api_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(FlowymlError, match="cannot reach the service at http://127.0.0.1"):
        dead.get_run_status(missing)


def test_submission_options_reach_vertex(fake_gcp_factory, pipeline, memory_store):
    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    key = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"
    orchestrator = orchestrator_for(fake, service_account="runner@p.iam.gserviceaccount.com",
                                    network="projects/1/global/networks/vpc", encryption_key=key)
    submission = orchestrator.run_pipeline(pipeline, "optsrun000000001", artifact_store=memory_store,
                                           pipeline_module="tests/vertex/multi_group_pipeline.py:pipeline")
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    body = fake.requests_to("POST", r"/pipelineJobs$")[0]
    assert body.query["pipelineJobId"] == ["vertex-multi-group-optsrun000000001"]
    assert body.body["serviceAccount"] == "runner@p.iam.gserviceaccount.com"
    assert body.body["network"] == "projects/1/global/networks/vpc"
    assert body.body["encryptionSpec"] == {"kmsKeyName": key}
    assert body.body["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    details = orchestrator.get_run_details(submission.job_id)
    assert details["encryption_key"] == key and details["network"] == "projects/1/global/networks/vpc"
    assert [t["name"] for t in details["tasks"]] == ["prep", "train", "evaluate"]
    assert all(t["state"] == "SUCCEEDED" and t["status"] == "completed" for t in details["tasks"])
    assert details["failed_tasks"] == {}
