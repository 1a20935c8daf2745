"""The conformance kit of flowyml-core against the S3 stores on moto."""

from __future__ import annotations

import pytest

from flowyml_core.testing import ArtifactStoreContract, CacheStoreContract


class TestS3CacheStoreContract(CacheStoreContract):
    concurrent_writers = 4

    @pytest.fixture
    def cache_store(self, s3_cache):
        return s3_cache


class TestS3ArtifactStoreContract(ArtifactStoreContract):
    concurrent_writers = 4

    @pytest.fixture
    def artifact_store(self, s3_artifacts):
        return s3_artifacts
