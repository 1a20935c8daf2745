"""The compiled KFP pipeline, read back from the YAML KFP wrote: tasks, edges, env, resources.

The YAML is the artefact Vertex AI receives, so the checks read it, not the
in-memory plan.
"""

from __future__ import annotations

import json

import pytest
import yaml

from flowyml_core import Context, Pipeline, ResourceConfig, step
from flowyml_core.errors import FlowymlError
from flowyml_vertex.compile import compile_pipeline_spec, context_json, kfp_name, plan_tasks

from .conftest import PIPELINE_REF
from .multi_group_pipeline import pipeline as multi_group

IMAGE = "europe-west1-docker.pkg.dev/acme/flowyml/app:0123abcd"


def compile_yaml(pipeline, tmp_path, **kwargs):
    options = dict(run_id="run0123456789abc", pipeline_module=PIPELINE_REF, stack_name="gcp-prod",
                   context_params={"factor": 3, "explode": False, "sleep_seconds": 0.0})
    options.update(kwargs)
    plans = plan_tasks(pipeline.build(), **options)
    path = tmp_path / "pipeline.yaml"
    compile_pipeline_spec(pipeline.name, plans, IMAGE, package_path=path)
    return yaml.safe_load(path.read_text())


def executor_of(spec, task_key):
    label = spec["components"][spec["root"]["dag"]["tasks"][task_key]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def env_of(spec, task_key):
    return {e["name"]: e["value"] for e in executor_of(spec, task_key).get("env", [])}


def test_one_task_per_execution_unit_with_dag_dependencies(tmp_path):
    spec = compile_yaml(multi_group, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"prep", "train", "evaluate"}
    assert "dependentTasks" not in tasks["prep"]
    assert tasks["train"]["dependentTasks"] == ["prep"]
    # evaluate reads "model" (train) and "raw" (prep): both are edges
    assert sorted(tasks["evaluate"]["dependentTasks"]) == ["prep", "train"]
    assert {k: t["taskInfo"]["name"] for k, t in tasks.items()} == {"prep": "prep", "train": "train", "evaluate": "evaluate"}
    assert spec["pipelineInfo"]["name"] == "vertex-multi-group"
    # flowyml's cache decides what reruns, not KFP's
    assert all(t["cachingOptions"].get("enableCache") in (None, False) for t in tasks.values())


def test_every_task_runs_the_step_runner_with_its_unit_in_the_environment(tmp_path):
    spec = compile_yaml(multi_group, tmp_path)
    for key in ("prep", "train", "evaluate"):
        container = executor_of(spec, key)
        assert container["image"] == IMAGE
        assert container["command"] == ["flowyml", "step-runner"]
    prep = env_of(spec, "prep")
    assert prep["FLOWYML_STEP_NAMES"] == "load,clean"
    assert prep["FLOWYML_EXECUTION_GROUP"] == "prep"
    assert prep["FLOWYML_PIPELINE_MODULE"] == PIPELINE_REF
    assert prep["FLOWYML_RUN_ID"] == "run0123456789abc"
    assert prep["FLOWYML_PIPELINE_NAME"] == "vertex-multi-group"
    assert prep["FLOWYML_STACK"] == "gcp-prod"
    assert json.loads(prep["FLOWYML_CONTEXT"]) == {"factor": 3, "explode": False, "sleep_seconds": 0.0}
    assert prep["PYTHONUNBUFFERED"] == "1"
    assert env_of(spec, "train")["FLOWYML_STEP_NAMES"] == "fit"
    assert env_of(spec, "evaluate")["FLOWYML_EXECUTION_GROUP"] == "evaluate"


def test_resources_come_from_the_unit(tmp_path):
    spec = compile_yaml(multi_group, tmp_path)
    train = executor_of(spec, "train")["resources"]
    assert train["resourceCpuLimit"] == "2"
    assert train["resourceMemoryLimit"] == "4Gi"
    assert "resources" not in executor_of(spec, "prep")


def test_gpu_and_merged_group_resources(tmp_path):
    @step(outputs=["a"], execution_group="gpu work", resources=ResourceConfig(cpu="500m", memory="1Gi"))
    def first():
        return 1

    @step(inputs=["a"], outputs=["b"], execution_group="gpu work",
          resources=ResourceConfig(cpu="4", memory="512Mi", gpu="t4", gpu_count=2))
    def second(a):
        return a

    @step(inputs=["b"], name="3rd step")
    def third(b):
        return b

    spec = compile_yaml(Pipeline("GPU Pipeline_x", steps=[first, second, third]), tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"gpu-work", "u-3rd-step"}
    assert tasks["gpu-work"]["taskInfo"]["name"] == "gpu work"
    assert tasks["u-3rd-step"]["dependentTasks"] == ["gpu-work"]
    resources = executor_of(spec, "gpu-work")["resources"]
    assert resources["resourceCpuLimit"] == "4"          # max of the group's steps
    assert resources["resourceMemoryLimit"] == "1Gi"
    assert resources["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert spec["pipelineInfo"]["name"] == "gpu-pipeline-x"


def test_extra_env_never_overrides_the_runner_contract(tmp_path):
    spec = compile_yaml(multi_group, tmp_path, env_vars={"MY_FLAG": "1", "FLOWYML_RUN_ID": "hijack"},
                        extra_env={"FLOWYML_ARTIFACT_ROOT": "gs://b/x"})
    env = env_of(spec, "prep")
    assert env["MY_FLAG"] == "1"
    assert env["FLOWYML_RUN_ID"] == "run0123456789abc"
    assert env["FLOWYML_ARTIFACT_ROOT"] == "gs://b/x"


def test_parameters_must_be_json():
    assert json.loads(context_json({"a": [1, 2], "b": None})) == {"a": [1, 2], "b": None}
    with pytest.raises(FlowymlError, match="run parameter\\(s\\) when .*JSON values"):
        context_json({"when": object(), "ok": 1})


def test_kfp_names():
    assert kfp_name("My_Pipeline v2!") == "my-pipeline-v2"
    assert kfp_name("-x-") == "x"
    assert len(kfp_name("a" * 300)) == 128
