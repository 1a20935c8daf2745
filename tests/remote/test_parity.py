"""The stack parity contract on the stacks that need no server: local, local with threads, and the
kit's subprocess executor (every unit a real ``flowyml step-runner`` process, through records)."""

from __future__ import annotations

import pytest

from flowyml_core.testing import StackParityContract
from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin


def _local_stores(tmp_path):
    return {
        "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
        "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
    }


class TestLocalStackParity(StackParityContract):
    @pytest.fixture
    def parity_stack(self, tmp_path):
        return {"executor": "local", **_local_stores(tmp_path)}


class TestLocalThreadsStackParity(StackParityContract):
    @pytest.fixture
    def parity_stack(self, tmp_path):
        return {"executor": {"flavor": "local", "max_workers": 4}, **_local_stores(tmp_path)}


class TestSubprocessStackParity(StackParityContract):
    plugin = SubprocessExecutorPlugin()

    @pytest.fixture
    def parity_stack(self, tmp_path):
        return {"executor": {"flavor": "kit-subprocess", "max_parallel": 2}, **_local_stores(tmp_path)}
