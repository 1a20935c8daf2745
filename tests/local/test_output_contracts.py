"""Output contracts (issue 13, item 2): a step whose return value does not match its declared
outputs fails as that step, naming the declared and the received outputs; nothing downstream
runs on a guess, and nothing is cached or stored. Run through ``Pipeline.run`` on the local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowyml_core import ExecutionStatus, Pipeline, Step, step
from flowyml_core.errors import OutputContractError
from flowyml_core.execution import asset_fingerprints, split_outputs
from flowyml_core.grouping import StepGroup
from flowyml_local.executor import LocalExecutor


def _pipeline(returned: Any, name: str, group: str | None = None) -> Pipeline:
    @step(outputs=["model", "threshold"], name=f"train_{name}", execution_group=group)
    def train():
        return returned

    @step(inputs=["model", "threshold"], outputs=["decision"], name=f"decide_{name}", execution_group=group)
    def decide(model, threshold=0.5):  # a default that would hide a missing input
        return f"{model} at {threshold}"

    return Pipeline(f"contract-{name}", [train, decide])


@pytest.mark.parametrize(
    ("name", "returned", "received"),
    [
        ("three", ("m", 0.9, "extra"), "returned a tuple of 3 items"),
        ("one", ["m"], "returned a list of 1 item;"),
        ("missing", {"model": "m"}, "returned a dict with keys ['model'] (missing 'threshold')"),
        ("extra", {"model": "m", "threshold": 0.9, "seed": 1}, "(unexpected 'seed')"),
        ("both", {"model": "m", "thresh": 0.9}, "(missing 'threshold') (unexpected 'thresh')"),
        ("scalar", 0.9, "returned a float;"),
        ("none", None, "returned None;"),
    ],
)
@pytest.mark.parametrize("group", [None, "g"])
def test_a_return_value_that_does_not_match_the_outputs_fails_that_step(
    project: Path, name: str, returned: Any, received: str, group: str | None
) -> None:
    pipeline = _pipeline(returned, name, group)
    for _ in range(2):  # the failure is not cached
        result = pipeline.run()
        assert result.status is ExecutionStatus.FAILED
        train, decide = result.steps[f"train_{name}"], result.steps[f"decide_{name}"]
        assert not train.success and not train.cached
        assert train.error.startswith(f"step 'train_{name}' declares 2 outputs ['model', 'threshold'] but ")
        assert received in train.error, train.error
        assert decide.skipped and f"'train_{name}'" in decide.error
        assert train.artifact_uris == {} and result.outputs == {}
    artifacts = project / ".flowyml" / "artifacts"
    stored = [p for p in artifacts.rglob("*") if p.is_file()]
    assert stored == []  # nothing was materialized (the cache and the run history are elsewhere under .flowyml)


@pytest.mark.parametrize("returned", [("m", 0.9), ["m", 0.9], {"threshold": 0.9, "model": "m"}])
def test_matching_return_values_fan_out_as_before(project: Path, returned: Any) -> None:
    result = _pipeline(returned, "ok").run()
    assert result.status is ExecutionStatus.COMPLETED
    assert result.outputs == {"model": "m", "threshold": 0.9, "decision": "m at 0.9"}


def test_one_declared_output_takes_any_value_and_none_declared_stores_it_as_output(project: Path) -> None:
    @step(outputs=["pair"])
    def pair():
        return (1, 2, 3)

    @step
    def anything():
        return {"free": "form"}

    result = Pipeline("loose", [pair, anything]).run()
    assert result.status is ExecutionStatus.COMPLETED and result.outputs == {"pair": (1, 2, 3)}
    assert list(result.steps["anything"].artifact_uris) == ["output"]


def test_split_outputs_gives_every_declared_output_or_raises() -> None:
    """The invariant the remote layer relies on: after a successful step, the assets are exactly
    the declared outputs, so their fingerprints can be derived without the value."""
    two = Step(func=lambda: None, name="two", outputs=["a", "b"])
    assert split_outputs(two, {"b": 2, "a": 1}) == {"a": 1, "b": 2}
    assert list(split_outputs(two, (1, 2))) == ["a", "b"]
    assert split_outputs(Step(func=lambda: None, name="none"), 5) == {}
    with pytest.raises(OutputContractError, match=r"declares 2 outputs \['a', 'b'\] but returned a tuple of 3"):
        split_outputs(two, (1, 2, 3))
    fps = asset_fingerprints(two, "f" * 64, dict.fromkeys(two.outputs))
    assert set(fps) == {"a", "b"} and fps["a"] != fps["b"]


def test_a_foreign_executor_that_skips_the_check_still_fails_the_step_not_the_run(project: Path) -> None:
    """An executor that returns its own result (not run_step's) cannot make run() raise."""
    from flowyml_core.results import ExecutionResult

    class Careless(LocalExecutor):
        def execute_step(self, step: Any, inputs: Any, context_params: Any, **kwargs: Any) -> ExecutionResult:
            return ExecutionResult(step_name=step.name, success=True, output=step.func(**inputs))

    pipeline = _pipeline(("m", 0.9, "extra"), "careless")
    result = Careless().run_pipeline(pipeline, "r1")
    assert result.status is ExecutionStatus.FAILED
    assert "declares 2 outputs" in result.steps["train_careless"].error
    assert result.steps["decide_careless"].skipped
    group = StepGroup("g", list(pipeline.steps), [s.name for s in pipeline.steps])
    results = Careless().execute_step_group(group, {})
    assert not results[0].success and "returned a tuple of 3 items" in results[0].error
    assert results[1].skipped


def test_a_cache_entry_that_does_not_match_the_outputs_is_a_miss(tmp_path: Path) -> None:
    """An entry written before contracts were checked (same key) must not reach consumers."""
    from flowyml_core.execution import run_step
    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

    cache = LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))

    @step(outputs=["model", "threshold"])
    def fit():
        return "m", 0.9

    cache.set_value(fit.get_cache_key({}, {}), ("m", 0.9, "stale"), fit.name, fit.get_code_hash(), fingerprint="f" * 64)
    result = run_step(fit, {}, {}, cache_store=cache)
    assert result.success and not result.cached and result.output == ("m", 0.9)
    assert run_step(fit, {}, {}, cache_store=cache).cached  # the entry it wrote instead
