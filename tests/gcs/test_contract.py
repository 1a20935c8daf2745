"""The conformance kit of flowyml-core against the GCS stores on the emulator."""

from __future__ import annotations

import pytest

from flowyml_core.testing import ArtifactStoreContract, CacheStoreContract


class TestGcsCacheStoreContract(CacheStoreContract):
    concurrent_writers = 4

    @pytest.fixture
    def cache_store(self, gcs_cache):
        return gcs_cache


class TestGcsArtifactStoreContract(ArtifactStoreContract):
    concurrent_writers = 4

    @pytest.fixture
    def artifact_store(self, gcs_artifacts):
        return gcs_artifacts
