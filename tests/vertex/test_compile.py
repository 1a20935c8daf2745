"""The planned tasks and the compiled KFP pipeline, read back from the YAML KFP wrote.

The YAML is the artefact Vertex AI receives, so the checks read it, not the
in-memory plan.
"""

from __future__ import annotations

import json

import pytest
import yaml

from flowyml_core import Pipeline, ResourceConfig, step
from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import unit_name, unit_steps
from flowyml_vertex.compile import compile_pipeline_spec
from flowyml_vertex.names import RESOURCE_ID, display_name, job_id, kfp_name, resource_id
from flowyml_vertex.plan import plan_tasks

from .conftest import PIPELINE_REF
from .multi_group_pipeline import pipeline as multi_group

IMAGE = "europe-west1-docker.pkg.dev/acme/flowyml/app:0123abcd"


def plan(pipeline, **kwargs):
    """The tasks of a run, with each unit's environment from the core's RemoteRun (as run_pipeline does)."""
    import tempfile

    from flowyml_core.remote import RemoteRun
    from flowyml_core.testing import DirArtifactStore, DirStoreConfig

    with tempfile.TemporaryDirectory() as tmp:
        remote = RemoteRun(pipeline.build(), "run0123456789abc", pipeline_module=PIPELINE_REF, stack_name="gcp-prod",
                           context={"factor": 3, "explode": False, "sleep_seconds": 0.0},
                           artifact_store=DirArtifactStore(DirStoreConfig(path=tmp)))
    return plan_tasks(pipeline, **{"env_for_unit": remote.unit_env, **kwargs})


def compile_yaml(pipeline, tmp_path, **kwargs):
    plans = plan(pipeline, **kwargs)
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
    spec = compile_yaml(multi_group, tmp_path,
                        base_env={"MY_FLAG": "1", "FLOWYML_RUN_ID": "hijack", "FLOWYML_ARTIFACT_ROOT": "gs://b/x"})
    env = env_of(spec, "prep")
    assert env["MY_FLAG"] == "1"
    assert env["FLOWYML_RUN_ID"] == "run0123456789abc"
    assert env["FLOWYML_ARTIFACT_ROOT"] == "gs://b/x"


def test_parameters_must_be_json():
    from flowyml_core.remote import context_json

    assert json.loads(context_json({"a": [1, 2], "b": None})) == {"a": [1, 2], "b": None}
    with pytest.raises(FlowymlError, match="run parameter\\(s\\) when .*JSON values"):
        context_json({"when": object(), "ok": 1})


def test_a_pipeline_without_groups_is_one_task_per_step_each_on_its_own_machine(tmp_path):
    """No execution groups: one task per step (not one job for all), each sized from its own resources."""
    @step(outputs=["data"])
    def load():
        return 1

    @step(inputs=["data"], outputs=["model"], resources=ResourceConfig(cpu="8", memory="32Gi", gpu="T4"))
    def train(data):
        return data

    @step(inputs=["model"])
    def report(model):
        return model

    spec = compile_yaml(Pipeline("flat", steps=[load, train, report]), tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"load", "train", "report"}
    assert tasks["train"]["dependentTasks"] == ["load"] and tasks["report"]["dependentTasks"] == ["train"]
    assert {k: env_of(spec, k)["FLOWYML_STEP_NAMES"] for k in tasks} == {k: k for k in tasks}
    train = executor_of(spec, "train")["resources"]
    assert train["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("8", "32Gi")
    assert "resources" not in executor_of(spec, "load") and "resources" not in executor_of(spec, "report")


def test_run_level_resources_are_the_default_for_units_without_their_own(tmp_path):
    default = ResourceConfig(cpu="8", memory="16Gi")
    spec = compile_yaml(multi_group, tmp_path, default_resources=default)
    prep = executor_of(spec, "prep")["resources"]
    assert (prep["resourceCpuLimit"], prep["resourceMemoryLimit"]) == ("8", "16Gi")
    train = executor_of(spec, "train")["resources"]  # fit has its own: 2 CPUs, 4Gi
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("2", "4Gi")
    # one CustomJob for all: sized for the largest of each unit's (own or default) resources
    [single] = plan(multi_group, default_resources=default, single_job=True)
    assert (single.resources.cpu, single.resources.memory) == ("8", "16Gi")
    [single] = plan(multi_group, default_resources=ResourceConfig(cpu="1", gpu="T4"), single_job=True)
    assert (single.resources.cpu, single.resources.memory, single.resources.gpu) == ("2", "4Gi", "T4")


def test_a_machine_type_becomes_the_task_limits(tmp_path):
    @step(resources=ResourceConfig(machine_type="n1-highmem-8"))
    def big():
        return 1

    resources = executor_of(compile_yaml(Pipeline("m", steps=[big]), tmp_path), "big")["resources"]
    assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("8", "52Gi")

    @step(resources=ResourceConfig(machine_type="z9-mystery-3"))
    def odd():
        return 1

    with pytest.raises(FlowymlError, match="unit 'odd' asks for machine_type 'z9-mystery-3'.*give cpu and memory"):
        compile_yaml(Pipeline("m", steps=[odd]), tmp_path)


def test_a_custom_job_plan_runs_every_step_in_topological_order():
    [single] = plan(multi_group, single_job=True)
    assert single.steps == ("load", "clean", "fit", "evaluate")
    assert single.env["FLOWYML_STEP_NAMES"] == "load,clean,fit,evaluate"
    assert single.env["FLOWYML_EXECUTION_GROUP"] == "vertex-multi-group"
    assert single.env["FLOWYML_PIPELINE_MODULE"] == PIPELINE_REF


def test_a_caller_plan_chooses_the_units_and_their_environment(tmp_path):
    """The core's cache check will say which units to submit and give each its env: edges only between those."""
    units = multi_group.build().execution_units()
    prep, train, evaluate = units
    seen = []

    def env_for_unit(unit):
        seen.append(unit_name(unit))
        return {"FLOWYML_STACK_CONFIG": '{"stack": 1}', "FLOWYML_STEP_NAMES": ",".join(s.name for s in unit_steps(unit))}

    spec = compile_yaml(multi_group, tmp_path, units=[evaluate, train], env_for_unit=env_for_unit,
                        base_env={"MY_FLAG": "1"})
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"train", "evaluate"}
    assert "dependentTasks" not in tasks["train"]  # prep is done: nothing waits for it
    assert tasks["evaluate"]["dependentTasks"] == ["train"]
    assert seen == ["train", "evaluate"]  # the pipeline's order, not the caller's
    env = env_of(spec, "evaluate")
    assert env == {"MY_FLAG": "1", "FLOWYML_STACK_CONFIG": '{"stack": 1}', "FLOWYML_STEP_NAMES": "evaluate",
                   "PYTHONUNBUFFERED": "1"}
    # nothing to submit is a plan too; a unit of another pipeline is an error
    assert plan(multi_group, units=[]) == []
    assert plan(multi_group, units=[], single_job=True) == []
    with pytest.raises(FlowymlError, match="has no execution unit\\(s\\) only"):
        plan(multi_group, units=[Pipeline("other", steps=[step(lambda: 1, name="only")]).execution_units()[0]])


def test_job_ids_start_with_a_letter_and_keep_the_run_id():
    assert job_id("2024 forecast", "0a1b2c3d4e5f6a7b") == "p-2024-forecast-0a1b2c3d4e5f6a7b"
    assert job_id("Train Model", "abc") == "train-model-abc"
    long = job_id("x" * 300, "0a1b2c3d4e5f6a7b")
    assert RESOURCE_ID.match(long) and len(long) == 128 and long.endswith("-0a1b2c3d4e5f6a7b")
    # two runs of one long-named pipeline never collide
    assert job_id("y" * 300, "run1") != job_id("y" * 300, "run2")
    # run ids that had to change keep apart too (case, characters, length)
    assert job_id("p", "Run_A") != job_id("p", "run-a")
    assert job_id("p", "r" * 200 + "1") != job_id("p", "r" * 200 + "2")
    for name, run in [("", "x"), ("---", "1"), ("ÄÖ", "Z" * 300), ("9", "!!")]:
        assert RESOURCE_ID.match(job_id(name, run)), (name, run)


def test_display_names_and_task_keys_are_valid():
    assert display_name("2024 forecast", "-abc") == "2024 forecast-abc"
    long = display_name("x" * 300, "-0a1b2c3d4e5f6a7b")
    assert len(long) == 128 and long.endswith("-0a1b2c3d4e5f6a7b")
    assert resource_id("3rd step", prefix="u") == "u-3rd-step"
    assert resource_id("___", prefix="u") == "u"

    @step(outputs=["a"], name="1")
    def one():
        return 1

    @step(inputs=["a"], name="Étape finale " + "z" * 200)
    def last(a):
        return a

    plans = plan(Pipeline("k", steps=[one, last]))
    assert all(RESOURCE_ID.match(p.key) for p in plans), [p.key for p in plans]
    assert all(len(p.display_name) <= 128 for p in plans)


def test_kfp_names():
    assert kfp_name("My_Pipeline v2!") == "my-pipeline-v2"
    assert kfp_name("-x-") == "x"
    assert len(kfp_name("a" * 300)) == 128
