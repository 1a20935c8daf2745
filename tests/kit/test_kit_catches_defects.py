"""The kit must fail on broken components: each defect below is caught by the named contract tests.

pytester runs the kit in a throwaway pytest session against a deliberately
broken component and we check which contract tests failed.
"""

from __future__ import annotations

import textwrap

import pytest

EXECUTOR_HEADER = """
    import pytest
    from flowyml_core.components import Executor
    from flowyml_core.execution import run_step
    from flowyml_core.results import ExecutionResult
    from flowyml_core.testing import ExecutorContract
"""


def run_kit(pytester: pytest.Pytester, source: str, *args: str) -> dict[str, str]:
    pytester.makepyfile(test_plugin=textwrap.dedent(source))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)
    outcomes: dict[str, str] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            name = report.nodeid.split("::")[-1]
            if outcomes.get(name) != "failed":
                outcomes[name] = report.outcome
    return outcomes


def failed(outcomes: dict[str, str]) -> set[str]:
    return {name for name, outcome in outcomes.items() if outcome == "failed"}


def test_executor_that_treats_cached_none_as_a_miss(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, EXECUTOR_HEADER + """
    class NoneIsMiss:
        def __init__(self, store): self.store = store
        def get(self, key):
            entry = self.store.get(key)
            return entry if entry is not None and entry.value is not None else None
        def set_value(self, *a, **k): return self.store.set_value(*a, **k)

    class SeedExecutor(Executor):
        def execute_step(self, step, inputs, context_params, cache_store=None, **kw):
            return run_step(step, inputs, context_params, cache_store=cache_store and NoneIsMiss(cache_store), **kw)

    class TestIt(ExecutorContract):
        @pytest.fixture
        def executor(self):
            return SeedExecutor()
    """, "-k", "cache or cached")
    assert failed(outcomes) == {"test_none_output_is_cached"}, outcomes
    assert outcomes["test_second_call_is_a_cache_hit"] == "passed"


def test_executor_that_raises_instead_of_reporting(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, EXECUTOR_HEADER + """
    class Raising(Executor):
        def execute_step(self, step, inputs, context_params, **kw):
            kwargs = {k: v for k, v in {**inputs, **context_params}.items() if k in step.param_names}
            return ExecutionResult(step_name=step.name, success=True, output=step.func(**kwargs))

    class TestIt(ExecutorContract):
        @pytest.fixture
        def executor(self):
            return Raising()
    """, "-k", "not timeout")
    broken = failed(outcomes)
    for name in ("test_a_failing_step_is_a_result_not_an_exception", "test_retries_with_backoff_then_success",
                 "test_false_condition_skips_without_running", "test_second_call_is_a_cache_hit",
                 "test_outputs_are_materialized", "test_a_failing_condition_fails_the_step"):
        assert name in broken, (name, outcomes)
    assert outcomes["test_step_output_is_reported"] == "passed"
    assert outcomes["test_pipeline_runs_through_a_stack_naming_the_flavor"] == "skipped"


def test_executor_whose_flavor_is_not_registered(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, EXECUTOR_HEADER + """
    class Fine(Executor):
        def execute_step(self, step, inputs, context_params, **kw):
            return run_step(step, inputs, context_params, **kw)

    class TestIt(ExecutorContract):
        flavor = "not-installed-anywhere"

        @pytest.fixture
        def executor(self):
            return Fine()
    """, "-k", "stack")
    assert failed(outcomes) == {"test_pipeline_runs_through_a_stack_naming_the_flavor"}, outcomes


def test_cache_store_without_integrity_checks(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, """
    import os, pickle, pytest
    from flowyml_core.components import CacheStore, CacheEntry
    from flowyml_core.testing import CacheStoreContract

    class PlainPickles(CacheStore):
        def __init__(self, root):
            super().__init__(None)
            self.root = str(root)
        def _p(self, key): return os.path.join(self.root, key)
        def get(self, key):
            try:
                with open(self._p(key), "rb") as fh:
                    return pickle.load(fh)
            except FileNotFoundError:
                return None
            except Exception:
                return None
        def set_value(self, key, value, step_name, code_hash, fingerprint=None):
            os.makedirs(self.root, exist_ok=True)
            with open(self._p(key), "wb") as fh:
                pickle.dump(CacheEntry(value, step_name, code_hash, fingerprint), fh)
        def invalidate(self, key=None, step_name=None):
            n = 0
            for k in os.listdir(self.root):
                if k == key or (step_name and self.get(k).step_name == step_name):
                    os.unlink(self._p(k)); n += 1
            return n
        def clear(self):
            for k in os.listdir(self.root): os.unlink(self._p(k))
        def stats(self):
            names = os.listdir(self.root) if os.path.isdir(self.root) else []
            return {"entries": len(names), "bytes": sum(os.path.getsize(self._p(k)) for k in names)}

    class TestIt(CacheStoreContract):
        @pytest.fixture
        def cache_store(self, tmp_path):
            return PlainPickles(tmp_path / "c")
    """)
    broken = failed(outcomes)
    assert {"test_altered_bytes_are_a_miss", "test_replaced_bytes_are_never_unpickled"} <= broken, outcomes
    assert "test_round_trip_keeps_value_and_metadata" not in broken
    assert "test_none_is_a_hit_not_a_miss" not in broken


def test_artifact_store_that_writes_in_place_and_trusts_its_bytes(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, """
    import os, pickle, pytest
    from flowyml_core.components import ArtifactStore
    from flowyml_core.testing import ArtifactStoreContract

    class Naive(ArtifactStore):
        def __init__(self, root):
            super().__init__(None)
            self.root = str(root)
        def uri_for(self, run_id, step_name, name, project_name="default"):
            return os.path.join(self.root, project_name, run_id, step_name, name)
        def materialize(self, obj, name, run_id, step_name, project_name="default"):
            uri = self.uri_for(run_id, step_name, name, project_name)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            with open(uri, "wb") as fh:
                pickle.dump(obj, fh)
            return uri
        def load(self, uri):
            with open(uri, "rb") as fh:
                return pickle.load(fh)
        def exists(self, uri):
            return os.path.exists(uri)

    class TestIt(ArtifactStoreContract):
        @pytest.fixture
        def artifact_store(self, tmp_path):
            return Naive(tmp_path / "a")
    """)
    broken = failed(outcomes)
    assert {"test_altered_bytes_are_refused", "test_replaced_bytes_are_never_unpickled"} <= broken, outcomes
    assert "test_round_trip_and_uri" not in broken


def test_router_that_reuses_one_uri(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, """
    import os, pickle, pytest
    from flowyml_core.components import Router
    from flowyml_core.testing import RouterContract

    class OneFile(Router):
        def __init__(self, root):
            super().__init__(None)
            self.path = os.path.join(str(root), "routed.pkl")
        def route(self, output, *, name, step_name, run_id, project_name="default", return_type=None):
            if not isinstance(output, dict):
                return None
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "wb") as fh:
                pickle.dump(output, fh)
            return self.path
        def load(self, uri):
            with open(uri, "rb") as fh:
                return pickle.load(fh)

    class TestIt(RouterContract):
        @pytest.fixture
        def router(self, tmp_path):
            return OneFile(tmp_path)

        @pytest.fixture
        def unrouted_value(self):
            return [1, 2]
    """)
    assert failed(outcomes) == {"test_routes_do_not_collide"}, outcomes
    assert outcomes["test_unmatched_output_is_not_routed"] == "passed"


PARITY_HEADER = """
    import pytest
    from flowyml_core.testing import StackParityContract
    from flowyml_core.testing.subprocess_executor import SubprocessExecutor, SubprocessExecutorPlugin
    from flowyml_core.hookspecs import hookimpl

    def stores(tmp_path):
        return {"artifact_store": {"flavor": "local", "path": str(tmp_path / "a")},
                "cache_store": {"flavor": "local", "path": str(tmp_path / "c")}}
"""


def test_parity_catches_a_remote_executor_that_loses_cached_flags(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, PARITY_HEADER + """
    class Forgetful(SubprocessExecutor):
        def run_pipeline(self, *args, **kwargs):
            outcome = super().run_pipeline(*args, **kwargs)
            steps = getattr(outcome, "steps", {})
            for result in steps.values():
                result.cached = False
            return outcome

    class Plugin:
        @hookimpl
        def register_executors(self, register):
            register("forgetful", Forgetful)

    class TestIt(StackParityContract):
        plugin = Plugin()

        @pytest.fixture
        def parity_stack(self, tmp_path):
            return {"executor": "forgetful", **stores(tmp_path)}
    """, "-k", "second_run or rerun or chain")
    assert failed(outcomes) == {"test_second_run_is_fully_cached_and_submits_nothing"}, outcomes
    assert outcomes["test_pipeline_matches_the_local_run[chain]"] == "passed"


def test_parity_catches_a_remote_executor_that_starts_units_out_of_order(pytester: pytest.Pytester) -> None:
    outcomes = run_kit(pytester, PARITY_HEADER + """
    from flowyml_core.remote import RemoteRun

    class Reversed(SubprocessExecutor):
        def _launch(self, task):
            return super()._launch(task)

        def run_pipeline(self, pipeline, run_id, **kwargs):
            original = RemoteRun.walk

            def backwards(remote, launch, **kw):
                for task in reversed(remote.tasks):
                    launch(task)
                return original(remote, lambda task: None, **kw)

            RemoteRun.walk = backwards
            try:
                outcome = super().run_pipeline(pipeline, run_id, **kwargs)
                if hasattr(outcome, "wait"):
                    outcome.wait(60)
                return outcome
            finally:
                RemoteRun.walk = original

    class Plugin:
        @hookimpl
        def register_executors(self, register):
            register("reversed", Reversed)

    class TestIt(StackParityContract):
        plugin = Plugin()

        @pytest.fixture
        def parity_stack(self, tmp_path):
            return {"executor": "reversed", **stores(tmp_path)}
    """, "-k", "chain or diamond")
    assert "test_pipeline_matches_the_local_run[chain]" in failed(outcomes), outcomes
    assert "test_pipeline_matches_the_local_run[diamond]" in failed(outcomes), outcomes


def test_a_kit_failure_says_what_the_component_did_wrong(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin=textwrap.dedent(EXECUTOR_HEADER + """
    class IgnoresTheCache(Executor):
        def execute_step(self, step, inputs, context_params, cache_store=None, **kw):
            return run_step(step, inputs, context_params, **kw)

    class TestIt(ExecutorContract):
        @pytest.fixture
        def executor(self):
            return IgnoresTheCache()
    """))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                          "-k", "second_call_is_a_cache_hit")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    # The error line says which promise was broken and what came back, not just `assert (True and False)`.
    error = next(line for line in text.splitlines() if line.startswith("E       AssertionError"))
    assert error.startswith("E       AssertionError: the same step with the same inputs, given the same cache_store, "
                            "must be a cache hit (cached=True, output=10); got ExecutionResult("), error
    assert "cached=False" in error


def test_parity_takes_the_plugin_by_its_module_name(pytester: pytest.Pytester) -> None:
    """``plugin = "pkg.plugin"``, as an author writes it before ``pip install -e`` (ExecutorContract takes it too)."""
    pytester.makepyfile(thinplugin=textwrap.dedent("""
        from flowyml_core.hookspecs import hookimpl
        from flowyml_core.testing.subprocess_executor import SubprocessExecutor

        @hookimpl
        def register_executors(register):
            register("thin", SubprocessExecutor)
    """))
    pytester.syspathinsert()
    outcomes = run_kit(pytester, PARITY_HEADER + """
    class TestIt(StackParityContract):
        plugin = "thinplugin"

        @pytest.fixture
        def parity_stack(self, tmp_path):
            return {"executor": "thin", **stores(tmp_path)}
    """, "-k", "chain")
    assert outcomes == {"test_pipeline_matches_the_local_run[chain]": "passed"}, outcomes
