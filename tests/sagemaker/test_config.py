"""Bad executor options are one line each, naming the field; nothing is submitted with a missing role."""

from __future__ import annotations

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.loader import load_pipeline
from flowyml_sagemaker.config import SageMakerConfig
from flowyml_sagemaker.orchestrator import SageMakerOrchestrator

from .conftest import PIPELINE_REF, ROLE, TEST_IMAGE

STACKS = """\
[stacks.bad]
executor = { flavor = "sagemaker", region = "eu-wst1", role_arn = "my-role", instance_type = "m5.xlarge", poll_interval = 0, volume_size_gb = 0, subnets = ["subnet-1"] }

[stacks.unknown]
executor = { flavor = "sagemaker", region = "eu-west-9", instance_type = "ml.zz9.huge", image = "img:1" }

[stacks.good]
executor = { flavor = "sagemaker", region = "eu-west-1", role_arn = "arn:aws:iam::123456789012:role/r", instance_type = "ml.g5.xlarge", image = "img:1", key = "${env:SM_KEY}", secret = "${env:SM_SECRET}" }
"""


@pytest.fixture
def stacks_project(project):
    (project / "stacks.toml").write_text(STACKS)
    return project


def test_every_bad_option_is_named_at_once(stacks_project, run_cli):
    out = run_cli("stack", "validate", "bad", cwd=stacks_project)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = [line.strip() for line in out.stderr.splitlines() if "option '" in line]
    expected = {
        "region": "'eu-wst1' is not an AWS region such as 'eu-west-1'",
        "role_arn": "'my-role' is not an IAM role ARN such as 'arn:aws:iam::123456789012:role/",
        "instance_type": "'m5.xlarge' is not a SageMaker instance type such as 'ml.m5.xlarge'",
        "poll_interval": "must be > 0",
        "volume_size_gb": "must be between 1 and 16384 GB",
        "security_group_ids": "is empty but subnets is set: a VPC needs both",
    }
    assert len(lines) == len(expected), out.stderr
    for field, problem in expected.items():
        assert any(f"executor 'sagemaker': option '{field}':" in line and problem in line for line in lines), field


def test_validate_names_a_missing_role_an_unknown_region_and_instance_type(stacks_project, run_cli):
    out = run_cli("stack", "validate", "unknown", cwd=stacks_project, env={"AWS_EC2_METADATA_DISABLED": "true"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "role_arn is not set (the IAM role SageMaker runs the pipeline as" in out.stderr
    assert "region 'eu-west-9' is not a region SageMaker runs in (nearby: eu-central-1" in out.stderr
    assert "instance_type: 'ml.zz9.huge' is not a SageMaker processing instance type" in out.stderr
    good = run_cli("stack", "validate", "good", cwd=stacks_project, env={"SM_KEY": "k", "SM_SECRET": "s3cr3t-value"})
    assert good.returncode == 0, good.stderr
    shown = run_cli("stack", "show", "good", cwd=stacks_project, env={"SM_KEY": "k", "SM_SECRET": "s3cr3t-value"})
    assert shown.returncode == 0 and "s3cr3t-value" not in shown.stdout + shown.stderr


def test_a_run_without_a_role_submits_nothing(sm_project):
    stack = sm_project.resolve()
    orchestrator = SageMakerOrchestrator(SageMakerConfig(region="us-east-1", endpoint_url=sm_project.fake.url,
                                                         image=TEST_IMAGE))
    with pytest.raises(FlowymlError, match="^role_arn is not set: SageMaker runs the pipeline"):
        orchestrator.run_pipeline(load_pipeline(PIPELINE_REF), "r1", pipeline_module=PIPELINE_REF, stack=stack)
    assert sm_project.fake.requests == []


def test_an_unknown_machine_type_in_a_step_is_refused_before_submitting(sm_project):
    from flowyml_core import Pipeline, ResourceConfig, step

    @step(resources=ResourceConfig(machine_type="ml.m5.huge"))
    def big():
        return 1

    stack = sm_project.resolve()
    with pytest.raises(FlowymlError, match="unit 'big' \\(machine_type in its resources\\): 'ml.m5.huge' is not a "
                                           "SageMaker processing instance type \\(this family has: ml.m5"):
        stack.executor.run_pipeline(Pipeline("one", steps=[big]), "r2", pipeline_module="x.py:p", stack=stack)
    assert sm_project.fake.requests == []


def test_local_artifact_stores_are_refused(sm_project, tmp_path):
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

    orchestrator = SageMakerOrchestrator(SageMakerConfig(region="us-east-1", endpoint_url=sm_project.fake.url,
                                                         image=TEST_IMAGE, role_arn=ROLE))
    store = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a")))
    with pytest.raises(FlowymlError, match="on this machine, but each SageMaker processing job has its own disk"):
        orchestrator.run_pipeline(load_pipeline(PIPELINE_REF), "r3", pipeline_module=PIPELINE_REF,
                                  artifact_store=store)
    assert sm_project.fake.requests == []
