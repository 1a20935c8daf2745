"""The docker executor against a real dockerd: failures, resources, images, secrets, caching.

Each test's stack builds its image from a directory holding dockerpipes.py
(``FROM`` the busybox image, with this interpreter mounted: see
tests/servers/docker_engine.py) and keeps its containers (``remove = false``)
so that the test can inspect them.
"""

from __future__ import annotations

import json

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.results import ExecutionStatus
from tests.docker.conftest import containers

pytestmark = pytest.mark.docker


def test_a_run_builds_the_project_image_and_labels_each_unit_container(docker_project, pipes, docker_engine):
    result = docker_project.run(pipes.chain)
    assert result.status is ExecutionStatus.COMPLETED, result.steps
    assert result.outputs["total"] == 3
    meta = result.submission.metadata
    assert meta["units"] == ["source", "total"] and meta["image"].startswith("flowyml/")
    client = docker_engine.client()
    units = containers(client, run_id=result.run_id, role="unit")
    assert sorted(c.labels["flowyml.unit"] for c in units) == ["source", "total"]
    assert {c.labels["flowyml.pipeline"] for c in units} == {"chain"}
    assert all(c.attrs["State"]["ExitCode"] == 0 for c in units)
    handle = containers(client, run_id=result.run_id, role="run")
    assert len(handle) == 1 and handle[0].status == "created"  # never started
    assert json.loads(handle[0].labels["flowyml.units"]) == {"source": ["source"], "total": ["total"]}


def test_second_run_is_fully_cached_and_starts_no_container(docker_project, pipes, docker_engine):
    client = docker_engine.client()
    first = docker_project.run(pipes.chain, size=5)
    assert first.status is ExecutionStatus.COMPLETED
    before = len(client.containers.list(all=True, sparse=True))
    second = docker_project.run(pipes.chain, size=5)
    assert second.status is ExecutionStatus.CACHED
    assert second.submission is None
    assert all(step.cached for step in second.steps.values())
    assert second.outputs["total"] == 10
    assert containers(client, run_id=second.run_id) == []
    assert len(client.containers.list(all=True, sparse=True)) == before


def test_out_of_memory_is_a_failed_step(docker_project, pipes):
    result = docker_project.run(pipes.oom)
    step = result.steps["hog"]
    assert not step.success
    assert step.error == "killed: out of memory (limit 64m)"
    assert result.status is ExecutionStatus.FAILED


def test_non_zero_exit_is_a_failed_step_with_the_code_and_the_log_tail(docker_project, pipes):
    result = docker_project.run(pipes.crashing)
    error = result.steps["crash"].error
    assert error.startswith("exit code 7: "), error
    assert "about to exit with 7" in error


def test_resources_become_container_limits_and_gpus_device_requests(docker_project, pipes, docker_engine):
    result = docker_project.run(pipes.gpu)
    error = result.steps["gpu_step"].error
    assert "asks for GPUs, and the docker engine has no GPU runtime" in error, error
    (container,) = containers(docker_engine.client(), run_id=result.run_id, role="unit")
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 128 * 2**20
    (request,) = host["DeviceRequests"]
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]


def test_a_bad_resource_unit_names_the_step_and_the_field_before_anything_starts(docker_project, pipes, docker_engine):
    before = len(docker_engine.client().containers.list(all=True, sparse=True))
    with pytest.raises(FlowymlError) as caught:
        docker_project.run(pipes.bad_resources)
    message = str(caught.value)
    assert message.startswith("step 'bad_memory': resources field 'memory': invalid memory '4GB'"), message
    assert "\n" not in message
    assert len(docker_engine.client().containers.list(all=True, sparse=True)) == before


def test_unreachable_engine_names_docker_host_and_the_fix(docker_project, pipes, tmp_path):
    stack = docker_project.stack(docker_host=f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(FlowymlError) as caught:
        docker_project.run(pipes.chain, stack)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the docker engine at unix://{tmp_path}/no-engine.sock (from docker_host")
    assert "set docker_host in the executor options" in message and "\n" not in message


def test_an_image_without_flowyml_names_the_image_and_the_missing_command(docker_project, pipes, busybox_image):
    stack = docker_project.stack(image=busybox_image, command=["flowyml", "step-runner"], build_context=".",
                                 base_image=None)
    result = docker_project.run(pipes.chain, stack)
    error = result.steps["source"].error
    assert error.startswith(f"image {busybox_image} cannot run 'flowyml step-runner': the command is not in the "
                            "image"), error
    assert result.steps["total"].skipped


def test_an_image_without_the_pipeline_module_names_the_image(docker_project, pipes, busybox_image):
    stack = docker_project.stack(image=busybox_image, build_context=".", base_image=None)
    result = docker_project.run(pipes.chain, stack)
    error = result.steps["source"].error
    assert error.startswith(f"image {busybox_image} lacks the pipeline's module: "), error
    assert "cannot load pipeline dockerpipes:chain" in error


def test_secrets_reach_the_units_but_never_the_container_spec(docker_project, pipes, docker_engine, monkeypatch):
    import hashlib

    token = "s3cr3t-" + "x" * 24
    monkeypatch.setenv("FLOWYML_TEST_TOKEN", token)
    signed = {"signing_key": "${env:FLOWYML_TEST_TOKEN}"}
    stack = docker_project.stack(stores={
        "artifact_store": {**docker_project.stores["artifact_store"], **signed},
        "cache_store": {**docker_project.stores["cache_store"], **signed},
    })
    result = docker_project.run(pipes.secretive, stack)
    assert result.status is ExecutionStatus.COMPLETED, {k: v.error for k, v in result.steps.items()}
    # The units read the secret, and signed a pickle the client (and the next unit) verified with it.
    assert result.outputs["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert result.outputs["numbers"] == {1, 2, 3} and result.outputs["count"] == 3
    client = docker_engine.client()
    found = containers(client, run_id=result.run_id)
    assert len(found) == 3  # two units and the run's handle
    for container in found:
        spec = json.dumps(client.api.inspect_container(container.id))
        assert token not in spec
        assert "${env:FLOWYML_TEST_TOKEN}" in spec  # the reference travels, its value does not
    unit = next(c for c in found if c.labels["flowyml.role"] == "unit")
    assert "FLOWYML_SECRETS_FILE=/run/flowyml/secrets.json" in unit.attrs["Config"]["Env"]
    import docker

    with pytest.raises(docker.errors.NotFound):  # the step runner deleted it once read
        unit.get_archive("/run/flowyml/secrets.json")


def test_independent_units_run_in_parallel(docker_project, pipes, docker_engine):
    stack = docker_project.stack(max_parallel=8)
    result = docker_project.run(pipes.parallel, stack, pause=3.0)
    assert result.status is ExecutionStatus.COMPLETED
    units = containers(docker_engine.client(), run_id=result.run_id, role="unit")
    assert len(units) == 8
    spans = [(c.attrs["State"]["StartedAt"], c.attrs["State"]["FinishedAt"]) for c in units]
    latest_start = max(start for start, _ in spans)
    earliest_end = min(end for _, end in spans)
    assert latest_start < earliest_end, "some unit started only after another had finished: not in parallel"


def test_on_a_remote_engine_a_built_image_is_pushed_to_the_registry(docker_project, docker_engine, docker_registry):
    """This machine has no remote engine: the executor is asked for its image as it would be for one."""
    stack = docker_project.stack(registry=docker_registry.address, image_name="flowyml-test/pushed")
    client = docker_engine.client()
    image, built = stack.executor._image(client, local_engine=False)
    repository, _, tag = image.rpartition(":")
    assert repository == f"{docker_registry.address}/flowyml-test/pushed"
    assert docker_registry.tags("flowyml-test/pushed") == [tag]
    again, _ = stack.executor._image(client, local_engine=False)
    assert again == image  # same content, same tag: reused from the registry
    assert docker_registry.tags("flowyml-test/pushed") == [tag]
