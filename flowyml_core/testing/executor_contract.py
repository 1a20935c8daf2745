"""``ExecutorContract``: the behaviour every flowyml executor owes its users.

Subclass it in your plugin's tests and provide an ``executor`` fixture::

    import pytest
    from flowyml_core.testing import ExecutorContract
    from flowyml_myexec.executor import MyExecutor, MyExecutorConfig

    class TestMyExecutor(ExecutorContract):
        flavor = "myexec"                      # the name your plugin registers

        @pytest.fixture
        def executor(self):
            return MyExecutor(MyExecutorConfig())

What is checked (the seed's semantics, see ``docs/reference/executor.md``):
condition → cache → retry with exponential backoff → materialize → cache write
for one step; step groups (inputs by name then position, outputs fanned out
from tuples and dicts, the rest skipped after a failure); whole pipelines
(dependency order, failures skip only what depends on them, a second run is
cached, observer hooks see every step); and a pipeline run end to end through
a ``stacks.toml`` that names your flavor.

Optional knobs: ``flavor_options`` (a fixture: options written under your
executor in stacks.toml), ``stack_stores`` (the stores of that stacks.toml),
``plugin`` (your plugin module, registered in process when the package is not
installed), and the ``cache_store`` / ``artifact_store`` fixtures (the kit's
directory stores by default). Steps are
module-level functions of :mod:`flowyml_core.testing.samples`; they count
their calls in a file, so an executor that runs them in other processes is
checked just the same — provided they can append to the call log, a file in
pytest's temporary directory: for workers on other machines, override the
``calls`` fixture with a ``CallLog`` on a shared filesystem. If the executor
has a ``close()`` method, the kit calls it on executors it builds from
stacks.toml.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from flowyml_core.calling import keyword_caller
from flowyml_core.context import Context
from flowyml_core.errors import StopExecution  # noqa: F401  (documented: steps may raise it)
from flowyml_core.execution import Run
from flowyml_core.grouping import StepGroup
from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult
from flowyml_core.testing import samples
from flowyml_core.testing.project import KitProject, author_plugin, close_component
from flowyml_core.testing.samples import CallLog, SamplePipelines, make_step
from flowyml_core.testing.stores import DirArtifactStore, DirCacheStore, DirStoreConfig


def _failures(result: RunResult) -> str:
    return "; ".join(f"{r.step_name}: {(r.error or '').splitlines()[0] if r.error else '?'}" for r in result.failed_steps)


class ExecutorContract:
    """Abstract test class: subclass it and provide an ``executor`` fixture."""

    #: The flavor your plugin registers; the kit runs a pipeline through a stacks.toml naming it.
    flavor: ClassVar[str | None] = None
    #: Your plugin module ("pkg.plugin" or the module itself), registered in process when
    #: no installed plugin provides ``flavor`` (before ``pip install -e``).
    plugin: ClassVar[Any] = None

    # -- fixtures an author may override ------------------------------------------------
    @pytest.fixture
    def executor(self) -> Any:
        raise NotImplementedError("provide an `executor` fixture that returns your executor")

    @pytest.fixture
    def flavor_options(self) -> dict[str, Any]:
        """Options written under ``executor = { flavor = ..., ... }`` in the kit's stacks.toml."""
        return {}

    @pytest.fixture
    def stack_stores(self) -> dict[str, Any]:
        """Stores of the kit's stacks.toml: ``"kit"`` (the kit's directory stores) or a table such as
        ``{"flavor": "gcs", "url": "gs://bucket/kit"}`` when your executor's workers cannot reach local disk."""
        return {"cache_store": "kit", "artifact_store": "kit"}

    @pytest.fixture
    def cache_store(self, tmp_path: Path) -> Any:
        return DirCacheStore(DirStoreConfig(path=str(tmp_path / "kit-cache")))

    @pytest.fixture
    def artifact_store(self, tmp_path: Path) -> Any:
        return DirArtifactStore(DirStoreConfig(path=str(tmp_path / "kit-artifacts")))

    @pytest.fixture
    def calls(self, tmp_path: Path) -> CallLog:
        return CallLog(tmp_path / "kit-calls.jsonl")

    @pytest.fixture
    def pipelines(self, calls: CallLog) -> SamplePipelines:
        return SamplePipelines(calls)

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def execute(executor: Any, step: Any, inputs: dict[str, Any] | None = None, **kwargs: Any) -> ExecutionResult:
        """Call ``executor.execute_step`` as flowyml does (arguments it does not declare are dropped)."""
        kwargs.setdefault("context_params", {})
        result = keyword_caller(executor.execute_step)(step=step, inputs=dict(inputs or {}), **kwargs)
        assert isinstance(result, ExecutionResult), f"execute_step returned {result!r}, not an ExecutionResult"
        assert result.step_name == step.name, (
            f"execute_step returned a result for step {result.step_name!r} when asked to run {step.name!r}"
        )
        return result

    @staticmethod
    def execute_group(executor: Any, group: StepGroup, inputs: dict[str, Any] | None = None, **kwargs: Any) -> list[ExecutionResult]:
        results = keyword_caller(executor.execute_step_group)(step_group=group, inputs=dict(inputs or {}), **kwargs)
        assert [r.step_name for r in results] == list(group.execution_order), (
            f"execute_step_group must return one result per step in execution order, got {[r.step_name for r in results]}"
        )
        return list(results)

    @staticmethod
    def run_pipeline(executor: Any, pipeline: Any, context: dict[str, Any], hooks: Any = None, **stores: Any) -> RunResult:
        run_id = f"kit-{time.monotonic_ns()}"
        result = keyword_caller(executor.run_pipeline)(
            pipeline=pipeline,
            run_id=run_id,
            context=Context(**context),
            run=Run(run_id=run_id, pipeline_name=pipeline.name),
            hooks=hooks,
            **{"cache_store": None, "artifact_store": None, "router": None, **stores},
        )
        assert isinstance(result, RunResult), f"run_pipeline returned {result!r}, not a RunResult"
        assert result.run_id == run_id, f"run_pipeline was given run_id {run_id!r} but reported {result.run_id!r}"
        return result

    # -- one step -------------------------------------------------------------------------
    def test_step_output_is_reported(self, executor: Any, calls: CallLog) -> None:
        result = self.execute(executor, make_step(samples.double), {"x": 21}, context_params={"calls": calls})
        assert result.success, f"the step double(x=21) failed: {result.error}"
        assert result.output == 42, f"double(x=21) returns 42, but the result's output is {result.output!r}"
        assert (result.cached, result.skipped, result.error, result.retries) == (False, False, None, 0), (
            "a step that ran once without trouble must report cached=False, skipped=False, error=None, retries=0; "
            f"got cached={result.cached!r}, skipped={result.skipped!r}, error={result.error!r}, retries={result.retries!r}"
        )
        assert result.duration_seconds >= 0, f"duration_seconds is negative: {result.duration_seconds!r}"
        assert calls.count("double") == 1, f"the step ran {calls.count('double')} times; it must run exactly once"

    def test_context_params_reach_the_step_by_name(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.echo_params)
        result = self.execute(executor, step, context_params={"calls": calls, "alpha": 7, "beta": "set"})
        assert result.success, f"the step failed: {result.error}"
        assert result.output == {"alpha": 7, "beta": "set"}, (
            "context_params must reach the step's function by argument name (alpha=7, beta='set'); "
            f"the step saw {result.output!r}"
        )

    def test_a_failing_step_is_a_result_not_an_exception(self, executor: Any, calls: CallLog) -> None:
        result = self.execute(executor, make_step(samples.boom), context_params={"calls": calls})
        assert not result.success, "a step that raised ValueError was reported as a success"
        assert "ValueError" in (result.error or "") and "boom: intentional failure" in (result.error or ""), (
            f"the error of a failed step must name the exception and its message; got {result.error!r}"
        )
        assert result.output is None, f"a failed step has no output; got {result.output!r}"

    def test_retries_with_backoff_then_success(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.flaky, retry=2, retry_delay=0.05)
        result = self.execute(executor, step, context_params={"calls": calls, "failures": 2})
        assert result.success, f"a step with retry=2 that fails twice must succeed on the third try; got: {result.error}"
        assert result.output == "recovered", f"output after retries: {result.output!r}, expected 'recovered'"
        assert result.retries == 2, f"result.retries must count the retries made (2); got {result.retries!r}"
        assert calls.count("flaky") == 3, f"the step ran {calls.count('flaky')} times; retry=2 means 3 tries"
        # Exponential backoff: 0.05 s, then 0.1 s.
        times = [r["time"] for r in calls.records("flaky")]
        assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.095, (
            "retries must wait retry_delay, doubling each time (0.05 s, then 0.1 s); the tries were "
            f"{[round(b - a, 3) for a, b in zip(times, times[1:])]} s apart"
        )

    def test_retries_exhausted_report_the_last_error(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.flaky, retry=1, retry_delay=0)
        result = self.execute(executor, step, context_params={"calls": calls, "failures": 5})
        assert not result.success, "a step that failed on every try was reported as a success"
        assert "flaky failure 2 of 5" in (result.error or ""), (
            f"after the last retry the error must be the last try's (flaky failure 2 of 5); got {result.error!r}"
        )
        assert result.retries == 1, f"retry=1: result.retries must be 1, got {result.retries!r}"
        assert calls.count("flaky") == 2, f"the step ran {calls.count('flaky')} times; retry=1 means 2 tries"

    def test_stop_execution_is_not_retried(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.stops, retry=3, retry_delay=0)
        result = self.execute(executor, step, context_params={"calls": calls})
        assert not result.success, "a step that raised StopExecution was reported as a success"
        assert "stopped on purpose" in (result.error or ""), f"the error must carry StopExecution's message; got {result.error!r}"
        assert calls.count("stops") == 1, (
            f"StopExecution stops the step for good, but it was tried {calls.count('stops')} times (retry=3 must not apply)"
        )

    def test_timeout_fails_the_step(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.sleeper, timeout=0.3, cache=False)
        started = time.perf_counter()
        result = self.execute(executor, step, context_params={"calls": calls, "seconds": 3})
        elapsed = time.perf_counter() - started
        assert not result.success, "a step running past its timeout (0.3 s) was reported as a success"
        assert "timed out" in (result.error or ""), f"the error of a timed-out step must say 'timed out'; got {result.error!r}"
        assert elapsed < 2.5, f"execute_step waited {elapsed:.1f} s for a step with timeout=0.3 s (the step sleeps 3 s)"

    def test_prints_are_captured_in_the_result(self, executor: Any, calls: CallLog) -> None:
        result = self.execute(executor, make_step(samples.printer), context_params={"calls": calls}, run_id="kit-logs")
        assert result.success, f"the step failed: {result.error}"
        assert "hello from a flowyml kit step" in (result.logs or ""), (
            f"what a step prints must be captured in result.logs; got {result.logs!r}"
        )

    # -- conditions -----------------------------------------------------------------------
    def test_false_condition_skips_without_running(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.returns_none, condition=samples.never)
        result = self.execute(executor, step, context_params={"calls": calls})
        assert result.success and result.skipped, (
            f"a step whose condition is false must be reported as skipped (success=True, skipped=True); got {result!r}"
        )
        assert result.output is None, f"a skipped step has no output; got {result.output!r}"
        assert calls.count() == 0, f"the condition was false, yet the step ran ({calls.names()})"

    def test_condition_sees_params_and_dict_outputs(self, executor: Any, calls: CallLog) -> None:
        flagged = make_step(samples.source, condition=samples.when_flag)
        on = self.execute(executor, flagged, context_params={"calls": calls, "flag": True})
        assert on.output == 1, f"condition `flag` is true (a context parameter): the step must run; got {on!r}"
        off = self.execute(executor, flagged, context_params={"calls": calls, "flag": False})
        assert off.skipped, f"condition `flag` is false (a context parameter): the step must be skipped; got {off!r}"
        gated = make_step(samples.deploy, inputs=["m"], condition=samples.quality_ok)
        good = self.execute(executor, gated, {"m": {"quality_score": 0.9}}, context_params={"calls": calls},
                            all_outputs={"m": {"quality_score": 0.9}})
        assert good.success and not good.skipped and good.output == "deployed", (
            f"the condition reads quality_score from an upstream dict output (all_outputs) and is true: the step must run; got {good!r}"
        )
        bad = self.execute(executor, gated, {"m": {"quality_score": 0.1}}, context_params={"calls": calls},
                           all_outputs={"m": {"quality_score": 0.1}})
        assert bad.success and bad.skipped, (
            f"the condition reads quality_score=0.1 from all_outputs and is false: the step must be skipped; got {bad!r}"
        )
        assert calls.count("deploy") == 1, f"deploy ran {calls.count('deploy')} times; only its true condition may run it"

    def test_a_failing_condition_fails_the_step(self, executor: Any, calls: CallLog) -> None:
        step = make_step(samples.source, condition=samples.broken_condition)
        result = self.execute(executor, step, context_params={"calls": calls})
        assert not result.success, f"a condition that raises must fail the step; got {result!r}"
        assert "condition" in (result.error or "") and "exploded on purpose" in (result.error or ""), (
            f"the error must say the condition failed, with its message; got {result.error!r}"
        )
        assert calls.count() == 0, f"the condition raised, yet the step ran ({calls.names()})"

    # -- caching --------------------------------------------------------------------------
    def test_second_call_is_a_cache_hit(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        step = make_step(samples.double)
        first = self.execute(executor, step, {"x": 5}, context_params={"calls": calls}, cache_store=cache_store)
        second = self.execute(executor, step, {"x": 5}, context_params={"calls": calls}, cache_store=cache_store)
        assert first.success and not first.cached, f"the first call must run the step (nothing is cached yet); got {first!r}"
        assert second.success and second.cached and second.output == 10, (
            "the same step with the same inputs, given the same cache_store, must be a cache hit "
            f"(cached=True, output=10); got {second!r}"
        )
        assert calls.count("double") == 1, f"the step ran {calls.count('double')} times; the second call must come from the cache"

    def test_cache_key_covers_inputs_and_params(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        step = make_step(samples.echo_params)
        for alpha in (1, 2, 1):
            self.execute(executor, step, context_params={"calls": calls, "alpha": alpha}, cache_store=cache_store)
        assert calls.count("echo_params") == 2, (
            f"parameters alpha=1, 2, 1 must run the step twice (the key covers parameters); it ran {calls.count('echo_params')} times"
        )
        doubler = make_step(samples.double)
        for x in (1, 2, 2):
            self.execute(executor, doubler, {"x": x}, context_params={"calls": calls}, cache_store=cache_store)
        assert calls.count("double") == 2, (
            f"inputs x=1, 2, 2 must run the step twice (the key covers inputs); it ran {calls.count('double')} times"
        )

    def test_none_output_is_cached(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        step = make_step(samples.returns_none)
        first = self.execute(executor, step, context_params={"calls": calls}, cache_store=cache_store)
        second = self.execute(executor, step, context_params={"calls": calls}, cache_store=cache_store)
        assert first.success and first.output is None and not first.cached, f"first call of a step returning None: {first!r}"
        assert second.success and second.cached and second.output is None, (
            f"a step that returned None must be cached like any other (cached=True, output=None); got {second!r}"
        )
        assert calls.count("returns_none") == 1, (
            f"the step ran {calls.count('returns_none')} times: a cached None was treated as a miss"
        )

    def test_cache_false_always_runs(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        step = make_step(samples.double, cache=False)
        for _ in range(2):
            result = self.execute(executor, step, {"x": 1}, context_params={"calls": calls}, cache_store=cache_store)
            assert result.success and not result.cached, f"a step with cache=False must never come from the cache; got {result!r}"
        assert calls.count("double") == 2, f"a step with cache=False must run every time; it ran {calls.count('double')} of 2"

    def test_failures_are_not_cached(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        step = make_step(samples.boom)
        for _ in range(2):
            result = self.execute(executor, step, context_params={"calls": calls}, cache_store=cache_store)
            assert not result.success, f"a failing step was reported as a success: {result!r}"
        assert calls.count("boom") == 2, (
            f"a failure must never be cached: the step ran {calls.count('boom')} times in 2 calls"
        )

    def test_outputs_other_than_declared_fail_that_step(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        # samples.pair returns a 2-tuple, samples.as_dict the keys left and right.
        for step, received in ((make_step(samples.pair, outputs=["a", "b", "c"]), "tuple of 2 items"),
                               (make_step(samples.as_dict, outputs=["left", "middle"]), "missing 'middle'")):
            for _ in range(2):  # and never cached
                result = self.execute(executor, step, context_params={"calls": calls}, cache_store=cache_store)
                assert not result.success and not result.cached, (step.outputs, result.output)
                assert f"step {step.name!r} declares" in result.error and str(list(step.outputs)) in result.error
                assert received in result.error
        assert (calls.count("pair"), calls.count("as_dict")) == (2, 2)

    # -- artifacts --------------------------------------------------------------------------
    def test_outputs_are_materialized(self, executor: Any, calls: CallLog, artifact_store: Any) -> None:
        single = self.execute(executor, make_step(samples.double, outputs=["doubled"]), {"x": 4},
                              context_params={"calls": calls}, artifact_store=artifact_store, run_id="kit-art")
        assert single.success, f"the step failed: {single.error}"
        assert single.artifact_uri, "given an artifact_store, a step's output must be materialized (artifact_uri is empty)"
        loaded = artifact_store.load(single.artifact_uri)
        assert loaded == 8, f"the artifact at {single.artifact_uri} holds {loaded!r}, not the output 8"
        assert single.artifact_uris == {"doubled": single.artifact_uri}, (
            f"artifact_uris must map each output name to its URI; got {single.artifact_uris!r}"
        )
        both = self.execute(executor, make_step(samples.pair, outputs=["left", "right"]),
                            context_params={"calls": calls}, artifact_store=artifact_store, run_id="kit-art")
        assert both.success, f"the step failed: {both.error}"
        assert sorted(both.artifact_uris) == ["left", "right"], (
            f"a step with outputs left and right must materialize one artifact each; got {sorted(both.artifact_uris)}"
        )
        got = (artifact_store.load(both.artifact_uris["left"]), artifact_store.load(both.artifact_uris["right"]))
        assert got == (3, 4), f"the tuple (3, 4) must be split over outputs left and right; the artifacts hold {got!r}"
        assert artifact_store.load_artifact("kit-art", "pair", "right") == 4, (
            "the artifact must be stored where the store expects it for run 'kit-art', step 'pair', output 'right'"
        )

    # -- step groups ------------------------------------------------------------------------------
    def test_group_maps_inputs_and_fans_out_outputs(self, executor: Any, calls: CallLog) -> None:
        steps = [
            make_step(samples.pair, outputs=["left", "right"]),          # tuple → two assets
            make_step(samples.add, inputs=["left", "right"], outputs=["total"]),  # by position: a, b
            make_step(samples.double, inputs=["total"], outputs=["doubled"]),
            make_step(samples.as_dict, name="as_dict", outputs=["left", "right"]),  # dict → matching keys
            make_step(samples.add, name="add_again", inputs=["left", "right"], outputs=["again"]),
        ]
        group = StepGroup("kit-group", steps, [s.name for s in steps])
        results = self.execute_group(executor, group, context=Context(calls=calls))
        assert all(r.success and not r.skipped for r in results), (
            f"every step of the group must run: {[(r.step_name, r.error) for r in results if not r.success or r.skipped]}"
        )
        outputs = {r.step_name: r.output for r in results}
        assert outputs == {"pair": (3, 4), "add": 7, "double": 14, "as_dict": {"right": 20, "left": 10},
                           "add_again": 30}, (
            "inside a group, inputs map by name then position, tuples and dicts fan out over declared outputs; "
            f"got outputs {outputs!r}"
        )

    def test_group_takes_inputs_from_outside(self, executor: Any, calls: CallLog) -> None:
        steps = [make_step(samples.double, inputs=["x"], outputs=["y"]), make_step(samples.triple, inputs=["y"], outputs=["z"])]
        group = StepGroup("kit-group", steps, ["double", "triple"])
        results = self.execute_group(executor, group, {"x": 2}, context=Context(calls=calls))
        assert [r.output for r in results] == [4, 12], (
            f"a group must take input x=2 from outside it (double → 4, triple → 12); got {[r.output for r in results]}"
        )

    def test_group_failure_skips_the_rest(self, executor: Any, calls: CallLog) -> None:
        steps = [make_step(samples.source, outputs=["x"]), make_step(samples.boom, inputs=["x"], outputs=["y"]),
                 make_step(samples.double, inputs=["y"], outputs=["z"])]
        group = StepGroup("kit-group", steps, ["source", "boom", "double"])
        results = self.execute_group(executor, group, context=Context(calls=calls))
        assert results[0].success and not results[0].skipped, f"the group's first step must run: {results[0]!r}"
        assert not results[1].success and "boom" in (results[1].error or ""), f"the failing step must fail: {results[1]!r}"
        assert results[2].success and results[2].skipped and "boom" in (results[2].error or ""), (
            f"after a failure the rest of the group is skipped, naming the failed step; got {results[2]!r}"
        )
        assert calls.names() == ["source", "boom"], f"steps after a failure in a group must not run; ran {calls.names()}"

    def test_group_injects_each_steps_own_params(self, executor: Any, calls: CallLog, cache_store: Any) -> None:
        steps = [make_step(samples.source, outputs=["x"]), make_step(samples.echo_params, outputs=["echo"])]
        group = StepGroup("kit-group", steps, ["source", "echo_params"])
        context = Context(calls=calls, seed=9, alpha=3)
        results = self.execute_group(executor, group, context=context, cache_store=cache_store)
        assert [r.output for r in results] == [9, {"alpha": 3, "beta": "unset"}], (
            f"each step of a group receives its own parameters by name; got {[r.output for r in results]}"
        )
        # source does not receive alpha, so changing alpha keeps it cached.
        again = self.execute_group(executor, group, context=Context(calls=calls, seed=9, alpha=4), cache_store=cache_store)
        assert again[0].cached and not again[1].cached, (
            "changing alpha must re-run only the step that takes it (source cached, echo_params not); "
            f"got cached={[r.cached for r in again]}"
        )

    # -- pipelines ----------------------------------------------------------------------------
    def test_pipeline_runs_in_dependency_order(self, executor: Any, pipelines: SamplePipelines) -> None:
        result = self.run_pipeline(executor, pipelines.diamond(), pipelines.context())
        assert result.success and result.status is ExecutionStatus.COMPLETED, (
            f"the diamond pipeline must complete; status {result.status}, failures: {_failures(result)}"
        )
        assert list(result.steps) == ["source", "double", "triple", "add"], (
            f"RunResult.steps must list every step in topological order; got {list(result.steps)}"
        )
        got = {k: result.outputs.get(k) for k in ("a", "b", "total")}
        assert got == {"a": 2, "b": 3, "total": 5}, f"RunResult.outputs must hold every asset; got {got!r}"
        # Append order in the call log (not clocks, which may differ between machines).
        order = pipelines.calls.names()
        assert order[0] == "source" and order[-1] == "add" and sorted(order) == ["add", "double", "source", "triple"], (
            f"steps must run after the steps they depend on, each once; they ran in the order {order}"
        )

    def test_pipeline_failure_skips_only_dependents(self, executor: Any, pipelines: SamplePipelines) -> None:
        result = self.run_pipeline(executor, pipelines.with_failure(), pipelines.context())
        assert not result.success and result.status is ExecutionStatus.FAILED, (
            f"a pipeline with a failing step must be FAILED; got status {result.status}"
        )
        assert [r.step_name for r in result.failed_steps] == ["boom"], (
            f"only the step that raised may be failed; failed: {[r.step_name for r in result.failed_steps]}"
        )
        assert "boom: intentional failure" in (result.steps["boom"].error or ""), (
            f"the failed step's error must carry its exception; got {result.steps['boom'].error!r}"
        )
        assert result.steps["double"].skipped and "boom" in (result.steps["double"].error or ""), (
            f"a step depending on a failed one is skipped, naming it; got {result.steps['double']!r}"
        )
        assert result.steps["pair"].success and result.outputs.get("left") == 3, (
            f"a step independent of the failure must still run; got {result.steps['pair']!r}"
        )
        assert pipelines.calls.count("double") == 0, "a step depending on a failed one must not run"

    def test_second_pipeline_run_is_cached(self, executor: Any, pipelines: SamplePipelines, cache_store: Any,
                                           artifact_store: Any) -> None:
        stores = {"cache_store": cache_store, "artifact_store": artifact_store}
        first = self.run_pipeline(executor, pipelines.linear(), pipelines.context(seed=2), **stores)
        assert first.success, f"the first run failed: {_failures(first)}"
        assert first.outputs.get("tripled") == 12, f"first run: tripled = {first.outputs.get('tripled')!r}, expected 12"
        second = self.run_pipeline(executor, pipelines.linear(), pipelines.context(seed=2), **stores)
        assert second.status is ExecutionStatus.CACHED and all(r.cached for r in second.steps.values()), (
            "running the same pipeline again with the same stores must be fully cached (status CACHED); got status "
            f"{second.status}, cached: {[(n, r.cached) for n, r in second.steps.items()]}"
        )
        assert second.outputs.get("tripled") == 12, (
            f"a cached run must still give the outputs (tripled = 12); got {second.outputs.get('tripled')!r}"
        )
        assert pipelines.calls.count() == 3, f"the cached run called steps again: {pipelines.calls.names()}"
        changed = self.run_pipeline(executor, pipelines.linear(), pipelines.context(seed=3), **stores)
        assert changed.outputs.get("tripled") == 18 and not any(r.cached for r in changed.steps.values()), (
            "a new seed must re-run every step (tripled = 18); got tripled = "
            f"{changed.outputs.get('tripled')!r}, cached: {[(n, r.cached) for n, r in changed.steps.items()]}"
        )

    def test_pipeline_with_group_and_conditions(self, executor: Any, pipelines: SamplePipelines) -> None:
        grouped = self.run_pipeline(executor, pipelines.grouped(), pipelines.context())
        assert grouped.success, f"the pipeline with a step group failed: {_failures(grouped)}"
        assert grouped.outputs.get("tripled") == 42, f"grouped pipeline: tripled = {grouped.outputs.get('tripled')!r}, expected 42"
        conditional = self.run_pipeline(executor, pipelines.conditional(), pipelines.context())
        assert conditional.success, f"the pipeline with conditions failed: {_failures(conditional)}"
        assert conditional.outputs.get("deployment") == "deployed", (
            f"a true condition must let 'deploy' run; deployment = {conditional.outputs.get('deployment')!r}"
        )
        assert conditional.steps["returns_none"].skipped, "a false condition must skip 'returns_none'"
        low = self.run_pipeline(executor, pipelines.conditional(), pipelines.context(quality=0.2))
        assert low.steps["deploy"].skipped and "deployment" not in low.outputs, (
            f"with quality 0.2 the condition is false: 'deploy' must be skipped and produce nothing; got {low.steps['deploy']!r}"
        )

    def test_observer_hooks_see_every_step(self, executor: Any, pipelines: SamplePipelines, tmp_path: Path) -> None:
        project = KitProject(tmp_path / "hooks-project")
        hooks = project.registry().hook
        result = self.run_pipeline(executor, pipelines.with_failure(), pipelines.context(), hooks=hooks)
        seen = sorted(project.recorder.steps())
        assert seen == sorted(result.steps) == ["boom", "double", "pair", "source"], (
            f"on_step_end must be called once per step (ran, failed or skipped); hooks saw {seen}, the run reported "
            f"{sorted(result.steps)}"
        )

    # -- through stacks.toml ------------------------------------------------------------------------
    def test_pipeline_runs_through_a_stack_naming_the_flavor(
        self, executor: Any, flavor_options: dict[str, Any], stack_stores: dict[str, Any], pipelines: SamplePipelines,
        tmp_path: Path,
    ) -> None:
        if self.flavor is None:
            pytest.skip('set `flavor = "<your flavor>"` on the test class to run a pipeline through stacks.toml')
        project = KitProject(tmp_path / "stack-project", plugins=author_plugin(self.plugin))
        registry = project.registry()
        assert self.flavor in registry.flavors["executor"], (
            f"no installed plugin registers executor flavor {self.flavor!r}: `pip install -e` your package "
            "(its [project.entry-points.\"flowyml.plugins\"] must point at your plugin module), "
            "or set `plugin = \"yourpackage.plugin\"` on the test class"
        )
        project.add_stack("kit", self.flavor, flavor_options, **stack_stores)
        stack = project.resolve("kit")
        try:
            assert isinstance(stack.executor, type(executor)), (
                f"stacks.toml flavor {self.flavor!r} built a {type(stack.executor).__name__}, "
                f"but the `executor` fixture is a {type(executor).__name__}"
            )
            first = project.run(pipelines.diamond(), stack, context=pipelines.context())
            assert first.success, f"the run through stacks.toml failed: {_failures(first)}"
            assert first.outputs.get("total") == 5, f"total = {first.outputs.get('total')!r}, expected 5"
            for result in first.steps.values():
                for uri in result.artifact_uris.values():
                    assert stack.artifact_store.exists(uri), f"step {result.step_name!r} reported artifact {uri}, which does not exist"
            assert stack.artifact_store.load(first.steps["add"].artifact_uri) == 5, (
                "the stack's artifact store must hold the output of step 'add' (5)"
            )
            kinds = project.recorder.kinds()
            assert kinds[0] == "run_start" and kinds[-1] == "run_end" and kinds.count("step_end") == 4, (
                f"observer hooks must see run_start, one step_end per step (4), then run_end; they saw {kinds}"
            )
            second = project.run(pipelines.diamond(), stack, context=pipelines.context())
            assert second.status is ExecutionStatus.CACHED, (
                f"the second run through the stack must be fully cached; cached: {[(r.step_name, r.cached) for r in second.steps.values()]}"
            )
            assert pipelines.calls.count() == 4, f"the cached run called steps again: {pipelines.calls.names()}"
        finally:
            close_component(stack.executor)
