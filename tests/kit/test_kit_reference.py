"""The kit against components known to be right: a minimal executor (only ``execute_step``) and the kit's stores."""

from __future__ import annotations

from typing import Any

import pytest

from flowyml_core import hookimpl
from flowyml_core.components import Executor
from flowyml_core.execution import run_step
from flowyml_core.testing import ArtifactStoreContract, CacheStoreContract, ExecutorContract
from flowyml_core.testing.stores import DirArtifactStore, DirCacheStore, DirStoreConfig


class MinimalExecutor(Executor):
    """What CONTRIBUTING.md shows: an executor that implements only execute_step."""

    def execute_step(self, step: Any, inputs: dict, context_params: dict, **kwargs: Any):
        return run_step(step, inputs, context_params, **kwargs)


class MinimalPlugin:
    FLOWYML_API_VERSION = "1.0"

    @hookimpl
    def register_executors(self, register):
        register("kit-minimal", MinimalExecutor, summary="the kit's minimal executor")


class TestMinimalExecutor(ExecutorContract):
    flavor = "kit-minimal"
    plugin = MinimalPlugin()

    @pytest.fixture
    def executor(self):
        return MinimalExecutor()


class TestDirCacheStore(CacheStoreContract):
    @pytest.fixture
    def cache_store(self, tmp_path):
        return DirCacheStore(DirStoreConfig(path=str(tmp_path / "cache")))


class TestDirArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path):
        return DirArtifactStore(DirStoreConfig(path=str(tmp_path / "artifacts")))
