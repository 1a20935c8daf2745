"""One step through the local executor: condition → cache → retries → materialize → route → cache write."""

from __future__ import annotations

import threading
import time

import pytest

from flowyml_core import Context, Pipeline, step
from flowyml_core.components import Router
from flowyml_core.errors import StopExecution
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig

from .conftest import BrokenArtifactStore, MemoryCacheStore


def test_flaky_step_succeeds_on_third_attempt(executor: LocalExecutor) -> None:
    attempts = []

    @step(outputs="value", retry=2, retry_delay=0.001)
    def flaky() -> int:
        attempts.append(time.perf_counter())
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)} failed")
        return 42

    result = executor.execute_step(flaky, {}, {}, run_id="r")
    assert result.success, result.error
    assert result.output == 42
    assert result.retries == 2
    assert len(attempts) == 3
    # exponential backoff from retry_delay: 1 ms, then 2 ms
    assert attempts[2] - attempts[1] >= 0.002
    assert result.duration_seconds >= 0.003


def test_retries_exhausted_reports_last_error_with_traceback(executor: LocalExecutor) -> None:
    calls = []

    @step(retry=1, retry_delay=0)
    def always_fails() -> None:
        calls.append(1)
        raise ValueError(f"bad input #{len(calls)}")

    result = executor.execute_step(always_fails, {}, {})
    assert not result.success
    assert result.retries == 1
    assert len(calls) == 2
    assert "ValueError('bad input #2')" in result.error
    assert "Traceback" in result.error and "always_fails" in result.error


def test_stop_execution_is_not_retried(executor: LocalExecutor) -> None:
    calls = []

    @step(retry=3, retry_delay=0)
    def stops() -> None:
        calls.append(1)
        raise StopExecution("user asked")

    result = executor.execute_step(stops, {}, {})
    assert not result.success and "stopped" in result.error and "user asked" in result.error
    assert calls == [1]


def test_condition_false_skips_without_calling(executor: LocalExecutor) -> None:
    called = []

    @step(condition=lambda enabled: enabled)
    def optional(enabled: bool) -> str:
        called.append(1)
        return "ran"

    skipped = executor.execute_step(optional, {}, {"enabled": False})
    assert skipped.success and skipped.skipped and skipped.output is None and not called
    ran = executor.execute_step(optional, {}, {"enabled": True})
    assert ran.success and not ran.skipped and ran.output == "ran" and called == [1]


def test_condition_sees_earlier_outputs_and_their_dict_keys(executor: LocalExecutor) -> None:
    @step(inputs="model", condition=lambda quality_score, threshold: quality_score >= threshold)
    def deploy(model: str) -> str:
        return f"deployed {model}"

    all_outputs = {"metrics": {"quality_score": 0.7}, "model": "m1"}
    low = executor.execute_step(deploy, {"model": "m1"}, {"threshold": 0.9}, all_outputs=all_outputs)
    assert low.skipped
    high = executor.execute_step(deploy, {"model": "m1"}, {"threshold": 0.5}, all_outputs=all_outputs)
    assert high.output == "deployed m1"


def test_condition_failure_is_a_reported_failure(executor: LocalExecutor, caplog: pytest.LogCaptureFixture) -> None:
    def broken_condition(metrics: dict) -> bool:
        return metrics["missing-key"] > 1

    @step(condition=broken_condition)
    def guarded() -> int:
        return 1

    result = executor.execute_step(guarded, {}, {"metrics": {}})
    assert not result.success and not result.skipped
    assert result.error.startswith("condition check failed: KeyError('missing-key')")
    assert "broken_condition" in result.error  # the traceback points at the condition
    assert any("guarded" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_timeout_is_enforced(executor: LocalExecutor) -> None:
    release = threading.Event()

    @step(timeout=0.2)
    def hangs() -> str:
        release.wait(10)
        return "too late"

    try:
        started = time.perf_counter()
        result = executor.execute_step(hangs, {}, {})
        elapsed = time.perf_counter() - started
    finally:
        release.set()
    assert not result.success
    assert "StepTimeoutError" in result.error and "timed out after 0.2s" in result.error
    assert 0.2 <= elapsed < 2


def test_timeout_allows_a_fast_step_and_keeps_its_value(executor: LocalExecutor) -> None:
    @step(timeout=5)
    def quick(x: int) -> int:
        print("quick ran")
        return x * 2

    result = executor.execute_step(quick, {"x": 21}, {}, run_id="r")
    assert result.success and result.output == 42
    assert result.logs == "quick ran\n"


def test_timed_out_attempts_are_retried(executor: LocalExecutor) -> None:
    attempts = []

    @step(timeout=0.1, retry=1, retry_delay=0)
    def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            time.sleep(0.5)
        return "ok"

    result = executor.execute_step(slow_then_fast, {}, {})
    assert result.success and result.output == "ok" and result.retries == 1


def test_signature_filtering_passes_only_accepted_arguments(executor: LocalExecutor) -> None:
    @step
    def picky(a: int, lr: float) -> float:
        return a * lr

    @step
    def greedy(**kwargs: object) -> list[str]:
        return sorted(kwargs)

    assert executor.execute_step(picky, {"a": 2, "junk": 1}, {"lr": 0.5, "epochs": 3}).output == 1.0
    assert executor.execute_step(greedy, {"a": 2}, {"lr": 0.5}).output == ["a", "lr"]


def test_materialize_failure_is_reported_not_swallowed(executor: LocalExecutor, memory_cache: MemoryCacheStore) -> None:
    @step(outputs="table")
    def produce() -> dict:
        return {"rows": 3}

    result = executor.execute_step(
        produce, {}, {}, cache_store=memory_cache, artifact_store=BrokenArtifactStore(), run_id="r1"
    )
    assert not result.success
    assert result.error.startswith("materializing output 'table' failed: OSError(28, 'No space left on device')")
    assert memory_cache.writes == 0, "a result that could not be stored must not be cached"


def test_route_failure_is_reported_not_swallowed(executor: LocalExecutor) -> None:
    class FailingRouter(Router):
        def route(self, output, *, name, step_name, run_id, project_name="default", return_type=None):
            raise PermissionError(f"cannot write {name} of {step_name}")

    @step(outputs="model")
    def produce() -> list[int]:
        return [1, 2]

    result = executor.execute_step(produce, {}, {}, router=FailingRouter(), run_id="r1")
    assert not result.success
    assert "routing output 'model' failed: PermissionError('cannot write model of produce')" in result.error


def test_a_store_error_written_for_people_is_shown_as_its_message(executor: LocalExecutor) -> None:
    """flowyml's own errors are sentences: no repr quoting (and escaping) around them."""
    from flowyml_core.errors import IntegrityError

    class FussyRouter(Router):
        def route(self, output, *, name, step_name, run_id, project_name="default", return_type=None):
            raise IntegrityError(f"the store at mem://x/{name} refused it; it's 'altered'")

    @step(outputs="model")
    def produce() -> list[int]:
        return [1, 2]

    result = executor.execute_step(produce, {}, {}, router=FussyRouter(), run_id="r1")
    assert result.error == "routing output 'model' failed: IntegrityError: the store at mem://x/model refused it; it's 'altered'"


def test_result_fields_of_a_plain_success(executor: LocalExecutor) -> None:
    @step(outputs="y")
    def double(x: int) -> int:
        time.sleep(0.01)
        return 2 * x

    result = executor.execute_step(double, {"x": 4}, {})
    assert result.success and result.output == 8
    assert result.retries == 0 and not result.cached and not result.skipped
    assert result.error is None and result.artifact_uri is None
    assert 0.01 <= result.duration_seconds < 1


def test_local_executor_config_and_repr() -> None:
    assert LocalExecutor().max_workers == 1
    assert LocalExecutor(LocalExecutorConfig(max_workers=3)).max_workers == 3
    assert repr(LocalExecutor(LocalExecutorConfig(max_workers=3))) == "LocalExecutor(max_workers=3)"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_workers must be an integer >= 1"):
            LocalExecutorConfig(max_workers=bad)  # type: ignore[arg-type]


def test_pipeline_passes_context_params_by_name(executor: LocalExecutor) -> None:
    @step(outputs="scaled")
    def scale(factor: float) -> float:
        return 10 * factor

    result = executor.run_pipeline(Pipeline("p", [scale]), "r", context=Context(factor=0.5, unrelated=1))
    assert result.success and result.outputs == {"scaled": 5.0}


def test_logs_keep_every_attempts_output(executor: LocalExecutor) -> None:
    attempts: list[int] = []

    @step(retry=2, retry_delay=0)
    def flaky_and_chatty() -> str:
        attempts.append(1)
        print(f"try {len(attempts)}")
        if len(attempts) < 3:
            raise TimeoutError("service busy")
        return "ok"

    result = executor.execute_step(flaky_and_chatty, {}, {}, run_id="r")
    assert result.success and result.retries == 2
    assert result.logs == (
        "try 1\n[flowyml] attempt 1 failed: TimeoutError('service busy'); retrying\n"
        "try 2\n[flowyml] attempt 2 failed: TimeoutError('service busy'); retrying\n"
        "try 3\n"
    )
