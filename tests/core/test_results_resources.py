"""Results, statuses, submissions and resource/container settings."""

from __future__ import annotations

import threading
import time

import attrs
import pytest

from flowyml_core import DockerConfig, ExecutionResult, ExecutionStatus, ResourceConfig, RunResult, SubmissionResult
from flowyml_core.resources import parse_cpu, parse_memory

S = ExecutionStatus


@pytest.mark.parametrize(
    "status, finished, successful, failed",
    [
        (S.INITIALIZING, False, False, False),
        (S.PROVISIONING, False, False, False),
        (S.RUNNING, False, False, False),
        (S.STOPPING, False, False, False),
        (S.CANCELLING, False, False, False),
        (S.COMPLETED, True, True, False),
        (S.CACHED, True, True, False),
        (S.FAILED, True, False, True),
        (S.STOPPED, True, False, True),
        (S.CANCELLED, True, False, True),
    ],
)
def test_status_predicates(status, finished, successful, failed):
    assert (status.is_finished, status.is_successful, status.is_failed) == (finished, successful, failed)


def test_every_status_is_classified():
    assert {s.name for s in S} == {"INITIALIZING", "PROVISIONING", "RUNNING", "COMPLETED", "CACHED", "FAILED",
                                   "STOPPING", "STOPPED", "CANCELLING", "CANCELLED"}
    for status in S:
        # Finished means exactly one of successful/failed; unfinished means neither.
        assert status.is_finished == (status.is_successful or status.is_failed)
        assert not (status.is_successful and status.is_failed)


def test_execution_result_fields_and_status():
    r = ExecutionResult("s", True, output=1, duration_seconds=0.5, retries=2)
    assert attrs.has(ExecutionResult)
    assert (r.step_name, r.success, r.output, r.error, r.cached, r.skipped, r.artifact_uri, r.retries) == (
        "s", True, 1, None, False, False, None, 2)
    assert r.status is S.COMPLETED
    assert ExecutionResult("s", True, cached=True).status is S.CACHED
    assert ExecutionResult("s", False, error="boom").status is S.FAILED


def test_run_result_success_and_failed_steps():
    ok = ExecutionResult("a", True)
    bad = ExecutionResult("b", False, error="x")
    assert RunResult("r", S.COMPLETED, {"a": ok}).success
    run = RunResult("r", S.COMPLETED, {"a": ok, "b": bad})
    assert not run.success and run.failed_steps == [bad]
    assert not RunResult("r", S.FAILED).success


# -- SubmissionResult.wait ----------------------------------------------------------
def test_wait_passes_the_timeout_and_keeps_the_final_status():
    calls = []

    def poll(timeout):
        calls.append(timeout)
        return S.COMPLETED

    sub = SubmissionResult("job-1", poll, {"url": "x"})
    assert sub.job_id == "job-1" and sub.metadata == {"url": "x"}
    assert sub.wait(5) is S.COMPLETED
    assert sub.wait() is S.COMPLETED
    assert len(calls) == 1 and 4 < calls[0] <= 5
    assert "job-1" in repr(sub)


def test_wait_timeout_raises_and_can_be_retried():
    release = threading.Event()

    def poll(timeout):
        if not release.wait(timeout):
            raise TimeoutError("still running")
        return S.FAILED

    sub = SubmissionResult("job-2", poll)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sub.wait(0.2)
    assert 0.15 < time.monotonic() - started < 2
    release.set()
    assert sub.wait(1) is S.FAILED


def test_a_second_waiter_honours_its_own_timeout():
    release = threading.Event()

    def poll(timeout):
        release.wait(timeout)
        return S.COMPLETED if release.is_set() else S.RUNNING

    sub = SubmissionResult("job-3", poll)
    first = threading.Thread(target=sub.wait)  # waits without a timeout
    first.start()
    time.sleep(0.1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="job-3"):
            sub.wait(0.3)
        assert time.monotonic() - started < 2, "the second waiter was blocked by the first"
    finally:
        release.set()
        first.join(5)
    assert sub.wait(1) is S.COMPLETED


def test_unfinished_status_is_not_remembered():
    answers = iter([S.RUNNING, S.COMPLETED])
    sub = SubmissionResult("job-4", lambda timeout: next(answers))
    assert sub.wait(0) is S.RUNNING
    assert sub.wait(0) is S.COMPLETED
    assert sub.wait(0) is S.COMPLETED


def test_wait_without_a_waiter_returns_none():
    assert SubmissionResult("job-5").wait(0) is None


# -- resources -----------------------------------------------------------------------
@pytest.mark.parametrize("cpu, cores", [("500m", 0.5), ("2", 2.0), ("0.5", 0.5), (4, 4.0), (1.5, 1.5)])
def test_cpu_units(cpu, cores):
    assert ResourceConfig(cpu=cpu).cpu_cores == cores
    assert parse_cpu(cpu) == cores


@pytest.mark.parametrize("memory, size", [("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("100", 100),
                                          (2048, 2048), ("1.5Gi", int(1.5 * 2**30))])
def test_memory_units(memory, size):
    assert ResourceConfig(memory=memory).memory_bytes == size
    assert parse_memory(memory) == size


@pytest.mark.parametrize("field, value", [("memory", "4GB"), ("memory", "4 gigs"), ("memory", "-1Gi"),
                                          ("disk_size", "10GB"), ("cpu", "2 cores"), ("cpu", "500M"), ("cpu", "-1")])
def test_bad_units_say_what_is_accepted(field, value):
    with pytest.raises(ValueError) as info:
        ResourceConfig(**{field: value})
    message = str(info.value)
    assert repr(value) in message
    if field == "cpu":
        assert '"500m"' in message and '"2"' in message
    else:
        assert '"4Gi"' in message and '"512Mi"' in message


def test_resource_config_is_a_frozen_attrs_class_with_all_fields():
    r = ResourceConfig(cpu="1", memory="1Gi", gpu="nvidia-tesla-t4", gpu_count=2, disk_size="100Gi",
                       machine_type="n1-standard-4")
    assert attrs.has(ResourceConfig)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        r.cpu = "2"
    with pytest.raises(ValueError):
        ResourceConfig(gpu_count=-1)


def test_merge_takes_the_maximum_of_each_field():
    a = ResourceConfig(cpu="500m", memory="8Gi", gpu_count=1, machine_type="n1")
    b = ResourceConfig(cpu="2", memory="512Mi", disk_size="50Gi", gpu="t4", gpu_count=0)
    m = a.merge(b)
    assert (m.cpu, m.memory, m.disk_size, m.gpu, m.gpu_count, m.machine_type) == ("2", "8Gi", "50Gi", "t4", 1, "n1")
    assert a.merge(None) is a
    assert ResourceConfig(cpu="1500m").merge(ResourceConfig(cpu="1")).cpu == "1500m"


def test_docker_config_fields():
    d = DockerConfig(image="gcr.io/p/img:1", requirements=["numpy", "pandas"], env_vars={"A": "1"},
                     build_args={"X": "y"}, platform="linux/arm64")
    assert attrs.has(DockerConfig)
    assert d.requirements == ("numpy", "pandas") and d.env_vars == {"A": "1"} and d.build_args == {"X": "y"}
    assert (d.dockerfile, d.build_context, d.platform) == (None, ".", "linux/arm64")
    assert DockerConfig().base_image.startswith("python:")


def test_docker_requirements_given_as_one_string_is_one_requirement():
    assert DockerConfig(requirements="numpy>=1.26").requirements == ("numpy>=1.26",)
    assert DockerConfig(command="python", args=["-m", "x"]).command == ("python",)
