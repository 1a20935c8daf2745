"""The SageMaker pipeline definition of a run: one Processing step per execution unit.

Each unit that must run (:attr:`flowyml_core.remote.RemoteRun.tasks`) becomes a
``Processing`` step whose container runs ``flowyml step-runner`` with the
unit's ``FLOWYML_*`` environment. Steps exchange data through the stack's
artifact store (records), so the only edges SageMaker needs are ``DependsOn``.
The arguments of a step are those of ``CreateProcessingJob``, which SageMaker
calls when the step starts, so SageMaker's limits on them are checked here,
before anything is submitted: at most 100 variables of at most 256 characters
each. The shipped stack is longer than that, so long values travel in parts
(:func:`flowyml_core.shipping.split_long_values`) that the step runner joins.

This module imports no boto3 code.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import attrs

from flowyml_core.errors import FlowymlError
from flowyml_core.remote import UnitTask
from flowyml_core.resources import ResourceConfig, parse_memory
from flowyml_core.shipping import split_long_values

from flowyml_sagemaker.config import SageMakerConfig
from flowyml_sagemaker.instances import choose_instance_type
from flowyml_sagemaker.states import step_names

DEFINITION_VERSION = "2020-12-01"
STEP_RUNNER_ENTRYPOINT = ("flowyml", "step-runner")
#: CreateProcessingJob's limits on ``Environment``.
ENV_VALUE_LIMIT = 256
ENV_ENTRIES_LIMIT = 100
#: CreatePipeline's limit on ``PipelineDefinition``.
DEFINITION_LIMIT = 1_048_576


@attrs.define(frozen=True)
class StepPlan:
    """One processing job: the unit it runs, its step name, what it waits for and how it is sized."""

    unit: str
    name: str
    steps: tuple[str, ...]
    depends_on: tuple[str, ...]
    env: dict[str, str]
    instance_type: str
    volume_size_gb: int


def volume_size(resources: ResourceConfig | None, configured: int) -> int:
    """The configured volume, raised to the unit's ``disk_size`` (in whole GB) when that is larger."""
    if resources is None or not resources.disk_size:
        return configured
    return max(configured, math.ceil(parse_memory(resources.disk_size) / 10**9))


def unit_env(task: UnitTask, base_env: Mapping[str, str]) -> dict[str, str]:
    """The processing job's ``Environment``: the user's variables under the step runner's, long values in parts."""
    env = {**{str(k): str(v) for k, v in base_env.items()}, **task.env, "PYTHONUNBUFFERED": "1"}
    env = split_long_values(env, ENV_VALUE_LIMIT)
    if len(env) > ENV_ENTRIES_LIMIT:
        raise FlowymlError(
            f"unit {task.name!r} needs {len(env)} environment variables, more than the {ENV_ENTRIES_LIMIT} a "
            "SageMaker processing job takes; set fewer env_vars in the sagemaker executor options"
        )
    long_keys = [key for key in env if len(key) > ENV_VALUE_LIMIT]
    if long_keys:
        raise FlowymlError(f"env_vars: variable names longer than {ENV_VALUE_LIMIT} characters: {', '.join(long_keys)}")
    return env


def plan_steps(tasks: Sequence[UnitTask], config: SageMakerConfig, base_env: Mapping[str, str]) -> list[StepPlan]:
    """A :class:`StepPlan` per submitted unit, in execution-unit order."""
    names = step_names([task.name for task in tasks])
    plans = []
    for task in tasks:
        plans.append(StepPlan(
            unit=task.name, name=names[task.name], steps=task.steps,
            depends_on=tuple(names[dep] for dep in task.after),
            env=unit_env(task, base_env),
            instance_type=choose_instance_type(task.resources, config.instance_type),
            volume_size_gb=volume_size(task.resources, config.volume_size_gb),
        ))
    return plans


def processing_arguments(plan: StepPlan, config: SageMakerConfig, image: str, role_arn: str) -> dict[str, Any]:
    """The step's ``Arguments``: a ``CreateProcessingJob`` request without its name."""
    cluster: dict[str, Any] = {"InstanceCount": 1, "InstanceType": plan.instance_type,
                               "VolumeSizeInGB": plan.volume_size_gb}
    if config.volume_kms_key:
        cluster["VolumeKmsKeyId"] = config.volume_kms_key
    arguments: dict[str, Any] = {
        "ProcessingResources": {"ClusterConfig": cluster},
        "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": list(STEP_RUNNER_ENTRYPOINT)},
        "RoleArn": role_arn,
        "Environment": dict(plan.env),
        "StoppingCondition": {"MaxRuntimeInSeconds": config.max_runtime_seconds},
    }
    if config.subnets:
        arguments["NetworkConfig"] = {"VpcConfig": {"Subnets": list(config.subnets),
                                                    "SecurityGroupIds": list(config.security_group_ids)}}
    return arguments


def build_definition(plans: Sequence[StepPlan], config: SageMakerConfig, image: str, role_arn: str) -> dict[str, Any]:
    """The pipeline definition (a JSON object) SageMaker runs."""
    if not plans:
        raise FlowymlError("a SageMaker pipeline needs at least one step to run")
    steps = []
    for plan in plans:
        step: dict[str, Any] = {
            "Name": plan.name,
            "Type": "Processing",
            "DisplayName": plan.unit[:82],
            "Description": f"flowyml unit {plan.unit}: {', '.join(plan.steps)}"[:3072],
            "Arguments": processing_arguments(plan, config, image, role_arn),
            # flowyml's own cache decides what reruns (checked before submitting, and in each unit).
            "CacheConfig": {"Enabled": False},
        }
        if plan.depends_on:
            step["DependsOn"] = list(plan.depends_on)
        steps.append(step)
    definition = {"Version": DEFINITION_VERSION, "Metadata": {},
                  "Parameters": [], "Steps": steps}
    size = len(definition_json(definition))
    if size > DEFINITION_LIMIT:
        raise FlowymlError(f"the pipeline definition is {size} characters, more than the {DEFINITION_LIMIT} "
                           "SageMaker accepts; group steps into fewer units (execution_group)")
    return definition


def definition_json(definition: Mapping[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"))
