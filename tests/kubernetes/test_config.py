"""Bad options and unreachable clusters say what is wrong, where, and how to fix it, in one line."""

from __future__ import annotations

import json
import socket

import pytest

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_kubernetes.config import KubernetesConfig
from flowyml_kubernetes.orchestrator import KubernetesOrchestrator

from .conftest import inline_table


def _write(project, **options):
    (project / "stacks.toml").write_text(
        f"[stacks.k]\nexecutor = {inline_table({'flavor': 'kubernetes', **options})}\n"
        "artifact_store = { flavor = \"local\", path = \".a\" }\n")


def _resolve(project):
    from flowyml_core.stacks import StackRegistry

    return StackRegistry.load(cwd=project).resolve("k")


def test_every_bad_option_is_named(project):
    _write(project, namespace="Bad_NS", poll_interval=0, max_parallel=0, api_server="ftp://x",
           labels={"bad key!": "v"}, image_pull_policy="Sometimes", tolerations=[{"key": "a", "colour": "red"}],
           backoff_limit=-1)
    with pytest.raises(ConfigError) as caught:
        _resolve(project)
    text = str(caught.value)
    for expected in ("option 'namespace': namespace 'Bad_NS' is not a Kubernetes name",
                     "option 'poll_interval': poll_interval must be > 0",
                     "option 'max_parallel': max_parallel must be >= 1",
                     "option 'api_server': api_server 'ftp://x' is not an http(s) URL",
                     "option 'labels': labels key 'bad key!' is not a Kubernetes label key",
                     "option 'image_pull_policy': image_pull_policy must be one of Always, IfNotPresent, Never",
                     "option 'tolerations': tolerations entry 0 has unknown key(s) colour",
                     "option 'backoff_limit': backoff_limit must be >= 0"):
        assert expected in text, text
    assert "stacks.toml" in text


def test_unknown_option_is_refused(project):
    _write(project, namespce="ml")
    with pytest.raises(ConfigError, match="namespce"):
        _resolve(project)


def test_token_is_a_secret_reference_that_is_masked(project, run_cli):
    _write(project, api_server="https://10.0.0.1:6443", token="${env:K8S_TOKEN}", image="img")
    shown = run_cli("stack", "show", "k", "--json", cwd=project, env={"K8S_TOKEN": "tok-9f8e7d6c5b4a"})
    assert shown.returncode == 0, shown.stderr
    assert "tok-9f8e7d6c5b4a" not in shown.stdout
    assert json.loads(shown.stdout)["components"]["executor"]["options"]["token"] != "tok-9f8e7d6c5b4a"


def test_secret_in_env_vars_is_refused(project, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "t0ps3cret")
    _write(project, image="img", env_vars={"TOKEN": "${env:API_TOKEN}"})
    with pytest.raises(ConfigError) as caught:
        _resolve(project)
    assert "env_vars.TOKEN" in str(caught.value) and "t0ps3cret" not in str(caught.value)


def test_validate_accepts_a_reachable_namespace(fake_kubernetes):
    KubernetesOrchestrator(KubernetesConfig(api_server=fake_kubernetes.url, image="img")).validate()


def test_validate_names_a_missing_namespace(fake_kubernetes):
    orchestrator = KubernetesOrchestrator(KubernetesConfig(api_server=fake_kubernetes.url, namespace="ml", image="img"))
    with pytest.raises(FlowymlError) as caught:
        orchestrator.validate()
    message = str(caught.value)
    assert "namespace 'ml' does not exist" in message and "kubectl create namespace ml" in message
    assert "\n" not in message


def test_validate_says_when_the_api_server_cannot_be_reached():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    orchestrator = KubernetesOrchestrator(KubernetesConfig(api_server=f"http://127.0.0.1:{port}", image="img"))
    with pytest.raises(FlowymlError) as caught:
        orchestrator.validate()
    assert f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in str(caught.value)


def test_validate_needs_an_image_or_a_registry(fake_kubernetes):
    with pytest.raises(FlowymlError, match="neither image .* nor registry"):
        KubernetesOrchestrator(KubernetesConfig(api_server=fake_kubernetes.url)).validate()


def test_a_missing_kubeconfig_is_one_clear_line(tmp_path):
    orchestrator = KubernetesOrchestrator(KubernetesConfig(kubeconfig=str(tmp_path / "nope.yaml"), context="prod"))
    with pytest.raises(FlowymlError) as caught:
        orchestrator.get_run_status("flowyml-abc")
    message = str(caught.value)
    assert f"cannot load the kubeconfig {tmp_path / 'nope.yaml'} (context 'prod')" in message
    assert "\n" not in message


def test_stack_validate_through_the_cli(project, run_cli, fake_kubernetes):
    _write(project, api_server=fake_kubernetes.url, namespace="missing", image="img")
    out = run_cli("stack", "validate", "k", cwd=project)
    assert out.returncode != 0
    assert "namespace 'missing' does not exist" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_a_reused_run_id_is_refused_before_anything_runs(k8s_project):
    from kubernetes import client

    from flowyml_core.pipeline import run_on_stack
    from flowyml_kubernetes.manifests import orchestrator_name

    configuration = client.Configuration()
    configuration.host = k8s_project.fake.url
    old = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": orchestrator_name("reused0001")},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "main", "image": "img", "command": ["python", "-c", "pass"]}]}}}}
    client.BatchV1Api(client.ApiClient(configuration)).create_namespaced_job("default", old)
    with pytest.raises(FlowymlError) as caught:
        run_on_stack(k8s_project.pipeline(), k8s_project.resolve(), run_id="reused0001")
    message = str(caught.value)
    assert "run id 'reused0001' was used before in namespace default (its Job flowyml-reused0001 exists)" in message
    assert "kubectl delete job -n default flowyml-reused0001" in message
    assert len(k8s_project.fake.calls_to("POST", r"/jobs$")) == 2, "nothing else was created"
