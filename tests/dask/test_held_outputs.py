"""Large outputs stay on the Dask workers: units pass futures, the client fetches a value only when it is read."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from flowyml_core.context import Context
from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import StepGroup
from flowyml_core.results import ExecutionStatus
from flowyml_core.step import Step
from flowyml_core.testing.samples import CallLog, make_pipeline, make_step
from flowyml_dask.config import DaskExecutorConfig
from flowyml_dask.executor import DaskExecutor
from flowyml_dask.held import HeldOutputs, HeldValue
from flowyml_dask.worker import INLINE_LIMIT, inline_size

from tests.dask import steps as st

MB = 1_000_000


def run(executor, pipeline, calls, **kwargs):
    context = Context(calls=calls, **kwargs.pop("context", {}))
    return executor.run_pipeline(pipeline, f"run-{uuid.uuid4().hex[:8]}", context=context, **kwargs)


@pytest.fixture
def calls(tmp_path: Path) -> CallLog:
    return CallLog(tmp_path / "calls.jsonl")


def make_array(seed: int) -> np.ndarray:
    return np.full(2 * MB // 8, float(seed))  # 2 MB: far over the inline limit


def split_arrays(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return array[: len(array) // 2] * 2, array[len(array) // 2:] * 3


def as_dict(array: np.ndarray) -> dict:
    return {"head": array[:10].copy(), "big": array + 1}


def total(left: np.ndarray, right: np.ndarray) -> float:
    return float(left.sum() + right.sum())


def big_sum(big: np.ndarray) -> float:
    return float(big.sum())


def test_a_large_output_goes_from_worker_to_worker_and_reaches_the_client_only_when_read(dask_executor, calls) -> None:
    pipeline = make_pipeline("held", [
        make_step(st.make_tracked, outputs=["blob"], cache=False),
        make_step(st.measure, inputs=["blob"], outputs=["size"], cache=False),
    ])
    result = run(dask_executor, pipeline, calls)
    assert result.success, result.failed_steps
    assert result.outputs["size"] == MB  # small: it came back with the results
    here = os.getpid()
    made_in = calls.records("make_tracked")[0]["pid"]
    assert made_in != here
    assert here not in {r["pid"] for r in calls.records("unpickled")}, "the client received the large value"
    assert isinstance(result.outputs, HeldOutputs) and result.outputs.held() == ["blob"]
    held = result.steps["make_tracked"].output
    assert isinstance(held, HeldValue) and "held on a Dask worker" in repr(held) and "Tracked" in repr(held)
    assert "blob" in result.outputs and "nothing" not in result.outputs and len(result.outputs) == 2
    assert here not in {r["pid"] for r in calls.records("unpickled")}, "membership or len fetched the value"
    # Reading it is asking for it: now (and only now) the bytes come here.
    blob = result.outputs["blob"]
    assert isinstance(blob, st.Tracked) and len(blob.payload) == MB
    assert here in {r["pid"] for r in calls.records("unpickled")}
    assert result.outputs.held() == []


def test_held_outputs_are_split_on_the_worker_and_read_back_equal(dask_executor, calls) -> None:
    pipeline = make_pipeline("split", [
        Step(func=make_array, name="make", outputs=["array"], cache=False),
        Step(func=split_arrays, name="split", inputs=["array"], outputs=["left", "right"], cache=False),
        Step(func=total, name="total", inputs=["left", "right"], outputs=["sum"], cache=False),
        Step(func=as_dict, name="as_dict", inputs=["array"], outputs=["head", "big"], cache=False),
        Step(func=big_sum, name="big_sum", inputs=["big"], outputs=["big_total"], cache=False),
    ])
    result = run(dask_executor, pipeline, calls, context={"seed": 3})
    assert result.success, result.failed_steps
    n = 2 * MB // 8
    assert result.outputs["sum"] == 3.0 * 2 * (n // 2) + 3.0 * 3 * (n - n // 2)
    assert result.outputs["big_total"] == 4.0 * n
    assert sorted(result.outputs.held()) == ["array", "big", "head", "left", "right"]
    fetched = result.outputs.fetch_all()
    assert np.array_equal(fetched["left"], np.full(n // 2, 6.0)) and fetched["head"].shape == (10,)
    # The whole output of a step, from its HeldValue.
    whole = result.steps["as_dict"].output.result()
    assert set(whole) == {"head", "big"} and whole["head"].shape == (10,)


def test_caching_and_artifacts_are_written_by_the_worker_that_holds_the_output(dask_executor, calls, tmp_path) -> None:
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig

    # Pickles are signed: workers started under different test environments have different per-user
    # keys, as different machines would, so the stores name a shared key (as a real cluster's stack does).
    key = "shared-test-signing-key"
    stores = {
        "cache_store": LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache"), signing_key=key)),
        "artifact_store": LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts"), signing_key=key)),
    }
    pipeline = make_pipeline("stored", [
        make_step(st.make_tracked, outputs=["blob"]),
        make_step(st.measure, inputs=["blob"], outputs=["size"]),
    ])
    first = run(dask_executor, pipeline, calls, **stores)
    assert first.success, first.failed_steps
    uri = first.steps["make_tracked"].artifact_uri
    assert uri and stores["artifact_store"].exists(uri)
    assert os.getpid() not in {r["pid"] for r in calls.records("unpickled")}
    second = run(dask_executor, pipeline, calls, **stores)
    assert second.status is ExecutionStatus.CACHED, [(r.step_name, r.cached, r.error) for r in second.steps.values()]
    assert calls.count("make_tracked") == 1 and second.outputs["size"] == MB
    assert isinstance(second.steps["make_tracked"].output, HeldValue)  # a cache hit stays on its worker too
    assert second.outputs["blob"].payload == first.outputs["blob"].payload


def test_a_condition_and_a_group_see_held_assets(dask_executor, calls) -> None:
    def positive(array) -> bool:
        return bool(array[0] > 0)

    make = Step(func=make_array, name="make", outputs=["array"], cache=False)
    grouped = [
        Step(func=split_arrays, name="g_split", inputs=["array"], outputs=["left", "right"], cache=False,
             execution_group="g"),
        Step(func=total, name="g_total", inputs=["left", "right"], outputs=["sum"], cache=False, execution_group="g"),
    ]
    gated = Step(func=big_sum, name="gated", inputs=["left"], outputs=["gated_sum"], cache=False, condition=positive)
    result = run(dask_executor, make_pipeline("cond-group", [make, *grouped, gated]), calls, context={"seed": 1})
    assert result.success, result.failed_steps
    n = 2 * MB // 8
    assert result.outputs["gated_sum"] == 2.0 * (n // 2)
    assert result.outputs["sum"] == 2.0 * (n // 2) + 3.0 * (n - n // 2)
    skipped = run(dask_executor, make_pipeline("cond-off", [make, *grouped, gated]), calls, context={"seed": -1})
    assert skipped.steps["gated"].skipped and "gated_sum" not in skipped.outputs


def test_reading_after_the_executor_closed_says_why(dask_cluster, calls) -> None:
    executor = DaskExecutor(DaskExecutorConfig(address=dask_cluster.scheduler_address))
    result = run(executor, make_pipeline("closed", [Step(func=make_array, name="make", outputs=["array"], cache=False)]),
                 calls, context={"seed": 2})
    assert result.success and result.outputs.held() == ["array"]
    executor.close()
    with pytest.raises(FlowymlError, match="cannot fetch 'array' from the Dask cluster.*read them before closing"):
        result.outputs["array"]


def test_execute_step_returns_the_value_itself(dask_executor, calls) -> None:
    result = dask_executor.execute_step(Step(func=make_array, name="make", cache=False), {}, {"seed": 5})
    assert result.success and isinstance(result.output, np.ndarray) and result.output[0] == 5.0
    group = StepGroup("g", [Step(func=make_array, name="make", outputs=["array"], cache=False)], ["make"])
    [grouped] = dask_executor.execute_step_group(group, {}, context=Context(seed=6))
    assert isinstance(grouped.output, np.ndarray) and grouped.output[0] == 6.0


def test_only_small_plain_data_comes_back_inline() -> None:
    assert inline_size(None, INLINE_LIMIT) is not None and inline_size(3.5, INLINE_LIMIT) is not None
    assert inline_size({"a": [1, 2, (3, "x")], "b": b"y" * 100}, INLINE_LIMIT) is not None
    assert inline_size(np.zeros(100), INLINE_LIMIT) == 800 and inline_size(np.float32(1), INLINE_LIMIT) == 4
    assert inline_size(b"z" * (INLINE_LIMIT + 1), INLINE_LIMIT) is None
    assert inline_size(np.zeros(INLINE_LIMIT), INLINE_LIMIT) is None
    assert inline_size(list(range(2000)), INLINE_LIMIT) is None  # too many items to inspect
    assert inline_size([b"q" * 40_000, b"q" * 40_000], INLINE_LIMIT) is None  # small items, large sum
    assert inline_size(np.array([object()]), INLINE_LIMIT) is None  # objects inside: any size
    assert inline_size(st.Tracked(CallLog("/dev/null"), b""), INLINE_LIMIT) is None  # the user's class: any size
