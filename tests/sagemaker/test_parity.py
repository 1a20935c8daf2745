"""The kit's stack parity contract on sagemaker-local: the executing fake SageMaker, stores on moto's S3.

Every pipeline of the contract runs on the local stack and on SageMaker, each
unit a real ``flowyml step-runner`` process started by the fake from the
definition, and the statuses, cached flags, errors and values must be equal.
It includes the contract's cache checks: a second run is fully cached and
submits nothing, and after a parameter changes only the affected units are
submitted.

Each unit is a fresh process that imports s3fs (about 1.5 s a unit on a
2-core machine), so the checks that other tests here make too (the cache
ones: test_shipped_stack.py, through the CLI) and the pipelines that only
repeat what the others check are long variants (``slow``: ``FLOWYML_LONG=1`` or
``-m slow`` runs them); all of them passed when this was written.
"""

from __future__ import annotations

import pytest

from flowyml_core.testing import StackParityContract

from .conftest import CLIENT_ENV, executor_options


#: Pipelines of the contract run by default; the others are long variants.
DEFAULT = ("group", "failure")
PIPELINES = ("chain", "diamond", "group", "none_and_routed", "condition", "retry", "failure")


class TestSageMakerStackParity(StackParityContract):
    @pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in PIPELINES])
    def test_pipeline_matches_the_local_run(self, parity, name: str) -> None:
        super().test_pipeline_matches_the_local_run(parity, name)

    # Through the CLI, test_shipped_stack.py checks these on every run: long variants here.
    @pytest.mark.slow
    def test_run_parameters_reach_the_steps(self, parity) -> None:
        super().test_run_parameters_reach_the_steps(parity)

    @pytest.mark.slow
    def test_second_run_is_fully_cached_and_submits_nothing(self, parity) -> None:
        super().test_second_run_is_fully_cached_and_submits_nothing(parity)

    @pytest.mark.slow
    def test_rerun_after_a_parameter_change_runs_only_what_it_affects(self, parity) -> None:
        super().test_rerun_after_a_parameter_change_runs_only_what_it_affects(parity)

    @pytest.fixture
    def parity_stack(self, tmp_path, fake_sagemaker_factory, moto_s3, s3_bucket, step_env, client_env):
        # The kit's pipelines are imported from flowyml_core.testing, which every step process has.
        fake = fake_sagemaker_factory(workdir=tmp_path, base_env=step_env, step_timeout=60.0)
        s3 = {"endpoint_url": moto_s3.url, "region": "us-east-1", "key": "${env:S3_TEST_KEY}",
              "secret": "${env:S3_TEST_SECRET}"}
        return {
            "executor": executor_options(fake, poll_interval=0.05),
            "artifact_store": {"flavor": "s3", "url": f"s3://{s3_bucket}/parity-artifacts", **s3},
            "cache_store": {"flavor": "s3", "url": f"s3://{s3_bucket}/parity-cache", **s3},
        }

    @pytest.fixture
    def parity_env(self, moto_s3):
        return dict(CLIENT_ENV)
