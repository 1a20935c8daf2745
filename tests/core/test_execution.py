"""Running pipelines in process: Context injection, the test plugin's executor
(which implements only ``execute_step``) under the default ``run_pipeline``,
step semantics, groups and observer hooks."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from flowyml_core import Context, ExecutionStatus, Pipeline, step
from flowyml_core.components import Executor
from flowyml_core.errors import StopExecution
from flowyml_core.execution import run_step
from flowyml_core.grouping import StepGroup
from flowyml_core.pipeline import run_on_stack
from flowyml_testplugin.components import EchoExecutor, EchoExecutorConfig, MemoryCacheStore
from tests.core.helpers import write


def run(pipeline, executor=None, cache=None, context=None, run_id="r1"):
    """Run as Pipeline.run does, on a stack made of these components."""
    stack = SimpleNamespace(name="test", executor=executor or EchoExecutor(EchoExecutorConfig(prefix="t")),
                            cache_store=cache, artifact_store=None, router=None)
    return run_on_stack(pipeline, stack, context=context, run_id=run_id)


# -- Context ---------------------------------------------------------------------------
def test_context_injects_parameters_by_argument_name():
    ctx = Context(learning_rate=0.1, epochs=3, unused="x")

    def train(data, learning_rate, epochs=1):
        return data

    def anything(**kw):
        return kw

    assert ctx.inject_params(train) == {"learning_rate": 0.1, "epochs": 3}
    assert ctx.inject_params(step(train)) == {"learning_rate": 0.1, "epochs": 3}
    assert ctx.inject_params(anything) == {"learning_rate": 0.1, "epochs": 3, "unused": "x"}
    assert ctx["epochs"] == 3 and ctx.get("nope", 5) == 5 and "unused" in ctx
    assert Context.coerce({"a": 1}) == Context(a=1) and Context.coerce(None) == Context()
    assert ctx.with_updates({"epochs": 4}).params == {"learning_rate": 0.1, "epochs": 4, "unused": "x"}
    assert ctx.params["epochs"] == 3  # with_updates does not change the original


def test_steps_receive_params_and_run_context_overrides_pipeline_context():
    seen = {}

    @step(outputs=["data"])
    def load(n):
        seen["n"] = n
        return list(range(n))

    @step(inputs=["data"], outputs=["total"])
    def total(data, scale=1):
        seen["scale"] = scale
        return sum(data) * scale

    pipeline = Pipeline("p", [load, total], context={"n": 3, "scale": 2})
    result = run(pipeline)
    assert result.success and result.outputs["total"] == 6 and seen == {"n": 3, "scale": 2}
    result = run(pipeline, context={"n": 4})
    assert result.outputs["total"] == 12


# -- the third-party executor under the default walk --------------------------------------
class MinimalExecutor(Executor):
    """Implements nothing but the abstract execute_step, with the seed's three arguments."""

    def __init__(self):
        super().__init__(None)
        self.calls = []

    def execute_step(self, step, inputs, context_params):
        self.calls.append(step.name)
        return run_step(step, inputs, context_params)


def diamond():
    @step(outputs=["raw"])
    def load():
        return [1, 2, 3]

    @step(inputs=["raw"], outputs=["evens", "odds"])
    def split(raw):
        return [x for x in raw if x % 2 == 0], [x for x in raw if x % 2]

    @step(inputs=["evens"], outputs=["e"], execution_group="g")
    def sum_evens(evens):
        return sum(evens)

    @step(inputs=["e"], outputs=["stats"], execution_group="g")
    def describe(e):
        return {"mean": e / 2, "count": 2}

    @step(inputs=["odds", "stats"], outputs=["report"])
    def report(odds, stats):
        return f"{sum(odds)}/{stats['mean']}"

    return Pipeline("diamond", [load, split, sum_evens, describe, report])


def test_executor_with_only_execute_step_runs_a_whole_pipeline_with_groups():
    executor = MinimalExecutor()
    result = executor.run_pipeline(diamond(), "run-1", context=Context())
    assert result.status is ExecutionStatus.COMPLETED and result.success
    assert list(result.steps) == ["load", "split", "sum_evens", "describe", "report"]
    assert result.outputs["report"] == "4/1.0"
    assert executor.calls == ["load", "split", "sum_evens", "describe", "report"]


def test_echo_executor_announces_steps_and_uses_the_cache(capfd):
    cache = MemoryCacheStore()
    executor = EchoExecutor(EchoExecutorConfig(prefix="echo", repeat=2))
    first = executor.run_pipeline(diamond(), "a", context=Context(), cache_store=cache)
    assert first.success and not any(r.cached for r in first.steps.values())
    out = capfd.readouterr().out
    assert out.count("[echo] load\n") == 2 and "[echo] describe" in out
    second = executor.run_pipeline(diamond(), "b", context=Context(), cache_store=cache)
    assert all(r.cached for r in second.steps.values())
    assert second.status is ExecutionStatus.CACHED and second.outputs == first.outputs


def test_cache_misses_exactly_for_steps_whose_params_or_inputs_changed():
    @step(outputs=["data"])
    def load(n):
        return list(range(n))

    @step(inputs=["data"], outputs=["model"])
    def train(data, lr):
        return sum(data) * lr

    @step(inputs=["model"])
    def publish(model):
        return None  # returning None is cacheable too

    pipeline = Pipeline("p", [load, train, publish])
    cache = MemoryCacheStore()
    ran = lambda res: [n for n, r in res.steps.items() if not r.cached]  # noqa: E731

    assert ran(run(pipeline, cache=cache, context={"n": 3, "lr": 0.5})) == ["load", "train", "publish"]
    assert ran(run(pipeline, cache=cache, context={"n": 3, "lr": 0.5})) == []
    # An unrelated parameter changes nothing.
    assert ran(run(pipeline, cache=cache, context={"n": 3, "lr": 0.5, "comment": "x"})) == []
    # lr only reaches train; its output changes, so publish's input changes too.
    assert ran(run(pipeline, cache=cache, context={"n": 3, "lr": 0.25})) == ["train", "publish"]
    # n changes load's output (an input of train), lr as before.
    assert ran(run(pipeline, cache=cache, context={"n": 5, "lr": 0.25})) == ["load", "train", "publish"]
    # Back to the first values: everything was kept.
    assert ran(run(pipeline, cache=cache, context={"n": 3, "lr": 0.5})) == []


def test_failure_stops_downstream_and_names_the_failed_step():
    @step(outputs=["a"])
    def boom():
        raise RuntimeError("disk on fire")

    @step(inputs=["a"], outputs=["b"])
    def after(a):
        return a

    @step(inputs=["b"])
    def later(b):
        return b

    @step
    def independent():
        return 1

    result = run(Pipeline("p", [boom, after, later, independent]))
    assert result.status is ExecutionStatus.FAILED and not result.success
    assert "disk on fire" in result.steps["boom"].error and "Traceback" in result.steps["boom"].error
    assert result.steps["after"].skipped and "'boom'" in result.steps["after"].error
    assert result.steps["later"].skipped and "'boom'" in result.steps["later"].error
    assert result.steps["independent"].success and not result.steps["independent"].skipped


def test_retry_with_exponential_backoff_then_success():
    attempts = []

    @step(retry=3, retry_delay=0.05)
    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    result = run_step(flaky, {}, {})
    assert result.success and result.output == "ok" and result.retries == 2
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # 0.05, then doubled


def test_retries_exhausted_and_stop_execution_is_not_retried():
    calls = []

    @step(retry=1, retry_delay=0)
    def always():
        calls.append(1)
        raise ValueError("nope")

    @step(retry=5, retry_delay=0)
    def stop():
        calls.append(2)
        raise StopExecution("user asked")

    failed = run_step(always, {}, {})
    assert not failed.success and failed.retries == 1 and "nope" in failed.error
    stopped = run_step(stop, {}, {})
    assert not stopped.success and "user asked" in stopped.error and calls.count(2) == 1


def test_timeout_fails_the_step():
    @step(timeout=0.1)
    def slow():
        time.sleep(2)

    started = time.monotonic()
    result = run_step(slow, {}, {})
    assert not result.success and "timed out" in result.error and time.monotonic() - started < 1.5


def test_a_call_hook_makes_each_attempt_and_a_carried_error_reads_as_if_raised_here():
    """``run_step(call=...)``: how an executor runs step functions elsewhere (another process)."""
    from flowyml_core.errors import RemoteStepError

    attempts = []

    def elsewhere(step, kwargs):
        attempts.append((step.name, dict(kwargs)))
        print(f"attempt {len(attempts)}")  # the hook runs inside the step's capture
        if len(attempts) == 1:
            raise RemoteStepError("ValueError('far away')\nValueError: far away\n", "ValueError('far away')")
        return kwargs["x"] * 10

    @step(retry=1, retry_delay=0, timeout=5)  # with a hook, the hook bounds the attempt: no thread here
    def scaled(x):
        raise AssertionError("called here instead of through the hook")

    result = run_step(scaled, {"x": 2}, {}, run_id="r", call=elsewhere)
    assert result.success and (result.output, result.retries) == (20, 1)
    assert attempts == [("scaled", {"x": 2}), ("scaled", {"x": 2})]
    assert result.logs == "attempt 1\n[flowyml] attempt 1 failed: ValueError('far away'); retrying\nattempt 2\n"

    def always(step, kwargs):
        raise RemoteStepError("ValueError('far away')\nTraceback (most recent call last):\n  File ...\n", "ValueError('x')")

    failed = run_step(scaled, {"x": 2}, {}, call=always)
    assert failed.error == "ValueError('far away')\nTraceback (most recent call last):\n  File ...\n"
    assert failed.retries == 1


def test_condition_skips_and_a_broken_condition_fails():
    @step(outputs=["x"], condition=lambda deploy: deploy)
    def maybe():
        return 1

    @step(condition=lambda: 1 / 0)
    def broken():
        return 1

    assert run_step(maybe, {}, {"deploy": False}).skipped
    assert run_step(maybe, {}, {"deploy": True}).output == 1
    result = run_step(broken, {}, {})
    assert not result.success and "condition" in result.error and "ZeroDivisionError" in result.error


def test_condition_may_test_a_parameter_the_step_does_not_take():
    @step(outputs=["x"], condition=lambda deploy: deploy)
    def publish():
        return "published"

    assert run(Pipeline("p", [publish]), context={"deploy": False}).steps["publish"].skipped
    assert run(Pipeline("p", [publish]), context={"deploy": True}).outputs["x"] == "published"


def test_outputs_split_from_tuples_and_dicts_and_inputs_bound_by_position():
    @step(outputs=["a", "b"])
    def pair():
        return 1, 2

    @step(outputs=["c", "d"])
    def mapping():
        return {"d": 4, "c": 3}  # by key, whatever the order (a key not declared is an error: test_output_contracts)

    @step(inputs=["a", "d"], outputs=["sum"])
    def add(x, y):  # names differ from the assets: bound by position
        return x + y

    result = run(Pipeline("p", [pair, mapping, add]))
    assert result.outputs["sum"] == 5 and result.outputs["a"] == 1 and result.outputs["c"] == 3


# -- groups ------------------------------------------------------------------------------
def test_group_maps_inputs_and_skips_the_rest_after_a_failure():
    @step(outputs=["x"], execution_group="g")
    def first():
        return 1

    @step(inputs=["x"], outputs=["y"], execution_group="g")
    def second(x):
        raise RuntimeError("second broke")

    @step(inputs=["y"], outputs=["z"], execution_group="g")
    def third(y):
        return y

    result = run(Pipeline("p", [first, second, third]))
    assert result.steps["first"].success
    assert "second broke" in result.steps["second"].error
    assert result.steps["third"].skipped and "'second'" in result.steps["third"].error
    assert not result.success


def test_a_none_output_inside_a_group_reaches_the_next_member_as_it_does_outside():
    def build(group):
        @step(outputs=["maybe"], execution_group=group)
        def nothing():
            return None

        @step(inputs=["maybe"], outputs=["out"], execution_group=group)
        def use(maybe):
            return "got None" if maybe is None else "got value"

        return Pipeline("p", [nothing, use])

    outside = run(build(None))
    inside = run(build("g"))
    assert outside.outputs["out"] == "got None"
    assert inside.steps["use"].success, inside.steps["use"].error
    assert inside.outputs["out"] == "got None"


def test_a_skipped_member_skips_its_consumers_inside_a_group_as_it_does_outside():
    def build(group):
        @step(outputs=["x"], execution_group=group, condition=lambda go: go)
        def gated():
            return 1

        @step(inputs=["x"], outputs=["y"], execution_group=group)
        def consumer(x):
            return x + 1

        @step(outputs=["z"], execution_group=group)
        def unrelated():
            return 0

        return Pipeline("p", [gated, consumer, unrelated])

    for group in (None, "g"):
        result = run(build(group), context={"go": False})
        assert result.steps["gated"].skipped
        assert result.steps["consumer"].skipped, (group, result.steps["consumer"])
        assert result.steps["consumer"].success and "'gated'" in (result.steps["consumer"].error or "")
        assert result.steps["unrelated"].success and not result.steps["unrelated"].skipped
        assert result.success


def test_execute_step_group_directly_with_the_seed_signature():
    @step(outputs=["x"])
    def a(base):
        return base + 1

    @step(inputs=["x"], outputs=["y"])
    def b(x, factor=2):
        return x * factor

    executor = EchoExecutor()
    group = StepGroup("g", [a, b], ["a", "b"])
    results = executor.execute_step_group(group, {}, context=Context(base=1, factor=10, other=0))
    assert [r.output for r in results] == [2, 20]
    results = executor.execute_step_group(group, {}, context_params={"base": 1})
    assert [r.output for r in results] == [2, 4]


# -- observer hooks through the real entry point ---------------------------------------------
def test_pipeline_run_on_a_named_stack_calls_the_test_plugin_hooks(project, events):
    write(project / "stacks.toml", """
        [stacks.echo]
        executor = { flavor = "echo", prefix = "E" }
        cache_store = "memory"
        router = "null"
    """)

    @step(outputs=["x"])
    def one():
        return 1

    @step(inputs=["x"])
    def two(x):
        raise ValueError("no")

    result = Pipeline("hooked", [one, two]).run(stack="echo", run_id="run-7")
    assert not result.success
    got = events()
    assert got[0] == {"event": "run_start", "run_id": "run-7", "pipeline": "hooked", "stack": "echo"}
    assert [(e["step"], e["success"]) for e in got if e["event"] == "step_end"] == [("one", True), ("two", False)]
    assert got[-1] == {"event": "run_end", "run_id": "run-7", "status": "failed"}


def test_concurrent_walk_reports_what_a_sequential_walk_does():
    barrier = threading.Barrier(2, timeout=5)

    @step(outputs=["a"])
    def left():
        barrier.wait()  # only passes if both run at once
        return 1

    @step(outputs=["b"])
    def right():
        barrier.wait()
        return 2

    @step(inputs=["a", "b"], outputs=["c"])
    def join(a, b):
        return a + b

    class Threaded(EchoExecutor):
        max_workers = 2

    result = run(Pipeline("p", [left, right, join]), executor=Threaded())
    assert result.outputs["c"] == 3 and list(result.steps) == ["left", "right", "join"]


# -- steps across processes ----------------------------------------------------------------------
POOL_MODULE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def left():
        import os
        return os.getpid()

    @step(outputs=["b"])
    def right():
        import os
        return os.getpid()

    @step(inputs=["a", "b"], outputs=["pids"], execution_group="end")
    def join(a, b):
        return sorted({a, b})

    @step(inputs=["pids"], outputs=["n"], execution_group="end")
    def count(pids):
        return len(pids)

    pipeline = Pipeline("pool", [left, right, join, count])
"""


def test_decorated_steps_pickle_by_reference(tmp_path, monkeypatch):
    import pickle

    write(tmp_path / "flowyml_pool_steps.py", POOL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import flowyml_pool_steps as module

    assert pickle.loads(pickle.dumps(module.left)) is module.left
    local = step(lambda: 1)  # not reachable by name: pickled field by field (fails on the lambda, as pickle does)
    with pytest.raises(Exception):
        pickle.dumps(local)


def test_walker_runs_units_in_a_process_pool(tmp_path, monkeypatch):
    import concurrent.futures
    import multiprocessing
    import os

    from flowyml_core.walker import PipelineWalker

    write(tmp_path / "flowyml_pool_steps.py", POOL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import flowyml_pool_steps as module

    context = multiprocessing.get_context("spawn")  # nothing inherited: everything must pickle
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        result = PipelineWalker(MinimalExecutor(), module.pipeline, "r-pool", pool=pool).run()
    assert result.success, {n: r.error for n, r in result.steps.items()}
    assert os.getpid() not in result.outputs["pids"] and result.outputs["n"] in (1, 2)


# -- observers that fail ---------------------------------------------------------------------------
def test_a_failing_observer_is_logged_and_neither_the_run_nor_other_observers_stop(caplog):
    from flowyml_core import hookimpl
    from flowyml_core.plugins import Registry

    seen = []

    class Broken:
        @hookimpl
        def on_step_end(self, result):
            raise RuntimeError("metrics server is down")

        @hookimpl
        def on_run_start(self, run):
            raise RuntimeError("cannot start")

    class Recorder:
        @hookimpl
        def on_run_start(self, run):
            seen.append("start")

        @hookimpl
        def on_step_end(self, run, result):
            seen.append(result.step_name)

        @hookimpl
        def on_run_end(self, result):
            seen.append(result.status.value)

    registry = Registry()
    registry.register(Recorder(), "recorder")  # registered first: pluggy calls it last
    registry.register(Broken(), "broken")

    @step(outputs=["x"])
    def one():
        return 1

    @step(inputs=["x"])
    def two(x):
        return x

    stack = SimpleNamespace(name="t", executor=EchoExecutor(), cache_store=None, artifact_store=None, router=None)
    result = run_on_stack(Pipeline("p", [one, two]), stack, registry=registry)
    assert result.success
    assert seen == ["start", "one", "two", "completed"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("plugin 'broken': on_step_end hook failed (RuntimeError: metrics server is down)" in e for e in errors)
    assert any("on_run_start hook failed" in e for e in errors)


def test_observers_see_the_end_of_a_run_whose_executor_raised():
    from flowyml_core import hookimpl
    from flowyml_core.plugins import Registry

    ends = []

    class Recorder:
        @hookimpl
        def on_run_end(self, run, result):
            ends.append((run.run_id, result.status.value))

    class Exploding(EchoExecutor):
        def run_pipeline(self, pipeline, run_id, **kwargs):
            raise ConnectionError("cluster went away")

    registry = Registry()
    registry.register(Recorder(), "recorder")
    stack = SimpleNamespace(name="t", executor=Exploding(), cache_store=None, artifact_store=None, router=None)
    with pytest.raises(ConnectionError):
        run_on_stack(Pipeline("p", [step(lambda: 1)]), stack, registry=registry, run_id="r-x")
    assert ends == [("r-x", "failed")]
