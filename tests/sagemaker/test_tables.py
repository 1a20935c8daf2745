"""Statuses, instance types and names against botocore's own SageMaker service model."""

from __future__ import annotations

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import ExecutionStatus
from flowyml_sagemaker.instances import CPU_INSTANCES, GPU_INSTANCES, choose_instance_type, known_instance_types
from flowyml_sagemaker.states import (
    EXECUTION_STATES, STEP_STATES, execution_name, map_execution_status, parse_execution_arn, pipeline_name,
    step_names,
)


@pytest.fixture(scope="module")
def model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def test_every_status_sagemaker_reports_is_mapped(model):
    assert set(EXECUTION_STATES) == set(model.shape_for("PipelineExecutionStatus").enum)
    assert set(STEP_STATES) == set(model.shape_for("StepStatus").enum)
    assert map_execution_status("CompletedWithFailures") is ExecutionStatus.FAILED
    with pytest.raises(FlowymlError, match="unknown pipeline execution status 'Paused'"):
        map_execution_status("Paused")


def test_the_instance_catalogue_is_what_sagemaker_accepts():
    known = known_instance_types()
    assert {i.name for i in CPU_INSTANCES + GPU_INSTANCES} <= known


@pytest.mark.parametrize("resources, expected", [
    (None, "ml.m5.large"),
    (ResourceConfig(cpu="3"), "ml.c5.xlarge"),  # the least memory that fits: compute-optimised
    (ResourceConfig(cpu="2", memory="12Gi"), "ml.r5.large"),
    (ResourceConfig(cpu="16", memory="20Gi"), "ml.c5.4xlarge"),
    (ResourceConfig(gpu="T4"), "ml.g4dn.xlarge"),
    (ResourceConfig(gpu="nvidia-tesla-v100", gpu_count=4), "ml.p3.8xlarge"),
    (ResourceConfig(gpu="A10G", cpu="8"), "ml.g5.2xlarge"),
    (ResourceConfig(machine_type="ml.c5.9xlarge", cpu="1"), "ml.c5.9xlarge"),
])
def test_instance_type_from_resources(resources, expected):
    assert choose_instance_type(resources) == expected


def test_resources_no_instance_fits_are_one_line():
    with pytest.raises(FlowymlError, match="no SageMaker instance in flowyml's catalogue has 500 vCPUs"):
        choose_instance_type(ResourceConfig(cpu="500"))
    with pytest.raises(FlowymlError, match="unknown GPU 'TPU'"):
        choose_instance_type(ResourceConfig(gpu="TPU"))
    assert choose_instance_type(ResourceConfig(cpu="500"), default="ml.m5.24xlarge") == "ml.m5.24xlarge"


def test_names_sagemaker_accepts(model):
    import re

    pattern = model.shape_for("PipelineName").metadata["pattern"]
    assert re.fullmatch(pattern, pipeline_name("flowyml", "2024 forecast: v2!")) and \
        pipeline_name("flowyml", "2024 forecast: v2!") == "flowyml-2024-forecast-v2"
    run = "Run_2024/01 (retry)"
    assert re.fullmatch(model.shape_for("PipelineExecutionName").metadata["pattern"], execution_name(run))
    assert execution_name(run) != execution_name("Run_2024/01 (retry!)")  # changed ids keep a digest
    assert execution_name("abc123") == "abc123"
    names = step_names(["prep", "Train model", "x" * 80, "x" * 80 + "y"])
    assert names["Train model"] == "Train-model" and len(set(names.values())) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,48}", n) for n in names.values())
    arn = parse_execution_arn("arn:aws:sagemaker:eu-west-1:123456789012:pipeline/flowyml-p/execution/abc")
    assert (arn.region, arn.pipeline, arn.execution_id) == ("eu-west-1", "flowyml-p", "abc")
