"""The kit's stack parity contract on the kubernetes executor, against the fake API server.

Every run goes the whole way: orchestrator Job, its pod walking the DAG through
the API, one Job per unit running ``flowyml step-runner``; stores are local
directories the pod processes share with this one.
"""

from __future__ import annotations

import pytest

from flowyml_core.testing import StackParityContract

from .conftest import executor_options


class TestKubernetesStackParity(StackParityContract):
    @pytest.fixture
    def parity_stack(self, tmp_path, fake_kubernetes_factory):
        # The kit runs with XDG_CONFIG_HOME = <project>/.xdg: pods share it, so pickles verify as locally.
        fake = fake_kubernetes_factory(base_env={"XDG_CONFIG_HOME": str(tmp_path / "parity-project" / ".xdg")})
        return {
            "executor": executor_options(fake, max_parallel=4),
            "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
            "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
        }
