"""Status, details, logs, waiting and cancelling, for PipelineJobs and CustomJobs, on the fake.

The orchestrator talks to the fake Vertex AI / Cloud Logging server with the
real ``aiplatform_v1`` and ``google.cloud.logging`` clients; the fake executes
what was submitted as local processes. Here the containers' commands are
replaced (``image_map`` wrappers) so that these tests need no artifact store;
``test_end_to_end.py`` runs the real step runner.
"""

from __future__ import annotations

import sys

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_core.results import ExecutionStatus
from flowyml_vertex.config import VertexConfig
from flowyml_vertex.orchestrator import VertexAIOrchestrator

from .conftest import PIPELINE_FILE, PIPELINE_REF, TEST_IMAGE, TEST_LOCATION, TEST_PROJECT
from .test_compile import executor_of

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


def wrapped(script: str, *args: str) -> dict:
    """An image_map that runs ``script`` instead of the container's `flowyml step-runner`."""
    return {TEST_IMAGE: [PY, "-c", script, *args, "--"]}


def test_custom_job_status_details_and_logs(fake_gcp_factory, pipeline, memory_store):
    fake = fake_gcp_factory(image_map=wrapped(SCRIPT))
    orchestrator = orchestrator_for(fake, submit="custom_job", labels={"team": "ml"},
                                    service_account="sa@p.iam.gserviceaccount.com")
    submission = orchestrator.run_pipeline(
        pipeline, "customrun0000001", stack_name="gcp-dev", pipeline_module=PIPELINE_REF, artifact_store=memory_store,
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


def test_custom_job_runs_every_step_through_the_step_runner(fake_gcp_factory, memory_store):
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def first():
        return 1

    @step(inputs=["a"])
    def second(a):
        return a

    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    orchestrator = orchestrator_for(fake, submit="custom_job")
    submission = orchestrator.run_pipeline(Pipeline("flat", steps=[first, second]), "flatrun000000001",
                                           pipeline_module="flat.py:pipeline", context={"x": 1},
                                           artifact_store=memory_store)
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    [record] = fake.executions
    assert record.argv[-2:] == ["flowyml", "step-runner"]
    assert record.env["FLOWYML_STEP_NAMES"] == "first,second"
    assert record.env["FLOWYML_EXECUTION_GROUP"] == "flat"
    assert record.env["FLOWYML_PIPELINE_MODULE"] == "flat.py:pipeline"
    assert record.env["FLOWYML_CONTEXT"] == '{"x": 1}'
    assert orchestrator.get_run_details(submission.job_id)["machine_type"] == "n1-standard-4"
    assert submission.metadata["steps"] == ["first", "second"]


def test_a_pipeline_without_groups_is_a_pipeline_job_with_one_task_per_step(fake_gcp_factory, memory_store):
    from flowyml_core import Pipeline, ResourceConfig, step

    @step(outputs=["a"])
    def first():
        return 1

    @step(inputs=["a"], outputs=["b"], resources=ResourceConfig(cpu="4", memory="8Gi", gpu="T4"))
    def second(a):
        return a

    @step(inputs=["b"])
    def third(b):
        return b

    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    orchestrator = orchestrator_for(fake)
    submission = orchestrator.run_pipeline(Pipeline("flat", steps=[first, second, third]), "flatrun000000002",
                                           pipeline_module="flat.py:pipeline", artifact_store=memory_store)
    assert "/pipelineJobs/" in submission.job_id and submission.metadata["tasks"] == 3
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    assert [(e.task_name, e.env["FLOWYML_STEP_NAMES"]) for e in fake.executions] == [
        ("first", "first"), ("second", "second"), ("third", "third")]
    assert not fake.requests_to("POST", r"/customJobs$")
    # each task its own machine: only "second" asks for a GPU
    spec = fake.requests_to("POST", r"/pipelineJobs$")[0].body["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    gpus = {k: v["container"].get("resources", {}).get("accelerator", {}).get("resourceType") for k, v in executors.items()}
    assert sorted(gpus.values(), key=str) == ["NVIDIA_TESLA_T4", None, None]


def test_run_level_resources_size_the_units_without_their_own(fake_gcp_factory, pipeline, memory_store):
    from flowyml_core import ResourceConfig

    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    submission = orchestrator_for(fake).run_pipeline(
        pipeline, "resrun0000000001", pipeline_module=PIPELINE_REF, artifact_store=memory_store,
        resources=ResourceConfig(cpu="16", memory="64Gi"))
    assert submission.wait(30) is ExecutionStatus.COMPLETED
    spec = fake.requests_to("POST", r"/pipelineJobs$")[0].body["pipelineSpec"]

    def limits(task):
        res = executor_of(spec, task).get("resources", {})
        return res.get("resourceCpuLimit"), res.get("resourceMemoryLimit")

    assert limits("prep") == limits("evaluate") == ("16", "64Gi")  # no resources of their own
    assert limits("train") == ("2", "4Gi")  # fit's own
    # one CustomJob: its machine fits the largest of every unit's resources
    custom = orchestrator_for(fake, submit="custom_job").run_pipeline(
        pipeline, "resrun0000000002", pipeline_module=PIPELINE_REF, artifact_store=memory_store,
        resources=ResourceConfig(cpu="16", memory="64Gi"))
    assert custom.metadata["machine_type"] == "n1-highmem-16"
    assert custom.wait(30) is ExecutionStatus.COMPLETED


def test_an_unknown_pipeline_module_is_an_error_before_anything_is_built(fake_gcp_factory, pipeline, memory_store):
    fake = fake_gcp_factory()
    for options in ({}, {"submit": "custom_job"}, {"image": None, "registry": "127.0.0.1:1/nowhere"}):
        with pytest.raises(FlowymlError) as info:
            orchestrator_for(fake, **options).run_pipeline(pipeline, "nomodule00000001", pipeline_module=None,
                                                           stack_name="gcp-dev", artifact_store=memory_store)
        text = str(info.value)
        assert "does not know the file or module that defines it" in text
        assert "flowyml run path/to/file.py:pipeline --stack gcp-dev" in text
        assert "a module importable from the project" in text
    assert not fake.requests


def test_a_local_artifact_store_is_refused_when_units_run_in_several_containers(
        fake_gcp_factory, pipeline, tmp_path):
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

    local = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))
    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    with pytest.raises(FlowymlError) as info:
        orchestrator_for(fake).run_pipeline(pipeline, "localrun00000001", pipeline_module=PIPELINE_REF,
                                            stack_name="laptop", artifact_store=local)
    text = str(info.value)
    assert f"stack 'laptop' keeps artifacts at the local path '{tmp_path / 'artifacts'}'" in text
    assert "several Vertex AI containers" in text and 'flavor = "gcs"' in text
    assert not fake.requests
    # one CustomJob runs every step in one container: its own disk is enough
    submission = orchestrator_for(fake, submit="custom_job").run_pipeline(
        pipeline, "localrun00000002", pipeline_module=PIPELINE_REF, stack_name="laptop", artifact_store=local)
    assert submission.wait(30) is ExecutionStatus.COMPLETED


def test_names_vertex_would_refuse_are_made_valid(fake_gcp_factory, memory_store):
    """A pipeline named "2024 forecast", or with a very long name, still submits; the run id stays whole."""
    from flowyml_core import Pipeline, step

    @step
    def only():
        return 1

    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", "pass", "--"]})
    orchestrator = orchestrator_for(fake)
    for name in ("2024 forecast", "A very long pipeline name " * 8):
        for run_id in ("0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7c"):
            submission = orchestrator.run_pipeline(Pipeline(name, steps=[only]), run_id,
                                                   pipeline_module="p.py:pipeline", artifact_store=memory_store)
            job = submission.job_id.rsplit("/", 1)[1]
            assert job[0].isalpha() and len(job) <= 128 and job.endswith(f"-{run_id}"), job
            assert submission.wait(30) is ExecutionStatus.COMPLETED
            assert len(orchestrator.get_run_details(submission.job_id)["display_name"]) <= 128
    assert len(fake.requests_to("POST", r"/pipelineJobs$")) == 4


def test_failed_custom_job_reports_its_error(fake_gcp_factory, pipeline, memory_store):
    fake = fake_gcp_factory(base_env={"EXIT_CODE": "3"}, image_map=wrapped(SCRIPT))
    orchestrator = orchestrator_for(fake, submit="custom_job")
    submission = orchestrator.run_pipeline(pipeline, "failrun000000001", pipeline_module=PIPELINE_REF,
                                           artifact_store=memory_store)
    assert submission.wait(30) is ExecutionStatus.FAILED
    details = orchestrator.get_run_details(submission.job_id)
    assert details["state"] == "JOB_STATE_FAILED"
    assert "non-zero status of 3" in details["error"] and "boom: disk on fire" in details["error"]
    assert "[ERROR] boom: disk on fire" in orchestrator.get_run_logs(submission.job_id)


def test_a_stack_without_artifact_store_is_refused_before_submission(fake_gcp_factory, pipeline):
    fake = fake_gcp_factory()
    for submit in ("pipeline", "custom_job"):
        with pytest.raises(FlowymlError, match="stack 'bare' has no artifact_store: steps on Vertex AI exchange data"):
            orchestrator_for(fake, submit=submit).run_pipeline(pipeline, "bare000000000001", stack_name="bare",
                                                               pipeline_module=PIPELINE_REF)
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
