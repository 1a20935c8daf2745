"""States, job names, machine choice, config and validate(): the parts with no server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import ExecutionStatus
from flowyml_vertex.config import VertexConfig, is_loopback_url
from flowyml_vertex.machines import choose_machine_type, gpu_request, normalize_gpu
from flowyml_vertex.orchestrator import VertexAIOrchestrator
from flowyml_core.remote import module_in_project
from flowyml_vertex.states import JOB_STATES, PIPELINE_STATES, TASK_STATES, map_state, parse_job_name


def test_every_vertex_state_is_mapped():
    from google.cloud.aiplatform_v1 import types as v1

    assert {m.name for m in v1.PipelineState} == set(PIPELINE_STATES)
    assert {m.name for m in v1.JobState} == set(JOB_STATES)
    assert {m.name for m in v1.PipelineTaskDetail.State} == set(TASK_STATES)
    for kind, table in (("pipeline", PIPELINE_STATES), ("custom", JOB_STATES)):
        for name, status in table.items():
            assert map_state(kind, name) is status
    assert map_state("pipeline", "PIPELINE_STATE_SUCCEEDED") is ExecutionStatus.COMPLETED
    assert map_state("custom", "JOB_STATE_EXPIRED") is ExecutionStatus.FAILED
    assert map_state("custom", "JOB_STATE_QUEUED") is ExecutionStatus.PROVISIONING
    assert map_state("pipeline", "PIPELINE_STATE_CANCELLING") is ExecutionStatus.CANCELLING
    # every terminal Vertex state is a finished flowyml status, every other one is not
    for name, status in {**PIPELINE_STATES, **JOB_STATES}.items():
        terminal = any(name.endswith(s) for s in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "PAUSED"))
        assert status.is_finished == terminal, name
    with pytest.raises(FlowymlError, match="unknown pipeline job state 'PIPELINE_STATE_NEW'"):
        map_state("pipeline", "PIPELINE_STATE_NEW")


def test_job_names_dispatch_on_their_collection():
    pipe = "projects/p1/locations/us-east1/pipelineJobs/my-run-1"
    custom = "projects/p1/locations/us-east1/customJobs/123"
    assert parse_job_name(pipe, "other", "europe-west1") == ("pipeline", "p1", "us-east1", pipe)
    assert parse_job_name(custom, None, "europe-west1") == ("custom", "p1", "us-east1", custom)
    assert parse_job_name("4567", "acme", "europe-west1") == (
        "custom", "acme", "europe-west1", "projects/acme/locations/europe-west1/customJobs/4567")
    assert parse_job_name("train-abc", "acme", "europe-west1")[0] == "pipeline"
    with pytest.raises(FlowymlError, match="not a Vertex AI job"):
        parse_job_name("projects/p/locations/r/datasets/1", "acme", "europe-west1")
    with pytest.raises(FlowymlError, match="no project_id"):
        parse_job_name("123", None, "europe-west1")


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (None, "n1-standard-4"),
        (ResourceConfig(cpu="2", memory="4Gi"), "n1-highmem-2"),
        (ResourceConfig(cpu="4"), "n1-standard-4"),
        (ResourceConfig(cpu="5", memory="8Gi"), "n1-standard-8"),
        (ResourceConfig(memory="40Gi"), "n1-highmem-8"),
        (ResourceConfig(cpu="20", memory="16Gi"), "n1-highcpu-32"),
        (ResourceConfig(cpu="4", gpu="T4"), "n1-standard-4"),
        (ResourceConfig(gpu="nvidia-tesla-a100", gpu_count=2), "a2-highgpu-2g"),
        (ResourceConfig(gpu="L4", cpu="10"), "g2-standard-12"),
        (ResourceConfig(cpu="64", machine_type="c2-standard-60"), "c2-standard-60"),
    ],
)
def test_machine_type_from_cpu_memory_gpu(resources, expected):
    assert choose_machine_type(resources) == expected


def test_gpu_names_and_impossible_requests():
    assert normalize_gpu("t4") == "NVIDIA_TESLA_T4"
    assert normalize_gpu("NVIDIA_L4") == "NVIDIA_L4"
    assert normalize_gpu("nvidia-h100") == "NVIDIA_H100_80GB"
    assert gpu_request(ResourceConfig(gpu="V100")) == ("NVIDIA_TESLA_V100", 1)
    with pytest.raises(FlowymlError, match="unknown GPU 'X9'"):
        normalize_gpu("X9")
    with pytest.raises(FlowymlError, match="without naming the GPU"):
        gpu_request(ResourceConfig(gpu_count=1))
    with pytest.raises(FlowymlError, match="no Vertex AI machine"):
        choose_machine_type(ResourceConfig(cpu="500", memory="1Gi"))
    assert choose_machine_type(ResourceConfig(cpu="1"), explicit="e2-standard-8") == "e2-standard-8"


def test_loopback_detection():
    assert is_loopback_url("http://127.0.0.1:8080")
    assert is_loopback_url("http://localhost:1")
    assert is_loopback_url("http://[::1]:9")
    assert not is_loopback_url("https://127.0.0.1:8080")  # TLS: a real endpoint setup
    assert not is_loopback_url("http://10.0.0.1")
    assert not is_loopback_url("europe-west1-aiplatform.googleapis.com")
    config = VertexConfig(project_id="p", api_endpoint="http://127.0.0.1:5")
    assert config.effective_logging_endpoint == "http://127.0.0.1:5"
    assert VertexConfig(project_id="p").endpoint_for("us-east4") == "us-east4-aiplatform.googleapis.com"
    assert VertexConfig(project_id="p").effective_logging_endpoint is None


def write_stack(project: Path, options: str) -> None:
    (project / "stacks.toml").write_text(f"[stacks.v]\nexecutor = {{ flavor = \"vertex\", {options} }}\n")


def test_stack_options_become_a_vertex_config(project):
    write_stack(project, 'project_id = "acme", requirements = ["numpy"], poll_interval = 2, labels = { team = "ml" }')
    from flowyml_core.stacks import StackRegistry

    orchestrator = StackRegistry.load().resolve("v").executor
    assert isinstance(orchestrator, VertexAIOrchestrator)
    assert orchestrator.config.region == "europe-west1"
    assert orchestrator.config.poll_interval == 2.0
    assert orchestrator.config.requirements == ["numpy"]
    data = orchestrator.to_dict()
    assert data["type"] == "vertex" and data["project_id"] == "acme" and "acme" in data["console_url"]


def test_bad_options_are_reported_with_stack_and_field(project):
    from flowyml_core.stacks import StackRegistry

    write_stack(project, 'project_id = "acme", region = "Europe West", poll_interval = 0, staging_bucket = "s3://x"')
    with pytest.raises(ConfigError) as info:
        StackRegistry.load().resolve("v")
    text = str(info.value)
    for expected in ("stack 'v'", "'region'", "'poll_interval'", "'staging_bucket'", "gs:// URL"):
        assert expected in text
    write_stack(project, 'project_id = "acme", colour = 1')
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        StackRegistry.load().resolve("v")


def test_submit_mode_is_checked_at_resolution(project):
    from flowyml_core.stacks import StackRegistry

    write_stack(project, 'project_id = "acme", submit = "custom_job"')
    assert StackRegistry.load().resolve("v").executor.config.submit == "custom_job"
    write_stack(project, 'project_id = "acme", submit = "one_big_job"')
    with pytest.raises(ConfigError) as info:
        StackRegistry.load().resolve("v")
    assert "'submit'" in str(info.value)
    assert "must be one of 'pipeline', 'custom_job', got 'one_big_job'" in str(info.value)
    assert VertexConfig().submit == "pipeline"


def test_a_secret_in_env_vars_is_refused_and_a_plain_value_is_fine(project, run_cli, monkeypatch):
    """env_vars are written into every task's container spec: a ${env:…} value there would publish the secret."""
    monkeypatch.setenv("API_TOKEN", "s3cr3t-value")
    write_stack(project, 'project_id = "acme", image = "img", env_vars = { MODE = "fast", TOKEN = "${env:API_TOKEN}" }')
    out = run_cli("stack", "validate", "v", cwd=project)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "option 'env_vars.TOKEN' takes its value from the secret API_TOKEN" in text
    assert "secret manager reference" in text and "read the secret inside the step" in text
    assert "s3cr3t-value" not in text
    assert "MODE" not in text  # the plain value is not a problem
    # a run is refused the same way, before anything is submitted
    (project / "flow.py").write_text("from flowyml_core import Pipeline, step\n"
                                     "@step\ndef only():\n    return 1\n"
                                     "pipeline = Pipeline('flow', steps=[only])\n")
    out = run_cli("run", "flow.py:pipeline", "--stack", "v", cwd=project)
    assert out.returncode != 0 and "'env_vars.TOKEN'" in out.stdout + out.stderr

    write_stack(project, 'project_id = "acme", image = "img", env_vars = { MODE = "fast" }')
    out = run_cli("stack", "validate", "v", cwd=project)
    assert out.returncode == 0 and "stack v is valid" in out.stdout, out.stdout + out.stderr


def test_validate_names_what_is_missing():
    with pytest.raises(FlowymlError, match="project_id is not set") as info:
        VertexAIOrchestrator(VertexConfig(image="x")).validate()
    assert "SDKs" not in str(info.value)
    with pytest.raises(FlowymlError, match="neither image .* nor registry"):
        VertexAIOrchestrator(VertexConfig(project_id="p")).validate()
    VertexAIOrchestrator(VertexConfig(project_id="p", registry="r.example/x")).validate()


def test_validate_without_the_sdks_installed(tmp_path):
    """A real interpreter whose path holds flowyml and its core deps, but no Google/KFP packages."""
    import attrs, cattrs, pluggy  # noqa: E401
    import flowyml_core, flowyml_vertex  # noqa: E401

    site = tmp_path / "site"
    site.mkdir()
    for module in (attrs, cattrs, pluggy, flowyml_core, flowyml_vertex):
        source = Path(module.__file__).parent
        (site / source.name).symlink_to(source)
    (site / "attr").symlink_to(Path(attrs.__file__).parent.parent / "attr")
    code = (
        "from flowyml_vertex.config import VertexConfig\n"
        "from flowyml_vertex.orchestrator import VertexAIOrchestrator\n"
        "try:\n"
        "    VertexAIOrchestrator(VertexConfig(project_id='p', image='i')).validate()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "FlowymlError" in out.stdout
    assert "google.cloud.aiplatform_v1, google.cloud.logging, kfp missing" in out.stdout
    assert "pip install flowyml-vertex" in out.stdout


def test_pipeline_file_is_made_relative_to_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "p.py").write_text("")
    assert module_in_project("pipes/p.py:pipeline", tmp_path) == "pipes/p.py:pipeline"
    assert module_in_project(f"{tmp_path}/pipes/p.py:pipeline", tmp_path) == "pipes/p.py:pipeline"
    assert module_in_project("pkg.mod:pipeline", tmp_path) == "pkg.mod:pipeline"
    with pytest.raises(FlowymlError, match="outside the project directory"):
        module_in_project("/elsewhere/p.py:pipeline", tmp_path)
    with pytest.raises(FlowymlError, match="outside the project directory"):
        module_in_project("../p.py:pipeline", tmp_path)


@pytest.mark.parametrize(
    ("artifact_options", "cache_options", "named"),
    [
        ({}, {}, "the artifact_store and cache_store set no signing_key"),
        ({"signing_key": "k"}, {}, "the cache_store sets no signing_key"),
        ({"signing_key": "k"}, {"allow_unsigned_pickle": True}, None),
        ({"signing_key": "k"}, {"signing_key": "k"}, None),
    ],
)
def test_a_store_without_signing_key_is_named_before_submitting(tmp_path, caplog, artifact_options, cache_options,
                                                                named):
    """Each Vertex container would sign pickles with a key of its own: said once, before anything is built."""
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
    from flowyml_core.remote import warn_unshared_signing_keys

    stores = {
        "artifact_store": LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a"), **artifact_options)),
        "cache_store": LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "c"), **cache_options)),
    }
    caplog.set_level("WARNING", logger="flowyml.remote")
    warn_unshared_signing_keys(stores, "gcp-dev", "Vertex AI")
    messages = [r.getMessage() for r in caplog.records if r.name == "flowyml.remote"]
    if named is None:
        assert messages == []
    else:
        [message] = messages
        assert message.startswith(f"stack 'gcp-dev': {named}, so each Vertex AI container signs pickled outputs")
        assert 'signing_key = "${env:FLOWYML_SIGNING_KEY}"' in message and "allow_unsigned_pickle = true" in message
