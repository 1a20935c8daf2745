"""The conformance kit against the local executor with ``isolation = "process"`` (one unit at a time, and in
parallel), and the stack parity contract: the same runs report what they report in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowyml_core.testing import ExecutorContract, StackParityContract
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig


class TestProcessIsolatedLocalExecutorContract(ExecutorContract):
    flavor = "local"

    @pytest.fixture
    def executor(self) -> LocalExecutor:
        return LocalExecutor(LocalExecutorConfig(isolation="process"))

    @pytest.fixture
    def flavor_options(self) -> dict[str, Any]:
        return {"isolation": "process"}


class TestParallelProcessIsolatedLocalExecutorContract(ExecutorContract):
    flavor = "local"

    @pytest.fixture
    def executor(self) -> LocalExecutor:
        return LocalExecutor(LocalExecutorConfig(max_workers=3, isolation="process"))

    @pytest.fixture
    def flavor_options(self) -> dict[str, Any]:
        return {"max_workers": 3, "isolation": "process"}


class TestProcessIsolatedStackParity(StackParityContract):
    """The same runs report the same on the in-process local stack and on this one."""

    @pytest.fixture
    def parity_stack(self, tmp_path: Path) -> dict[str, Any]:
        return {
            "executor": {"flavor": "local", "isolation": "process", "max_workers": 2},
            "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
            "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
        }
