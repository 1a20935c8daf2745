"""The conformance kit against the local executor (in one thread and with threads) and the type router."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyml_core.testing import ExecutorContract, RouterContract
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig
from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule


class TestLocalExecutorContract(ExecutorContract):
    flavor = "local"

    @pytest.fixture
    def executor(self) -> LocalExecutor:
        return LocalExecutor()


class TestThreadedLocalExecutorContract(ExecutorContract):
    flavor = "local"

    @pytest.fixture
    def executor(self) -> LocalExecutor:
        return LocalExecutor(LocalExecutorConfig(max_workers=3))

    @pytest.fixture
    def flavor_options(self) -> dict[str, int]:
        return {"max_workers": 3}


class TestTypeRouterContract(RouterContract):
    @pytest.fixture
    def router(self, tmp_path: Path) -> TypeRouter:
        return TypeRouter(TypeRouterConfig(rules=[TypeRule(type="builtins.dict", store=str(tmp_path / "dicts"),
                                                           path="{project_name}/{run_id}/{step_name}/{name}")]))

    @pytest.fixture
    def routed_value(self) -> dict:
        return {"rows": [1, 2, 3]}

    @pytest.fixture
    def unrouted_value(self) -> list:
        return [1, 2, 3]
