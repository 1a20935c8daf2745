"""The conformance kit against the local executor with ``isolation = "process"`` (one unit at a time, and in parallel)."""

from __future__ import annotations

from typing import Any

import pytest

from flowyml_core.testing import ExecutorContract
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
