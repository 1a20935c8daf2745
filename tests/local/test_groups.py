"""Step groups in the local executor: the seed's mapping rules, one thread, rest skipped after a failure."""

from __future__ import annotations

from typing import Any

from flowyml_core import Context, Pipeline, step
from flowyml_core.grouping import StepGroup
from flowyml_local.executor import LocalExecutor

from .conftest import MemoryCacheStore


class RecordingExecutor(LocalExecutor):
    """The local executor, noting what each step was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def execute_step(self, step, inputs, context_params, **kwargs):  # type: ignore[override]
        self.calls.append((step.name, dict(inputs), dict(context_params)))
        return super().execute_step(step, inputs, context_params, **kwargs)


def _group(*steps: Any) -> StepGroup:
    return StepGroup("g", list(steps), [s.name for s in steps])


def test_inputs_mapped_by_name_then_by_position() -> None:
    @step(inputs=["raw"], outputs=["clean"], execution_group="g")
    def by_position(data: list[int]) -> list[int]:  # 'raw' lands on the first parameter
        return [x for x in data if x > 0]

    @step(inputs=["scale", "clean"], outputs=["scaled"], execution_group="g")
    def by_name(clean: list[int], scale: int) -> list[int]:  # names win over positions
        return [x * scale for x in clean]

    results = LocalExecutor().execute_step_group(_group(by_position, by_name), {"raw": [-1, 2, 3], "scale": 10})
    assert [r.output for r in results] == [[2, 3], [20, 30]]


def test_parameters_auto_mapped_from_earlier_outputs() -> None:
    @step(outputs=["vocab"], execution_group="g")
    def build_vocab() -> list[str]:
        return ["a", "b"]

    @step(outputs=["size"], execution_group="g")
    def count(vocab: list[str]) -> int:  # no declared input: the parameter's name finds it
        return len(vocab)

    results = LocalExecutor().execute_step_group(_group(build_vocab, count), {})
    assert [r.output for r in results] == [["a", "b"], 2]


def test_context_injected_per_step() -> None:
    @step(outputs=["a"], execution_group="g")
    def first(lr: float) -> float:
        return lr

    @step(inputs=["a"], outputs=["b"], execution_group="g")
    def second(a: float, epochs: int) -> float:
        return a * epochs

    executor = RecordingExecutor()
    results = executor.execute_step_group(_group(first, second), {}, context=Context(lr=0.5, epochs=4, other=1))
    assert [r.output for r in results] == [0.5, 2.0]
    assert [(name, params) for name, _, params in executor.calls] == [("first", {"lr": 0.5}), ("second", {"epochs": 4})]


def test_only_received_parameters_enter_a_grouped_steps_cache_key() -> None:
    ran: list[str] = []

    @step(outputs=["a"], execution_group="g")
    def first(lr: float) -> float:
        ran.append("first")
        return lr

    @step(inputs=["a"], outputs=["b"], execution_group="g")
    def second(a: float, epochs: int) -> float:
        ran.append("second")
        return a * epochs

    cache = MemoryCacheStore()
    group = _group(first, second)
    LocalExecutor().execute_step_group(group, {}, context=Context(lr=0.5, epochs=4), cache_store=cache)
    ran.clear()
    results = LocalExecutor().execute_step_group(group, {}, context=Context(lr=0.5, epochs=5), cache_store=cache)
    assert [r.cached for r in results] == [True, False]
    assert ran == ["second"] and results[1].output == 2.5


def test_tuple_and_dict_outputs_fan_out_to_declared_names() -> None:
    @step(outputs=["train", "test"], execution_group="g")
    def split_tuple() -> tuple[list[int], list[int]]:
        return [1, 2, 3], [4]

    @step(outputs=["mean", "count"], execution_group="g")
    def stats_dict(train: list[int]) -> dict[str, float]:
        return {"count": len(train), "mean": sum(train) / len(train)}  # by key, in any order

    @step(inputs=["test", "mean", "count"], outputs=["summary"], execution_group="g")
    def summary(test: list[int], mean: float, count: int) -> str:
        return f"{len(test)} test rows, train mean {mean} over {count}"

    results = LocalExecutor().execute_step_group(_group(split_tuple, stats_dict, summary), {})
    assert all(r.success for r in results)
    assert results[-1].output == "1 test rows, train mean 2.0 over 3"


def test_rest_of_group_skipped_after_a_failure() -> None:
    ran: list[str] = []

    @step(outputs=["a"], execution_group="g")
    def ok() -> int:
        ran.append("ok")
        return 1

    @step(inputs=["a"], outputs=["b"], execution_group="g")
    def boom(a: int) -> int:
        ran.append("boom")
        raise RuntimeError("exploded")

    @step(outputs=["c"], execution_group="g")
    def independent() -> int:  # even an independent member is not run: the group's environment failed
        ran.append("independent")
        return 3

    results = LocalExecutor().execute_step_group(_group(ok, boom, independent), {})
    assert ran == ["ok", "boom"]
    assert [(r.step_name, r.success, r.skipped) for r in results] == [
        ("ok", True, False),
        ("boom", False, False),
        ("independent", True, True),
    ]
    assert "RuntimeError('exploded')" in results[1].error
    assert results[2].error == "skipped: step 'boom' failed earlier in group 'g'"


def test_groups_in_a_pipeline_with_downstream_of_a_failed_group() -> None:
    @step(outputs=["x"])
    def source() -> int:
        return 2

    @step(inputs=["x"], outputs=["y"], execution_group="train")
    def fit(x: int) -> int:
        return x + 1

    @step(inputs=["y"], outputs=["z"], execution_group="train")
    def check(y: int) -> int:
        if y > 2:
            raise ValueError(f"y={y} is too large")
        return y

    @step(inputs=["z"], outputs=["report"])
    def publish(z: int) -> str:
        return str(z)

    result = LocalExecutor().run_pipeline(Pipeline("p", [source, fit, check, publish]), "run1")
    assert not result.success
    assert list(result.steps) == ["source", "fit", "check", "publish"]
    assert result.steps["fit"].output == 3
    assert not result.steps["check"].success
    assert result.steps["publish"].skipped
    assert result.steps["publish"].error == "not run: upstream step 'check' failed"
    assert "report" not in result.outputs
