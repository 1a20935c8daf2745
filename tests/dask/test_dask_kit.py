"""The dask executor passes the conformance kit, on a real LocalCluster (2 worker processes)."""

from __future__ import annotations

import pytest

from flowyml_core.testing import ExecutorContract, StackParityContract


class TestDaskExecutorContract(ExecutorContract):
    flavor = "dask"

    @pytest.fixture
    def executor(self, dask_executor):
        return dask_executor

    @pytest.fixture
    def flavor_options(self, dask_cluster):
        return {"address": dask_cluster.scheduler_address}


class TestDaskExecutorWithLocalStores(ExecutorContract):
    """The contract again with the local plugin's stores, in the kit's calls and in its stacks.toml."""

    flavor = "dask"

    @pytest.fixture
    def executor(self, dask_executor):
        return dask_executor

    @pytest.fixture
    def flavor_options(self, dask_cluster):
        return {"address": dask_cluster.scheduler_address}

    @pytest.fixture
    def cache_store(self, tmp_path):
        from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

        return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))

    @pytest.fixture
    def artifact_store(self, tmp_path):
        from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

        return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))

    @pytest.fixture
    def stack_stores(self, tmp_path):
        return {"cache_store": {"flavor": "local", "path": str(tmp_path / "stack-cache")},
                "artifact_store": {"flavor": "local", "path": str(tmp_path / "stack-artifacts")}}


class TestDaskStackParity(StackParityContract):
    """A run on a dask stack reports what the same run on the local stack reports (remote parity)."""

    @pytest.fixture
    def parity_stack(self, dask_cluster, tmp_path):
        return {
            "executor": {"flavor": "dask", "address": dask_cluster.scheduler_address},
            "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
            "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
        }
