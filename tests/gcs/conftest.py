"""GCS store tests run against the real fake-gcs-server emulator (tests/servers)."""

from __future__ import annotations

import uuid

import pytest

import sys

# Fixtures are visible per conftest directory, so import them here unconditionally.
# tests/servers/conftest.py skips its import when the module is already loaded; so
# that it still gets its own copy when pytest collects this directory first, leave
# sys.modules as it was (the fixture functions bound here stay valid).
_loaded_before = "tests.servers.fixtures" in sys.modules
from tests.servers.fixtures import *  # noqa: E402,F401,F403

if not _loaded_before:
    del sys.modules["tests.servers.fixtures"]

from flowyml_gcs.config import GcsArtifactStoreConfig, GcsCacheStoreConfig
from flowyml_gcs.stores import GcsArtifactStore, GcsCacheStore


@pytest.fixture(autouse=True)
def no_inherited_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWYML_SIGNING_KEY", raising=False)


@pytest.fixture
def gcs_artifacts(gcs_emulator, gcs_bucket) -> GcsArtifactStore:
    return GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/artifacts", endpoint=gcs_emulator.url))


@pytest.fixture
def gcs_cache(gcs_emulator, gcs_bucket) -> GcsCacheStore:
    return GcsCacheStore(GcsCacheStoreConfig(url=f"gs://{gcs_bucket}/cache", endpoint=gcs_emulator.url))


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
