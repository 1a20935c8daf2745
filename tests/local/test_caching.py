"""Cache hits and misses through the real local cache and artifact stores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowyml_core import Context, Pipeline, step
from flowyml_core.results import ExecutionStatus
from flowyml_core.step import Step
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig


@pytest.fixture
def cache(tmp_path: Path) -> LocalCacheStore:
    return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []

    def __getstate__(self) -> dict[str, Any]:
        # Steps read this spy through their closure, so its value is in their cache keys;
        # what it recorded is not data they compute from.
        return {}

    def __call__(self, name: str) -> None:
        self.names.append(name)


def _run(pipeline: Pipeline, cache: Any, artifacts: Any = None, run_id: str = "r", workers: int = 1, **params: Any):
    executor = LocalExecutor(LocalExecutorConfig(max_workers=workers))
    result = executor.run_pipeline(pipeline, run_id, context=Context(**params), cache_store=cache, artifact_store=artifacts)
    assert result.success, [r.error for r in result.failed_steps]
    return result


def _pipeline(calls: Calls) -> Pipeline:
    @step(outputs=["rows"])
    def load(n: int) -> list[int]:
        calls("load")
        return list(range(n))

    @step(inputs=["rows"], outputs=["model"])
    def fit(rows: list[int], lr: float) -> dict:
        calls("fit")
        return {"w": sum(rows) * lr}

    @step(inputs=["model"], outputs=["score"])
    def score(model: dict) -> float:
        calls("score")
        return model["w"] / 2

    return Pipeline("cached", [load, fit, score])


def test_second_run_is_fully_cached_with_identical_outputs(cache: LocalCacheStore, artifacts: LocalArtifactStore) -> None:
    calls = Calls()
    first = _run(_pipeline(calls), cache, artifacts, "r1", n=4, lr=0.5)
    assert calls.names == ["load", "fit", "score"] and first.status is ExecutionStatus.COMPLETED
    assert set(first.steps["fit"].artifact_uris) == {"model"}
    calls.names.clear()
    second = _run(_pipeline(calls), cache, artifacts, "r2", n=4, lr=0.5)
    assert calls.names == []
    assert second.status is ExecutionStatus.CACHED
    assert all(r.cached for r in second.steps.values())
    assert second.outputs == first.outputs == {"rows": [0, 1, 2, 3], "model": {"w": 3.0}, "score": 1.5}


def test_changing_a_parameter_reruns_only_the_steps_that_receive_it_and_downstream(cache: LocalCacheStore) -> None:
    calls = Calls()
    _run(_pipeline(calls), cache, n=4, lr=0.5)
    calls.names.clear()
    result = _run(_pipeline(calls), cache, n=4, lr=1.0)
    assert calls.names == ["fit", "score"]
    assert [r.cached for r in result.steps.values()] == [True, False, False]
    calls.names.clear()
    _run(_pipeline(calls), cache, n=4, lr=1.0, unrelated="x")  # a parameter no step takes
    assert calls.names == []


def test_changing_an_input_value_is_a_miss_and_same_value_a_hit(cache: LocalCacheStore) -> None:
    calls = Calls()
    _run(_pipeline(calls), cache, n=4, lr=0.5)
    calls.names.clear()
    _run(_pipeline(calls), cache, n=5, lr=0.5)  # load's parameter changes, so fit's input value changes
    assert calls.names == ["load", "fit", "score"]
    calls.names.clear()

    @step(outputs=["rows"])
    def load_same_rows(n: int) -> list[int]:  # different code and parameter value, same output value
        calls("load_same_rows")
        return list(range(4))

    original = _pipeline(calls)
    pipeline = Pipeline("cached", [Step(func=load_same_rows.func, name="load", outputs=("rows",)), *original.steps[1:]])
    result = _run(pipeline, cache, n=99, lr=0.5)
    assert calls.names == ["load_same_rows"]  # fit gets the same input value as in the first run: a hit
    assert [r.cached for r in result.steps.values()] == [False, True, True]


def test_changing_the_code_is_a_miss(cache: LocalCacheStore) -> None:
    def version_one(x: int) -> int:
        return x + 1

    one = Step(func=version_one, name="compute", outputs=("y",))
    assert LocalExecutor().execute_step(one, {}, {"x": 1}, cache_store=cache).output == 2
    again = LocalExecutor().execute_step(one, {}, {"x": 1}, cache_store=cache)
    assert again.cached and again.output == 2

    def version_one(x: int) -> int:  # noqa: F811 - same name, new body: an edit of the step
        return x + 100

    two = Step(func=version_one, name="compute", outputs=("y",))
    assert one.get_code_hash() != two.get_code_hash()
    edited = LocalExecutor().execute_step(two, {}, {"x": 1}, cache_store=cache)
    assert not edited.cached and edited.output == 101


def test_a_step_returning_none_is_cached(cache: LocalCacheStore) -> None:
    calls = Calls()

    @step
    def side_effect(target: str) -> None:
        calls("side_effect")

    first = LocalExecutor().run_pipeline(Pipeline("p", [side_effect]), "r1", context=Context(target="t"), cache_store=cache)
    second = LocalExecutor().run_pipeline(Pipeline("p", [side_effect]), "r2", context=Context(target="t"), cache_store=cache)
    assert calls.names == ["side_effect"]
    assert not first.steps["side_effect"].cached
    assert second.steps["side_effect"].cached and second.steps["side_effect"].output is None


def test_none_output_feeds_downstream_from_the_cache(cache: LocalCacheStore) -> None:
    calls = Calls()

    @step(outputs=["maybe"])
    def nothing() -> None:
        calls("nothing")

    @step(inputs=["maybe"], outputs=["label"])
    def describe(maybe: Any) -> str:
        calls("describe")
        return "none" if maybe is None else "some"

    for run in ("r1", "r2"):
        result = _run(Pipeline("p", [nothing, describe]), cache, run_id=run)
        assert result.outputs["label"] == "none"
    assert calls.names == ["nothing", "describe"]


def test_cache_false_always_runs(cache: LocalCacheStore) -> None:
    calls = Calls()

    @step(cache=False, outputs=["now"])
    def fresh() -> int:
        calls("fresh")
        return len(calls.names)

    for run in ("a", "b"):
        _run(Pipeline("p", [fresh]), cache, run_id=run)
    assert calls.names == ["fresh", "fresh"]
    assert cache.stats()["entries"] == 0


def test_failed_steps_are_not_cached(cache: LocalCacheStore) -> None:
    attempts = Calls()

    @step(outputs=["x"])
    def fails_once() -> int:
        attempts("x")
        if len(attempts.names) == 1:
            raise RuntimeError("transient")
        return 1

    pipeline = Pipeline("p", [fails_once])
    assert not LocalExecutor().run_pipeline(pipeline, "r1", cache_store=cache).success
    assert LocalExecutor().run_pipeline(pipeline, "r2", cache_store=cache).outputs == {"x": 1}
    assert LocalExecutor().run_pipeline(pipeline, "r3", cache_store=cache).steps["fails_once"].cached
    assert len(attempts.names) == 2


def test_downstream_keys_use_fingerprints_not_rehashing(cache: LocalCacheStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each output is fingerprinted once when produced; consumers never hash it again."""
    import sys

    import flowyml_core.execution as execution

    step_module = sys.modules["flowyml_core.step"]  # (flowyml_core.step is the decorator)

    big = bytes(1_000_000)
    hashed: list[int] = []
    real = execution.fingerprint

    def counting(value: Any) -> str:
        if value is big or (isinstance(value, bytes) and len(value) == len(big)):
            hashed.append(1)
        return real(value)

    monkeypatch.setattr(execution, "fingerprint", counting)
    monkeypatch.setattr(step_module, "fingerprint", counting)

    @step(outputs=["blob"])
    def produce() -> bytes:
        return bytes(1_000_000)  # not `big`: a value the step reads is in its own key (hashed once more)

    consumers = [Step(func=lambda blob: len(blob), name=f"use{i}", inputs=("blob",), outputs=(f"n{i}",)) for i in range(5)]
    result = _run(Pipeline("p", [produce, *consumers]), cache)
    assert result.outputs["n4"] == 1_000_000
    assert len(hashed) == 1


def test_cache_hits_identical_with_threads(cache: LocalCacheStore) -> None:
    calls = Calls()
    cold = _run(_pipeline(calls), cache, run_id="a", workers=2, n=3, lr=2.0)
    warm = _run(_pipeline(calls), cache, run_id="b", workers=2, n=3, lr=2.0)
    assert calls.names == ["load", "fit", "score"]
    assert warm.outputs == cold.outputs and warm.status is ExecutionStatus.CACHED


def test_a_cache_that_cannot_be_written_costs_a_rerun_not_the_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    cache = LocalCacheStore(LocalCacheStoreConfig(path=str(blocker)))

    @step(outputs=["x"])
    def compute() -> int:
        return 7

    with caplog.at_level(logging.WARNING, logger="flowyml.execution"):
        result = LocalExecutor().run_pipeline(Pipeline("p", [compute]), "r", cache_store=cache)
    assert result.success and result.outputs == {"x": 7}
    assert any("could not write cache entry" in r.getMessage() for r in caplog.records)


def test_a_failed_materialize_on_the_real_store_fails_the_step_and_is_not_cached(
    tmp_path: Path, cache: LocalCacheStore
) -> None:
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file where the artifact directory should be")
    artifacts = LocalArtifactStore(LocalArtifactStoreConfig(path=str(blocked)))
    calls = Calls()

    @step(outputs=["table"])
    def produce() -> dict:
        calls("produce")
        return {"rows": 3}

    @step(inputs=["table"], outputs=["n"])
    def count(table: dict) -> int:
        calls("count")
        return table["rows"]

    pipeline = Pipeline("p", [produce, count])
    result = LocalExecutor().run_pipeline(pipeline, "r1", cache_store=cache, artifact_store=artifacts)
    assert not result.success
    error = result.steps["produce"].error
    assert error.startswith("materializing output 'table' failed: ") and ("NotADirectoryError" in error or "FileExistsError" in error)
    assert result.steps["count"].skipped and calls.names == ["produce"]
    assert cache.stats()["entries"] == 0
