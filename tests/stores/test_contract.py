"""The conformance kit of flowyml-core, run against the local stores (on disk and on fsspec memory://)."""

from __future__ import annotations

import uuid

import pytest

from flowyml_core.testing import ArtifactStoreContract, CacheStoreContract
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig


class TestLocalCacheStoreContract(CacheStoreContract):
    @pytest.fixture
    def cache_store(self, tmp_path):
        return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))


class TestLocalArtifactStoreContract(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path):
        return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))


class TestMemoryUrlCacheStoreContract(CacheStoreContract):
    """Any fsspec URL goes through the same code (memory:// is one store per process: own root per test)."""

    @pytest.fixture
    def cache_store(self):
        return LocalCacheStore(LocalCacheStoreConfig(path=f"memory://cache-{uuid.uuid4().hex}"))


class TestMemoryUrlArtifactStoreContract(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self):
        return LocalArtifactStore(LocalArtifactStoreConfig(path=f"memory://artifacts-{uuid.uuid4().hex}"))
