"""GCS store tests run against the real fake-gcs-server emulator (tests/servers)."""

from __future__ import annotations

import uuid

import pytest

from flowyml_gcs.config import GcsArtifactStoreConfig, GcsCacheStoreConfig
from flowyml_gcs.stores import GcsArtifactStore, GcsCacheStore
from flowyml_local.fsspecfs import forget_unavailable

from tests.stores.conftest import no_untrusted_report_left_over  # noqa: F401  (autouse: one fixture for both)


@pytest.fixture(autouse=True)
def no_inherited_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWYML_SIGNING_KEY", raising=False)


@pytest.fixture(autouse=True)
def no_outage_from_earlier_tests() -> None:
    """Stores of later tests have the same options: an outage one test caused must not shorten the next's retries."""
    forget_unavailable()


@pytest.fixture
def gcs_artifacts(gcs_emulator, gcs_bucket) -> GcsArtifactStore:
    return GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/artifacts", endpoint=gcs_emulator.url))


@pytest.fixture
def gcs_cache(gcs_emulator, gcs_bucket) -> GcsCacheStore:
    return GcsCacheStore(GcsCacheStoreConfig(url=f"gs://{gcs_bucket}/cache", endpoint=gcs_emulator.url))


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]

