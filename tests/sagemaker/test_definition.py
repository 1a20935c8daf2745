"""The pipeline definition a run writes: one Processing step per unit, its edges, sizes and environment.

The fake's image map replaces each container's command with one that exits at
once, so these tests read what was submitted without waiting for steps to run.
"""

from __future__ import annotations

import json
import sys

import pytest

from flowyml_core.errors import ConfigError
from flowyml_core.loader import load_pipeline
from flowyml_core.pipeline import run_on_stack
from flowyml_core.shipping import join_split_values, split_long_values

from .conftest import PIPELINE_REF, ROLE, TEST_IMAGE

from tests.servers.moto_s3 import KEY, SECRET

PIPELINE = "flowyml-sm-multi-unit"


@pytest.fixture
def quick_project(sm_project):
    """The project, its fake made to start a process that exits at once instead of each step runner."""
    sm_project.fake.image_map = {TEST_IMAGE: [sys.executable, "-c", "", "--"]}
    return sm_project


def submit(project, **context):
    result = run_on_stack(load_pipeline(PIPELINE_REF), project.resolve(), context=context or None, wait=False,
                          source=PIPELINE_REF)
    project.fake.wait_idle()
    return result


def environment(step):
    """A step's Environment with the variables sent in parts joined again, as the step runner joins them."""
    return dict(join_split_values(step["Arguments"]["Environment"]))


def test_one_processing_step_per_unit_running_the_step_runner(quick_project):
    result = submit(quick_project, factor=2)
    definition = quick_project.fake.definition(PIPELINE)
    assert definition["Version"] == "2020-12-01"
    steps = {s["Name"]: s for s in definition["Steps"]}
    assert list(steps) == ["prep", "fit", "report"]
    assert "DependsOn" not in steps["prep"]
    assert steps["fit"]["DependsOn"] == ["prep"]
    assert sorted(steps["report"]["DependsOn"]) == ["fit", "prep"]
    for name, step in steps.items():
        args = step["Arguments"]
        assert step["Type"] == "Processing" and step["DisplayName"] == name
        assert step["CacheConfig"] == {"Enabled": False}  # flowyml's cache decides
        assert args["AppSpecification"] == {"ImageUri": TEST_IMAGE, "ContainerEntrypoint": ["flowyml", "step-runner"]}
        assert args["RoleArn"] == ROLE
        assert args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
        assert all(len(value) <= 256 for value in args["Environment"].values())  # CreateProcessingJob's limit
    cluster = {n: s["Arguments"]["ProcessingResources"]["ClusterConfig"] for n, s in steps.items()}
    assert cluster["prep"]["InstanceType"] == "ml.m5.large" and cluster["prep"]["VolumeSizeInGB"] == 30
    # fit asks for 8 CPUs, 30 GiB and a 100 GiB disk
    assert cluster["fit"]["InstanceType"] == "ml.m5.2xlarge" and cluster["fit"]["VolumeSizeInGB"] == 108

    env = environment(steps["prep"])
    assert env["FLOWYML_STEP_NAMES"] == "load,clean" and env["FLOWYML_EXECUTION_GROUP"] == "prep"
    assert env["FLOWYML_RUN_ID"] == result.run_id and env["FLOWYML_PIPELINE_MODULE"] == PIPELINE_REF
    assert json.loads(env["FLOWYML_CONTEXT"])["factor"] == 2
    shipped = json.loads(env["FLOWYML_STACK_CONFIG"])
    assert shipped["components"]["artifact_store"]["secret"] == "${env:S3_TEST_SECRET}"
    assert "executor" not in shipped["components"]
    assert "FLOWYML_STACK_CONFIG__PART2" in steps["prep"]["Arguments"]["Environment"]  # too long for one value
    text = json.dumps(quick_project.fake.requests)
    for secret in (KEY, SECRET, "sm-test-secret"):
        assert secret not in text, "a secret value reached a request"
    assert result.submission.metadata["steps"] == ["prep", "fit", "report"]


def test_each_run_updates_the_pipeline_and_starts_the_version_it_wrote(quick_project):
    submit(quick_project, factor=1)
    submit(quick_project, factor=5)
    fake = quick_project.fake
    # Create, and update when SageMaker says the pipeline exists (the second create is refused).
    assert len(fake.calls("SageMaker.CreatePipeline")) == 2 and len(fake.calls("SageMaker.UpdatePipeline")) == 1
    assert len(fake.pipelines) == 1
    first, second = fake.calls("SageMaker.StartPipelineExecution")
    assert "PipelineVersionId" not in first and second["PipelineVersionId"] == 2
    assert first["ClientRequestToken"] != second["ClientRequestToken"]
    versions = [json.loads(environment(fake.definition(PIPELINE, v)["Steps"][0])["FLOWYML_CONTEXT"])["factor"]
                for v in (1, 2)]
    assert versions == [1, 5]
    tags = {t["Key"]: t["Value"] for t in fake.calls("SageMaker.CreatePipeline")[0]["Tags"]}
    assert tags["flowyml:pipeline"] == "sm-multi-unit"


def test_executor_options_reach_the_definition(quick_project):
    quick_project.write_stacks(
        instance_type="ml.c5.xlarge", volume_size_gb=50, env_vars={"MODE": "batch"}, tags={"team": "ml"},
        max_parallel_steps=2, subnets=["subnet-1"], security_group_ids=["sg-1"], volume_kms_key="alias/ml",
        max_runtime_seconds=3600, pipeline_prefix="acme")
    submit(quick_project)
    fake = quick_project.fake
    steps = fake.definition("acme-sm-multi-unit")["Steps"]
    for step in steps:
        args = step["Arguments"]
        # The executor's instance_type is used for every unit; fit's disk still raises its volume.
        assert args["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c5.xlarge"
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "alias/ml"
        assert args["Environment"]["MODE"] == "batch"
        assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
        assert args["NetworkConfig"] == {"VpcConfig": {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}
    assert [s["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] for s in steps] == [50, 108, 50]
    [start] = fake.calls("SageMaker.StartPipelineExecution")
    assert start["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 2}
    assert {"Key": "team", "Value": "ml"} in fake.calls("SageMaker.CreatePipeline")[0]["Tags"]


def test_long_values_travel_in_parts_and_are_joined_back(monkeypatch):
    value = "x" * 300 + "é" * 300
    env = split_long_values({"FLOWYML_STACK_CONFIG": value, "SHORT": "s"}, 256)
    assert env["FLOWYML_STACK_CONFIG__PARTS"] == "3" and "FLOWYML_STACK_CONFIG" not in env
    assert all(len(v) <= 256 for v in env.values()) and env["SHORT"] == "s"
    monkeypatch.delenv("FLOWYML_STACK_CONFIG", raising=False)
    assert join_split_values(env)["FLOWYML_STACK_CONFIG"] == value
    del env["FLOWYML_STACK_CONFIG__PART2"]
    with pytest.raises(ConfigError, match="FLOWYML_STACK_CONFIG__PART2 is not set"):
        join_split_values(env)


def test_stores_without_a_signing_key_are_warned_about_before_submitting(quick_project, caplog):
    with caplog.at_level("WARNING", logger="flowyml.remote"):
        submit(quick_project)
    assert ("stack 'sagemaker-local': the artifact_store and cache_store set no signing_key, so each SageMaker "
            "processing container signs pickled outputs with a key of its own") in caplog.text
