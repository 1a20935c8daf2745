"""Pytest fixtures and client helpers for the fake Vertex AI / Cloud Logging server.

Import the fixtures into a test module or conftest (``from
tests.servers.vertex_fixtures import fake_gcp, fake_gcp_factory``).  The
helpers build the *real* Google clients pointed at the fake, so tests exercise
the same REST code paths production code uses; heavy imports happen inside
the helpers because ``google.cloud.aiplatform`` alone costs seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest

from .fake_vertex import FakeGoogleCloud

TEST_PROJECT = "fake-project"
TEST_LOCATION = "us-central1"

PIPELINE_TERMINAL_STATES = frozenset(
    {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"})
JOB_TERMINAL_STATES = frozenset(
    {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"})


def default_base_env(tmp_path: Path) -> dict[str, str]:
    """The minimal env tasks get: a PATH that finds this interpreter and the
    usual tools, a private HOME, and nothing else from os.environ."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
    return {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}


@pytest.fixture
def fake_gcp(tmp_path: Path) -> Iterator[FakeGoogleCloud]:
    """A started FakeGoogleCloud running tasks in tmp_path; stopped afterwards."""
    fake = FakeGoogleCloud(workdir=tmp_path, base_env=default_base_env(tmp_path),
                           task_timeout=60.0)
    with fake:
        yield fake


def started_fakes(fake_class: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A factory of started fakes of ``fake_class`` (Vertex, SageMaker, Kubernetes), all stopped at teardown.

    ``workdir`` defaults to tmp_path, and ``base_env`` is merged over
    :func:`default_base_env`. Use it as a fixture body: ``yield from started_fakes(...)``.
    """
    started: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("workdir", tmp_path)
        options["base_env"] = {**default_base_env(tmp_path), **(options.get("base_env") or {})}
        fake = fake_class(**options).start()
        started.append(fake)
        return fake

    yield make
    for fake in reversed(started):
        fake.stop()


@pytest.fixture
def fake_gcp_factory(tmp_path: Path) -> Iterator[Callable[..., FakeGoogleCloud]]:
    """Build fakes with custom options (base_env, image_map, ...); see :func:`started_fakes`."""
    yield from started_fakes(FakeGoogleCloud, tmp_path)


# ------------------------------------------------------------------ clients


def aiplatform_client_options(fake: FakeGoogleCloud) -> dict[str, str]:
    """client_options for google.cloud.aiplatform_v1 clients (transport="rest")."""
    return {"api_endpoint": fake.url}


def anonymous_credentials() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def pipeline_service_client(fake: FakeGoogleCloud) -> Any:
    from google.cloud import aiplatform_v1

    return aiplatform_v1.PipelineServiceClient(
        transport="rest", client_options=aiplatform_client_options(fake),
        credentials=anonymous_credentials())


def job_service_client(fake: FakeGoogleCloud) -> Any:
    from google.cloud import aiplatform_v1

    return aiplatform_v1.JobServiceClient(
        transport="rest", client_options=aiplatform_client_options(fake),
        credentials=anonymous_credentials())


def logging_client(fake: FakeGoogleCloud, project: str = TEST_PROJECT) -> Any:
    """google.cloud.logging.Client over HTTP/JSON (the fake has no gRPC)."""
    from google.cloud import logging as cloud_logging

    return cloud_logging.Client(
        project=project, credentials=anonymous_credentials(),
        client_options={"api_endpoint": fake.url}, _use_grpc=False)


def init_aiplatform(fake: FakeGoogleCloud, project: str = TEST_PROJECT,
                    location: str = TEST_LOCATION) -> None:
    """Point the high-level aiplatform SDK at the fake (REST transport)."""
    from google.cloud import aiplatform

    aiplatform.init(project=project, location=location, credentials=anonymous_credentials(),
                    api_endpoint=fake.url, api_transport="rest")


def parent(project: str = TEST_PROJECT, location: str = TEST_LOCATION) -> str:
    return f"projects/{project}/locations/{location}"


def wait_for_pipeline_job(client: Any, name: str, *, timeout: float = 20.0,
                          interval: float = 0.1) -> Any:
    """Poll get_pipeline_job until a terminal state; TimeoutError otherwise
    (the SDK's own wait() polls every 5 s, far too slow for tests)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_pipeline_job(name=name)
        if job.state.name in PIPELINE_TERMINAL_STATES:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} still {job.state.name} after {timeout}s")
        time.sleep(interval)


def wait_for_custom_job(client: Any, name: str, *, timeout: float = 20.0,
                        interval: float = 0.1) -> Any:
    """Poll get_custom_job until a terminal state; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_custom_job(name=name)
        if job.state.name in JOB_TERMINAL_STATES:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} still {job.state.name} after {timeout}s")
        time.sleep(interval)


def task_details_by_name(job: Any) -> Mapping[str, Any]:
    """PipelineTaskDetail by task_name (includes the root DAG detail, which is
    named after the pipeline, as on real Vertex)."""
    return {t.task_name: t for t in job.job_detail.task_details}
