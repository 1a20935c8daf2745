"""pytest fixtures that start real servers for the test suite and stop them afterwards.

Load with ``pytest_plugins = ["tests.servers.fixtures"]`` in the root
``tests/conftest.py`` (or ``from tests.servers.fixtures import *``).

Fixtures
--------
session scope:
    ``gcs_emulator``     a started ``GcsEmulator`` (fake-gcs-server, in memory)
    ``docker_engine``    a started ``DockerEngine`` (private dockerd, no bridge)
    ``docker_registry``  a started ``LocalRegistry`` (``.address`` = "127.0.0.1:PORT")
    ``busybox_image``    tag of a busybox image built FROM scratch on ``docker_engine``
    ``python_base_image`` tag of the base image the repository's ``docker`` stack names: busybox with
                         this Python and flowyml copied in (tests/servers/python_image.py)
    ``docker_python``    options of a ``docker`` executor on ``docker_engine`` whose containers
                         run the busybox image with this interpreter and venv mounted read-only
                         (see ``host_python_options`` in docker_engine.py)
function scope:
    ``gcs_bucket``       name of a fresh bucket in the emulator (deleted afterwards)
    ``gcs_fs``           a fresh ``gcsfs.GCSFileSystem`` on the emulator (no listings cache)
    ``fault_proxy``      a ``FaultProxy`` in front of the emulator, faults cleared

A service that cannot run here (binary missing, not root, wrong arch) makes the
tests that need it skip, with the reason (shown by ``pytest -rs``).  Set
``FLOWYML_REQUIRE_SERVERS=1`` (e.g. in CI, where the packages are installed by
``.ci/system-packages.sh``) to turn those skips into failures, so a missing
install step cannot pass silently.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.servers.docker_engine import (
    DockerEngine,
    EngineUnavailable,
    LocalRegistry,
    build_busybox_image,
    host_python_options,
)
from tests.servers.fault_proxy import FaultProxy
from tests.servers.gcs_emulator import EmulatorUnavailable, GcsEmulator

__all__ = [
    "busybox_image",
    "docker_python",
    "python_base_image",
    "docker_engine",
    "docker_registry",
    "fault_proxy",
    "gcs_bucket",
    "gcs_emulator",
    "gcs_fs",
]

REQUIRE_ENV = "FLOWYML_REQUIRE_SERVERS"


def _unavailable(what: str, exc: Exception):
    reason = f"{what} unavailable: {exc}"
    if os.environ.get(REQUIRE_ENV, "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def gcs_emulator():
    emulator = GcsEmulator()
    try:
        emulator.start()
    except EmulatorUnavailable as exc:
        _unavailable("GCS emulator (fake-gcs-server)", exc)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator):
    name = gcs_emulator.make_bucket(f"test-{uuid.uuid4().hex[:16]}")
    yield name
    if gcs_emulator.running:  # frees the emulator's memory; a dead emulator is reported elsewhere
        gcs_emulator.delete_bucket(name, force=True)


@pytest.fixture
def gcs_fs(gcs_emulator):
    return gcs_emulator.filesystem()


@pytest.fixture
def fault_proxy(gcs_emulator):
    proxy = FaultProxy(gcs_emulator.url)
    proxy.start()
    try:
        proxy.clear_faults()
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def docker_engine():
    engine = DockerEngine()
    try:
        engine.start()
    except EngineUnavailable as exc:
        _unavailable("docker engine (dockerd)", exc)
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_registry():
    registry = LocalRegistry()
    try:
        registry.start()
    except EngineUnavailable as exc:
        _unavailable("docker registry (docker-registry)", exc)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def busybox_image(docker_engine):
    try:
        return build_busybox_image(docker_engine.client())
    except EngineUnavailable as exc:  # busybox-static missing
        _unavailable("busybox base image", exc)


@pytest.fixture(scope="session")
def docker_python(docker_engine, busybox_image):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    return {"docker_host": docker_engine.base_url, "image": busybox_image, "network": "none",
            **host_python_options(repo)}


@pytest.fixture(scope="session")
def python_base_image(docker_engine):
    from tests.servers.python_image import build_python_base_image

    try:
        return build_python_base_image(docker_engine.client(timeout=600))
    except EngineUnavailable as exc:  # busybox-static missing
        _unavailable("python base image", exc)
