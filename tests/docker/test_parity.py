"""The stack parity contract on ``docker`` stacks: every unit a real container on a real dockerd.

The containers run the busybox image with this interpreter and venv mounted
(fixture ``docker_python``, documented in tests/servers/docker_engine.py).
With local stores, the stores are bind-mounted at the same path; on the GCS
emulator the units reach it over the host network, and the emulator's address
reaches them as a ``${env:…}`` reference, through the private secrets file.
"""

from __future__ import annotations

import pytest

from flowyml_core.testing import StackParityContract

pytestmark = pytest.mark.docker


class TestDockerLocalStoresParity(StackParityContract):
    @pytest.fixture
    def parity_stack(self, tmp_path, docker_python):
        return {
            "executor": {"flavor": "docker", "max_parallel": 2, **docker_python},
            "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
            "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
        }


class TestDockerGcsParity(StackParityContract):
    """The contract's runs that cross the stores most (a routed output, a fully cached rerun), on GCS.

    The whole contract runs above on local stores; each run here costs the
    same containers again, so only these are repeated.
    """

    test_run_parameters_reach_the_steps = None
    test_rerun_after_a_parameter_change_runs_only_what_it_affects = None

    @pytest.mark.parametrize("name", ["none_and_routed", "failure"])
    def test_pipeline_matches_the_local_run(self, parity, name):
        super().test_pipeline_matches_the_local_run(parity, name)

    @pytest.fixture
    def parity_stack(self, docker_python, gcs_bucket):
        gcs = {"endpoint": "${env:STORAGE_EMULATOR_HOST}", "token": "anon", "project": "fake-project"}
        return {
            "executor": {"flavor": "docker", "max_parallel": 2, **docker_python, "network": "host"},
            "artifact_store": {"flavor": "gcs", "url": f"gs://{gcs_bucket}/artifacts", **gcs},
            "cache_store": {"flavor": "gcs", "url": f"gs://{gcs_bucket}/cache", **gcs},
        }

    @pytest.fixture
    def parity_env(self, gcs_emulator):
        return {"STORAGE_EMULATOR_HOST": gcs_emulator.url}
