"""Whole pipelines on the local executor: order, failures, concurrency and per-thread logs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from flowyml_core import Context, Pipeline, step
from flowyml_core.errors import PipelineDefinitionError
from flowyml_core.step import Step
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig


def _diamond_pipeline() -> Pipeline:
    """Fan-out, fan-in, a group, a condition that skips and a retried step."""
    flaky_calls: list[int] = []

    @step(outputs=["numbers"])
    def source(n: int) -> list[int]:
        return list(range(n))

    @step(inputs=["numbers"], outputs=["evens"])
    def evens(numbers: list[int]) -> list[int]:
        time.sleep(0.02)
        return [x for x in numbers if x % 2 == 0]

    @step(inputs=["numbers"], outputs=["odds"])
    def odds(numbers: list[int]) -> list[int]:
        time.sleep(0.01)
        return [x for x in numbers if x % 2]

    @step(inputs=["numbers"], outputs=["total", "largest"], execution_group="stats")
    def totals(numbers: list[int]) -> tuple[int, int]:
        return sum(numbers), max(numbers)

    @step(inputs=["total"], outputs=["mean"], execution_group="stats")
    def mean(total: int, n: int) -> float:
        return total / n

    @step(inputs=["evens", "odds"], outputs=["pairs"], retry=1, retry_delay=0)
    def pair(evens: list[int], odds: list[int]) -> list[tuple[int, int]]:
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise ConnectionError("first call fails")
        return list(zip(evens, odds))

    @step(inputs=["pairs"], outputs=["never"], condition=lambda largest: largest > 100)
    def only_if_large(pairs: list[Any]) -> int:
        return len(pairs)

    @step(inputs=["pairs", "mean"], outputs=["report"])
    def report(pairs: list[Any], mean: float) -> str:
        print(f"{len(pairs)} pairs, mean {mean}")
        return f"{len(pairs)} pairs, mean {mean}"

    return Pipeline("diamond", [source, evens, odds, totals, mean, pair, only_if_large, report])


def _summary(result: Any) -> list[tuple[Any, ...]]:
    return [
        (name, r.success, r.cached, r.skipped, r.retries, r.output, r.error, r.logs)
        for name, r in result.steps.items()
    ]


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_results_identical_to_sequential(workers: int) -> None:
    sequential = LocalExecutor().run_pipeline(_diamond_pipeline(), "r", context=Context(n=10))
    concurrent = LocalExecutor(LocalExecutorConfig(max_workers=workers)).run_pipeline(
        _diamond_pipeline(), "r", context=Context(n=10)
    )
    assert sequential.success and concurrent.success
    assert _summary(concurrent) == _summary(sequential)
    assert concurrent.outputs == sequential.outputs
    assert list(concurrent.steps) == ["source", "evens", "odds", "totals", "mean", "pair", "only_if_large", "report"]
    assert sequential.steps["pair"].retries == 1
    assert sequential.steps["only_if_large"].skipped
    assert sequential.outputs["report"] == "5 pairs, mean 4.5"


def test_independent_units_really_run_at_the_same_time_and_logs_stay_per_step() -> None:
    both_running = threading.Barrier(2, timeout=5)

    def talker(tag: str) -> Step:
        def talk() -> str:
            for i in range(50):
                print(f"{tag} line {i}")
                if i == 10:
                    both_running.wait()  # raises BrokenBarrierError unless the other step runs too
            return tag

        return Step(func=talk, name=f"talk_{tag}", outputs=(tag,))

    pipeline = Pipeline("talkers", [talker("left"), talker("right")])
    result = LocalExecutor(LocalExecutorConfig(max_workers=2)).run_pipeline(pipeline, "run-logs")
    assert result.success, [r.error for r in result.steps.values()]
    for tag in ("left", "right"):
        logs = result.steps[f"talk_{tag}"].logs
        assert logs == "".join(f"{tag} line {i}\n" for i in range(50))


def test_logs_from_the_runner_thread_are_not_captured(capsys: pytest.CaptureFixture[str]) -> None:
    @step(outputs=["x"])
    def noisy() -> int:
        print("inside the step")
        return 1

    result = LocalExecutor().run_pipeline(Pipeline("p", [noisy]), "r")
    print("outside the step")
    assert result.steps["noisy"].logs == "inside the step\n"
    out = capsys.readouterr().out
    assert "outside the step" in out and "inside the step" not in out


def test_downstream_of_a_failed_step_is_not_run_but_other_branches_are() -> None:
    ran: list[str] = []

    @step(outputs=["a"])
    def broken() -> int:
        raise KeyError("column 'age'")

    @step(inputs=["a"], outputs=["b"])
    def after_broken(a: int) -> int:
        ran.append("after_broken")
        return a

    @step(inputs=["b"], outputs=["c"])
    def two_after(b: int) -> int:
        ran.append("two_after")
        return b

    @step(outputs=["d"])
    def unrelated() -> int:
        ran.append("unrelated")
        return 4

    for workers in (1, 2):
        ran.clear()
        pipeline = Pipeline("p", [broken, after_broken, two_after, unrelated])
        result = LocalExecutor(LocalExecutorConfig(max_workers=workers)).run_pipeline(pipeline, "r")
        assert not result.success
        assert ran == ["unrelated"]
        assert [r.step_name for r in result.failed_steps] == ["broken"]
        assert result.steps["after_broken"].skipped and result.steps["two_after"].skipped
        assert result.steps["two_after"].error == "not run: upstream step 'broken' failed"
        assert result.outputs == {"d": 4}


def test_steps_after_a_skipped_step_are_skipped() -> None:
    @step(outputs=["a"], condition=lambda go: go)
    def maybe(go: bool) -> int:
        return 1

    @step(inputs=["a"], outputs=["b"])
    def needs_a(a: int) -> int:
        return a

    result = LocalExecutor().run_pipeline(Pipeline("p", [maybe, needs_a]), "r", context=Context(go=False))
    assert result.success
    assert result.steps["maybe"].skipped and result.steps["needs_a"].skipped
    assert result.steps["needs_a"].error == "skipped: upstream step 'maybe' was skipped"


def test_on_step_end_hook_sees_every_step() -> None:
    seen: list[str] = []

    class Hooks:
        class on_step_end:  # the minimal shape PipelineWalker uses from pluggy's hook relay
            @staticmethod
            def get_hookimpls() -> list[int]:
                return [1]

            def __call__(self, run: Any, result: Any) -> None:
                seen.append(result.step_name)

        on_step_end = on_step_end()

    @step(outputs=["a"])
    def one() -> int:
        return 1

    @step(inputs=["a"])
    def two(a: int) -> None:
        return None

    LocalExecutor().run_pipeline(Pipeline("p", [one, two]), "r", hooks=Hooks())
    assert seen == ["one", "two"]


# -- pipeline definition errors name the steps -------------------------------------------------
def _s(name: str, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> Step:
    return Step(func=lambda **kw: None, name=name, inputs=inputs, outputs=outputs)


def test_cycle_is_reported_with_its_path() -> None:
    pipeline = Pipeline("p", [_s("load", (), ("raw",)), _s("a", ("raw", "c_out"), ("a_out",)), _s("b", ("a_out",), ("b_out",)), _s("c", ("b_out",), ("c_out",))])
    with pytest.raises(PipelineDefinitionError) as info:
        pipeline.build()
    message = str(info.value)
    assert "cycle" in message
    path = message.split(": ")[-1]
    assert path in ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c")


def test_unknown_input_names_the_step_and_the_asset() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"step 'train' needs input 'features' but no step produces it \(assets produced: rows\)"):
        Pipeline("p", [_s("load", (), ("rows",)), _s("train", ("features",))]).build()


def test_two_producers_of_one_asset_name_both_steps() -> None:
    with pytest.raises(PipelineDefinitionError, match="asset 'model' is produced by both step 'fit_a' and step 'fit_b'"):
        Pipeline("p", [_s("fit_a", (), ("model",)), _s("fit_b", (), ("model",))]).build()


def test_condition_may_test_a_run_parameter_the_step_does_not_take() -> None:
    ran: list[str] = []

    @step(outputs=["model"])
    def fit() -> str:
        return "m"

    @step(inputs=["model"], outputs=["url"], condition=lambda deploy: deploy)
    def publish(model: str) -> str:
        ran.append("publish")
        return f"https://models/{model}"

    @step(inputs=["model"], outputs=["card"], condition=lambda deploy: deploy, execution_group="docs")
    def model_card(model: str) -> str:
        ran.append("model_card")
        return f"card of {model}"

    pipeline = Pipeline("p", [fit, publish, model_card])
    off = LocalExecutor().run_pipeline(pipeline, "r", context=Context(deploy=False))
    assert off.success and off.steps["publish"].skipped and off.steps["model_card"].skipped and ran == []
    on = LocalExecutor().run_pipeline(pipeline, "r", context=Context(deploy=True))
    assert on.outputs["url"] == "https://models/m" and on.outputs["card"] == "card of m"
    assert ran == ["publish", "model_card"]
