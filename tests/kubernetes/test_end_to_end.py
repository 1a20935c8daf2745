"""Submit → the orchestrator pod walks the DAG through the API → unit Jobs run the steps → results.

Everything goes through the real ``kubernetes`` client: the client creates the
orchestrator Job on the fake API server, which runs its container (``python -m
flowyml_kubernetes.orchestrate``) as a process; that process creates one Job per
unit through the same API, and the fake runs those (``flowyml step-runner``).
"""

from __future__ import annotations

import time

from flowyml_core.results import ExecutionStatus, SubmissionResult

from .conftest import TEST_IMAGE

EXPECTED = {"raw": [3, 6, 9, 12, 15], "clean": [6, 9, 12, 15], "total": 42, "shifted": [6, 9, 12, 15],
            "report": {"total": 42, "shifted": [6, 9, 12, 15]}}


def _run(project, **params):
    pipeline = project.pipeline()
    return pipeline.run(stack="k8s", context=params or None)


def test_run_walks_the_dag_in_the_cluster_and_returns_local_results(k8s_project):
    result = _run(k8s_project)
    assert result.status is ExecutionStatus.COMPLETED, {n: r.error for n, r in result.steps.items()}
    assert {name: result.outputs[name] for name in result.outputs} == EXPECTED
    fake = k8s_project.fake
    jobs = fake.job_objects()
    roles = sorted(j["metadata"]["labels"]["flowyml.io/role"] for j in jobs)
    assert roles == ["orchestrator"] + ["unit"] * 4
    # Only the orchestrator Job was created by this process: the unit Jobs came from its pod.
    orchestrator = next(j for j in jobs if j["metadata"]["labels"]["flowyml.io/role"] == "orchestrator")
    units = [j for j in jobs if j is not orchestrator]
    assert {j["metadata"]["annotations"]["flowyml.io/unit"] for j in units} == {"prep", "left", "right", "join"}
    for unit in units:
        owner = unit["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Job", orchestrator["metadata"]["name"], orchestrator["metadata"]["uid"])
        container = unit["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["flowyml", "step-runner"] and container["image"] == TEST_IMAGE
    assert [e.argv[:3] for e in fake.executions][0] == ["python", "-m", "flowyml_kubernetes.orchestrate"]
    assert result.submission is not None and isinstance(result.submission, SubmissionResult)
    assert sorted(result.submission.metadata["units"]) == ["join", "left", "prep", "right"]


def _created_jobs(fake):
    return fake.calls_to("POST", r"/apis/batch/v1/namespaces/[^/]+/jobs$")


def test_second_run_is_fully_cached_and_creates_nothing(k8s_project):
    first = _run(k8s_project)
    assert first.status is ExecutionStatus.COMPLETED
    fake = k8s_project.fake
    before = len(_created_jobs(fake))
    second = _run(k8s_project)
    assert second.status is ExecutionStatus.CACHED
    assert all(step.cached for step in second.steps.values())
    assert len(_created_jobs(fake)) == before, "a fully cached run created Jobs"
    assert second.outputs["report"] == EXPECTED["report"]


def test_changed_parameter_reruns_only_the_units_it_affects(k8s_project):
    assert _run(k8s_project).status is ExecutionStatus.COMPLETED
    fake = k8s_project.fake
    before = len(_created_jobs(fake))
    result = _run(k8s_project, offset=10)
    assert result.status is ExecutionStatus.COMPLETED
    assert sorted(result.submission.metadata["units"]) == ["join", "right"]
    created = [c.body for c in _created_jobs(fake)[before:]]
    assert sorted(c["metadata"]["labels"]["flowyml.io/role"] for c in created) == ["orchestrator", "unit", "unit"]
    assert sorted(c["metadata"]["annotations"].get("flowyml.io/unit", "") for c in created) == ["", "join", "right"]
    assert {n for n, s in result.steps.items() if s.cached} == {"load", "clean", "left"}
    assert result.outputs["shifted"] == [16, 19, 22, 25]


def test_failing_step_fails_the_run_and_skips_only_what_depends_on_it(k8s_project):
    result = _run(k8s_project, explode=True)
    assert result.status is ExecutionStatus.FAILED
    assert not result.steps["left"].success and "left exploded on purpose" in result.steps["left"].error
    assert result.steps["right"].success and not result.steps["right"].skipped  # independent: it still ran
    assert result.steps["join"].skipped and "left" in result.steps["join"].error
    jobs = {j["metadata"]["annotations"].get("flowyml.io/unit", "orchestrator"): j for j in k8s_project.fake.job_objects()}
    assert "join" not in jobs, "a unit below the failure was started"
    conditions = {c["type"] for c in jobs["orchestrator"]["status"]["conditions"]}
    assert conditions == {"Failed"}, "the orchestrator must exit non-zero when a step failed"
    assert {c["type"] for c in jobs["left"]["status"]["conditions"]} == {"Failed"}


def _sign_artifacts_with_env_key(project, **executor_options):
    project.write_stacks(**executor_options)
    text = project.path.joinpath("stacks.toml").read_text()
    text = text.replace("/.stores/artifacts\" }", "/.stores/artifacts\", signing_key = \"${env:FLOWYML_TEST_SIGNING_KEY}\" }")
    project.path.joinpath("stacks.toml").write_text(text)


def test_secrets_stay_references_in_every_job_spec(k8s_project, monkeypatch):
    """A store's ${env:…} secret travels as the reference; pods get the value from a Secret (envFrom)."""
    secret = "s3cr3t-signing-key-value-0123456789"
    monkeypatch.setenv("FLOWYML_TEST_SIGNING_KEY", secret)
    _sign_artifacts_with_env_key(k8s_project, env_from_secrets=["flowyml-keys"])
    k8s_project.fake.add_secret("default", "flowyml-keys", {"FLOWYML_TEST_SIGNING_KEY": secret})
    result = _run(k8s_project)
    assert result.status is ExecutionStatus.COMPLETED, {n: r.error for n, r in result.steps.items()}
    specs = [c.body for c in k8s_project.fake.calls_to("POST", r"/jobs$")]
    assert len(specs) == 5
    import json

    for spec in specs:
        dumped = json.dumps(spec)
        assert secret not in dumped
        container = spec["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"secretRef": {"name": "flowyml-keys"}}]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert "${env:FLOWYML_TEST_SIGNING_KEY}" in env["FLOWYML_STACK_CONFIG"]


def test_a_missing_secret_fails_the_run_with_its_name(k8s_project, monkeypatch):
    monkeypatch.setenv("FLOWYML_TEST_SIGNING_KEY", "k")
    _sign_artifacts_with_env_key(k8s_project, env_from_secrets=["no-such-secret"])
    result = _run(k8s_project)
    assert result.status is ExecutionStatus.FAILED
    error = result.steps["load"].error
    assert "CreateContainerConfigError" in error and 'secret "no-such-secret" not found' in error, error
    k8s_project.fake.wait_idle(5)


def test_an_orchestrator_that_cannot_reach_the_api_fails_the_run_with_its_reason(k8s_project):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    k8s_project.write_stacks(orchestrator_api_server=closed)  # the pod's network or RBAC is wrong
    result = _run(k8s_project)
    assert result.status is ExecutionStatus.FAILED
    error = result.steps["load"].error
    assert error.startswith("the orchestrator of the run failed (BackoffLimitExceeded"), error
    assert f"cannot reach the Kubernetes API at {closed}" in error
    assert result.steps["left"].skipped
    assert [j["metadata"]["labels"]["flowyml.io/role"] for j in k8s_project.fake.job_objects()] == ["orchestrator"]


def test_waiting_client_sees_a_stop_from_elsewhere(k8s_project):
    """The submitting process waits; another stops the run: wait() returns STOPPED, nothing more ran."""
    import threading

    from flowyml_core.pipeline import run_on_stack
    from flowyml_kubernetes.orchestrator import KubernetesOrchestrator

    fake = k8s_project.fake
    stack = k8s_project.resolve()
    submitted = run_on_stack(k8s_project.pipeline(), stack, context={"sleep_seconds": 60}, wait=False).submission
    stopper = KubernetesOrchestrator(stack.executor.config)

    def stop_when_right_runs():
        deadline = time.monotonic() + 30
        while not any("-right-" in e.task_name for e in fake.running_processes()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopper.stop_run(submitted.job_id, graceful=False)

    thread = threading.Thread(target=stop_when_right_runs)
    thread.start()
    status = submitted.wait(30)
    thread.join()
    assert status is ExecutionStatus.STOPPED
    result = submitted.result(status)
    assert result.status is ExecutionStatus.STOPPED
    assert result.steps["load"].success and not result.steps["clean"].skipped, "what ran before the stop is reported"
    assert result.steps["join"].skipped and not (result.steps["right"].success and not result.steps["right"].skipped)
    fake.wait_idle(10)
    assert fake.job_objects() == [], "graceful=False deletes every Job of the run"


def test_an_image_that_cannot_be_pulled_fails_the_run_instead_of_waiting_forever(k8s_project):
    k8s_project.fake.image_map = {}  # no image can be pulled: pods stay Pending, Jobs never end by themselves
    result = _run(k8s_project)
    assert result.status is ExecutionStatus.FAILED
    error = result.steps["load"].error
    assert "ImagePullBackOff" in error and "registry.example/flowyml/test:local" in error, error
    [orchestrator] = k8s_project.fake.job_objects()
    assert orchestrator["spec"]["suspend"] is True, "the stuck pod is ended"
    k8s_project.fake.wait_idle(5)

