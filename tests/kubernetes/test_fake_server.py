"""The fake API server behaves like the real one where the orchestrator relies on it.

Through the real ``kubernetes`` client: Status errors, label selectors, the
Job controller (backoff, conditions), logs, and deletion with and without
propagation (batch/v1 Jobs orphan their pods unless told otherwise).
"""

from __future__ import annotations

import sys
import time

import pytest

PY = sys.executable


def _api(fake):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = fake.url
    api = client.ApiClient(configuration)
    return client.BatchV1Api(api), client.CoreV1Api(api)


def _job(name, code, *, labels=None, backoff=0, owner=None):
    meta = {"name": name, "labels": labels or {"app": "t"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": owner[0], "uid": owner[1]}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"backoffLimit": backoff, "template": {
        "metadata": {"labels": labels or {"app": "t"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "img", "command": [PY, "-c", code],
                                                          "env": [{"name": "WHO", "value": name}]}]}}}}


def _until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _conditions(batch, name):
    return {c.type for c in batch.read_namespaced_job(name, "default").status.conditions or []}


def test_errors_are_status_objects(fake_kubernetes):
    from kubernetes.client.exceptions import ApiException

    batch, core = _api(fake_kubernetes)
    with pytest.raises(ApiException) as missing:
        batch.read_namespaced_job("nope", "default")
    assert missing.value.status == 404 and '"reason": "NotFound"' in missing.value.body
    batch.create_namespaced_job("default", _job("dup", "pass"))
    with pytest.raises(ApiException) as duplicate:
        batch.create_namespaced_job("default", _job("dup", "pass"))
    assert duplicate.value.status == 409
    with pytest.raises(ApiException) as invalid:
        batch.create_namespaced_job("default", _job("Bad_Name", "pass"))
    assert invalid.value.status == 422
    with pytest.raises(ApiException) as no_namespace:
        batch.create_namespaced_job("ml", _job("x", "pass"))
    assert no_namespace.value.status == 404


def test_job_controller_logs_and_selectors(fake_kubernetes):
    batch, core = _api(fake_kubernetes)
    batch.create_namespaced_job("default", _job("ok", "import os; print('hi', os.environ['WHO'])", labels={"k": "a"}))
    batch.create_namespaced_job("default", _job("bad", "import sys; print('no'); sys.exit(2)", labels={"k": "b"},
                                                backoff=1))
    _until(lambda: _conditions(batch, "ok") and _conditions(batch, "bad"))
    assert _conditions(batch, "ok") == {"Complete"} and _conditions(batch, "bad") == {"Failed"}
    bad = batch.read_namespaced_job("bad", "default")
    assert bad.status.failed == 2 and bad.status.conditions[0].reason == "BackoffLimitExceeded"
    assert [j.metadata.name for j in batch.list_namespaced_job("default", label_selector="k=a").items] == ["ok"]
    [pod] = core.list_namespaced_pod("default", label_selector="job-name=ok").items
    assert pod.status.phase == "Succeeded" and pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert core.read_namespaced_pod_log(pod.metadata.name, "default") == "hi ok\n"
    stamped = core.read_namespaced_pod_log(pod.metadata.name, "default", timestamps=True)
    assert stamped.endswith("Z hi ok\n") and stamped[:4].isdigit()
    assert len(core.list_namespaced_pod("default", label_selector="job-name=bad").items) == 2


def test_deleting_with_propagation_kills_pods_and_owned_jobs(fake_kubernetes):
    batch, _ = _api(fake_kubernetes)
    sleeper = "import time; time.sleep(60)"
    parent = batch.create_namespaced_job("default", _job("parent", sleeper))
    batch.create_namespaced_job("default", _job("child", sleeper, owner=("parent", parent.metadata.uid)))
    _until(lambda: len(fake_kubernetes.running_processes()) == 2)
    batch.delete_namespaced_job("parent", "default", propagation_policy="Background")
    _until(lambda: not fake_kubernetes.running_processes())
    assert batch.list_namespaced_job("default").items == []


def test_deleting_without_propagation_orphans_the_pods(fake_kubernetes):
    batch, core = _api(fake_kubernetes)
    batch.create_namespaced_job("default", _job("lonely", "import time; time.sleep(60)"))
    _until(lambda: len(fake_kubernetes.running_processes()) == 1)
    batch.delete_namespaced_job("lonely", "default")
    time.sleep(0.3)
    assert len(fake_kubernetes.running_processes()) == 1, "batch/v1 orphans a Job's pods by default"
    assert core.list_namespaced_pod("default", label_selector="job-name=lonely").items[0].metadata.owner_references is None


def test_a_job_whose_owner_is_gone_is_collected(fake_kubernetes):
    batch, _ = _api(fake_kubernetes)
    batch.create_namespaced_job("default", _job("stray", "import time; time.sleep(60)", owner=("gone", "no-such-uid")))
    time.sleep(0.3)
    assert batch.list_namespaced_job("default").items == [] and not fake_kubernetes.executions


def test_suspending_ends_the_running_pod(fake_kubernetes):
    batch, _ = _api(fake_kubernetes)
    batch.create_namespaced_job("default", _job("pause", "import time; time.sleep(60)"))
    _until(lambda: len(fake_kubernetes.running_processes()) == 1)
    batch.patch_namespaced_job("pause", "default", {"spec": {"suspend": True}})
    _until(lambda: _conditions(batch, "pause") == {"Suspended"})
    assert not fake_kubernetes.running_processes()


def test_a_pod_whose_image_cannot_be_pulled_stays_pending_and_says_why(fake_kubernetes):
    from flowyml_kubernetes.clients import Api
    from flowyml_kubernetes.logs import job_stuck, last_lines

    batch, core = _api(fake_kubernetes)
    fake_kubernetes.image_map = {}
    batch.create_namespaced_job("default", _job("nopull", "pass"))
    api = Api(batch, core, fake_kubernetes.url)
    _until(lambda: job_stuck(api, "default", "nopull") is not None)
    assert job_stuck(api, "default", "nopull") == 'ImagePullBackOff: Back-off pulling image "img"'
    assert last_lines(api, "default", "nopull", 3) == ['ImagePullBackOff: Back-off pulling image "img"']
    time.sleep(0.2)
    job = batch.read_namespaced_job("nopull", "default")
    assert job.status.conditions is None and job.status.active == 1, "a Job does not fail on a pull error"
    assert not fake_kubernetes.executions
