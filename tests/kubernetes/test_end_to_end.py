"""Submit → the orchestrator pod walks the DAG through the API → unit Jobs run the steps → results.

Everything goes through the real ``kubernetes`` client: the client creates the
orchestrator Job on the fake API server, which runs its container (``python -m
flowyml_kubernetes.orchestrate``) as a process; that process creates one Job per
unit through the same API, and the fake runs those (``flowyml step-runner``).
"""

from __future__ import annotations

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
