"""The Jobs a run creates: names, labels, scheduling, resources, environment, ownership."""

from __future__ import annotations

import json
import re

from flowyml_core.resources import ResourceConfig
from flowyml_kubernetes.config import KubernetesConfig
from flowyml_kubernetes.manifests import (
    JobSettings, dns_name, k8s_resources, label_value, orchestrator_job, orchestrator_name, unit_job, unit_job_name,
)
from flowyml_kubernetes.orchestrate import PLAN_ENV

from .conftest import TEST_IMAGE

DNS = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CONFIG = KubernetesConfig(
    namespace="ml", service_account="flowyml-runner", image_pull_secrets=["regcred"], image_pull_policy="Always",
    node_selector={"pool": "cpu"}, tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    labels={"team": "ml"}, annotations={"owner": "ml-platform"}, env_vars={"MODE": "prod"}, backoff_limit=1,
    ttl_seconds_after_finished=3600, active_deadline_seconds=7200, orchestrator_api_server=None)


def test_names_are_dns_labels_and_distinct():
    for text in ["Train Model", "2024 forecast", "x" * 200, "a--b", "UPPER_case.run"]:
        assert DNS.match(dns_name(text)), text
    assert dns_name("prep") == "prep"
    assert dns_name("Prep") != dns_name("prep")
    long_run = "r" * 100
    assert len(orchestrator_name(long_run)) <= 63 and DNS.match(orchestrator_name(long_run))
    names = {unit_job_name("0123456789abcdef", unit) for unit in ["train", "Train", "train model", "t" * 80]}
    assert len(names) == 4 and all(DNS.match(n) for n in names)
    assert re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", label_value("my run / 2024 " + "z" * 80))


def test_resources_become_requests_and_limits():
    assert k8s_resources(None) == {}
    assert k8s_resources(ResourceConfig(cpu="500m", memory="2Gi", gpu_count=2, disk_size="10Gi")) == {
        "requests": {"cpu": "500m", "memory": "2Gi", "ephemeral-storage": "10Gi"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "2"}}
    assert k8s_resources(ResourceConfig(gpu="amd.com/gpu")) == {"limits": {"amd.com/gpu": "1"}}


def test_orchestrator_job_spec():
    settings = JobSettings.from_config(CONFIG, TEST_IMAGE)
    job = orchestrator_job(settings, run_id="Run 1", pipeline="My Pipeline", env={"FLOWYML_RUN_ID": "Run 1"})
    meta, spec = job["metadata"], job["spec"]
    assert (job["apiVersion"], job["kind"], meta["namespace"]) == ("batch/v1", "Job", "ml")
    assert DNS.match(meta["name"]) and meta["name"].startswith("flowyml-run-1")
    assert meta["labels"]["flowyml.io/role"] == "orchestrator" and meta["labels"]["team"] == "ml"
    assert meta["annotations"] == {"owner": "ml-platform", "flowyml.io/run-id": "Run 1"}
    assert "ownerReferences" not in meta
    assert spec["backoffLimit"] == 0, "a second walk would start units twice"
    assert spec["ttlSecondsAfterFinished"] == 3600 and spec["activeDeadlineSeconds"] == 7200
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == meta["labels"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "flowyml-runner"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}] and pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "flowyml_kubernetes.orchestrate"]
    assert container["image"] == TEST_IMAGE and container["imagePullPolicy"] == "Always"
    assert {"name": "MODE", "value": "prod"} in container["env"]


def test_unit_job_spec():
    settings = JobSettings.from_config(CONFIG, TEST_IMAGE)
    job = unit_job(settings, run_id="r1", pipeline="p", unit="train", steps=["fit", "score"],
                   env={"FLOWYML_STEP_NAMES": "fit,score", "MODE": "unit"},
                   resources=ResourceConfig(cpu="2", memory="4Gi"), owner={"name": "flowyml-r1", "uid": "u-1"})
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"]["flowyml.io/unit"] == "train" and meta["labels"]["flowyml.io/role"] == "unit"
    assert meta["labels"]["flowyml.io/run-id"] == "r1"
    assert meta["annotations"]["flowyml.io/steps"] == "fit,score"
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "flowyml-r1", "uid": "u-1",
                                        "controller": False, "blockOwnerDeletion": True}]
    assert spec["backoffLimit"] == 1
    assert "ttlSecondsAfterFinished" not in spec, "units go with their orchestrator, so their logs live as long"
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["flowyml", "step-runner"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODE"] == "unit", "the unit's variables win over env_vars"


def test_created_jobs_carry_the_seed_environment_and_the_plan(k8s_project):
    result = k8s_project.pipeline().run(stack="k8s", context={"factor": 2})
    assert result.success
    orchestrator = next(c.body for c in k8s_project.fake.calls_to("POST", r"/jobs$")
                        if c.body["metadata"]["labels"]["flowyml.io/role"] == "orchestrator")
    env = {e["name"]: e["value"] for e in orchestrator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FLOWYML_RUN_ID"] == result.run_id
    assert env["FLOWYML_PIPELINE_MODULE"] == "k8s_pipeline:pipeline"
    assert json.loads(env["FLOWYML_CONTEXT"])["factor"] == 2
    assert env["FLOWYML_K8S_API_SERVER"] == k8s_project.fake.url
    assert "FLOWYML_STEP_NAMES" not in env
    plan = json.loads(env[PLAN_ENV])
    assert plan["units"]["left"] == {"steps": ["left"], "resources": {
        "cpu": "500m", "memory": "256Mi", "gpu": None, "gpu_count": 0, "disk_size": None, "machine_type": None}}
    assert plan["units"]["prep"]["steps"] == ["load", "clean"]
    left = next(j for j in k8s_project.fake.job_objects("flowyml.io/unit=left"))
    container = left["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}
    unit_env = {e["name"]: e["value"] for e in container["env"]}
    assert unit_env["FLOWYML_STEP_NAMES"] == "left" and unit_env["FLOWYML_EXECUTION_GROUP"] == "left"
    assert unit_env["FLOWYML_STACK_CONFIG"] == env["FLOWYML_STACK_CONFIG"]
    assert PLAN_ENV not in unit_env and "FLOWYML_K8S_API_SERVER" not in unit_env
