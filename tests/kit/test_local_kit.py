"""The conformance kit adopted by the local plugin's components, as a plugin author would (≤ 10 lines each)."""

from __future__ import annotations

import pytest

from flowyml_core.testing import ArtifactStoreContract, CacheStoreContract, ExecutorContract, RouterContract
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
from flowyml_local.executor import LocalExecutor
from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule


class TestLocalExecutor(ExecutorContract):
    flavor = "local"

    @pytest.fixture
    def executor(self):
        return LocalExecutor()


class TestLocalExecutorWithLocalStores(ExecutorContract):
    """The executor contract again, with the local stores in place of the kit's."""

    flavor = "local"

    @pytest.fixture
    def executor(self):
        return LocalExecutor()

    @pytest.fixture
    def cache_store(self, tmp_path):
        return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))

    @pytest.fixture
    def artifact_store(self, tmp_path):
        return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))


class TestLocalCacheStore(CacheStoreContract):
    @pytest.fixture
    def cache_store(self, tmp_path):
        return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path):
        return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))


class TestTypeRouter(RouterContract):
    @pytest.fixture
    def router(self, tmp_path):
        rule = TypeRule(type="builtins.dict", store=str(tmp_path / "routed"), path="{project_name}/{run_id}/{step_name}/{name}")
        return TypeRouter(TypeRouterConfig(rules=[rule]))

    @pytest.fixture
    def unrouted_value(self):
        return [1, 2, 3]
