"""``flowyml step-runner``: one execution unit per process, handing data over through step records."""

from __future__ import annotations

import json

import pytest

from tests.core.helpers import write

PIPELINE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["numbers"])
    def load(n=3):
        print("loading", n)
        return list(range(n))

    @step(inputs=["numbers"], outputs=["doubled"], execution_group="math")
    def double(numbers):
        return [2 * x for x in numbers]

    @step(inputs=["doubled"], outputs=["total"], execution_group="math")
    def total(doubled, fail=False):
        if fail:
            raise RuntimeError("asked to fail")
        return sum(doubled)

    pipeline = Pipeline("runner-demo", [load, double, total])
"""


@pytest.fixture
def runner_project(project):
    write(project / "pipe.py", PIPELINE)
    write(project / "stacks.toml", """
        [stacks.remote-ish]
        executor = "echo"
        artifact_store = { flavor = "local", path = "store" }
    """)
    return project


def unit_env(steps: str, run_id: str = "run-1", **extra: str) -> dict[str, str]:
    return {
        "FLOWYML_PIPELINE_MODULE": "pipe.py:pipeline",
        "FLOWYML_STEP_NAMES": steps,
        "FLOWYML_RUN_ID": run_id,
        "FLOWYML_EXECUTION_GROUP": steps.replace(",", "+"),
        "FLOWYML_PIPELINE_NAME": "runner-demo",
        "FLOWYML_STACK": "remote-ish",
        **extra,
    }


def log_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def store(project):
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

    return LocalArtifactStore(LocalArtifactStoreConfig(path=str(project / "store")))


def record(project, step, run_id="run-1"):
    from flowyml_core.records import RunRecords

    return RunRecords(store(project), run_id).read(step)


def artifact(project, step, name, run_id="run-1"):
    """The value a downstream unit would read: found through the step's record, never a guessed path."""
    found = record(project, step, run_id)
    assert found is not None, f"step {step!r} left no record"
    return store(project).load(found.outputs[name].uri)


def test_units_run_in_separate_processes_through_the_store(runner_project, run_cli):
    first = run_cli("step-runner", cwd=runner_project, env=unit_env("load", FLOWYML_CONTEXT='{"n": 4}'))
    assert first.returncode == 0, first.stdout + first.stderr
    lines = log_lines(first.stdout)
    assert all(line["run_id"] == "run-1" and "severity" in line for line in lines)
    assert any("[load] loading 4" in line["message"] for line in lines)
    assert artifact(runner_project, "load", "numbers") == [0, 1, 2, 3]

    group = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total"))
    assert group.returncode == 0, group.stdout + group.stderr
    assert artifact(runner_project, "double", "doubled") == [0, 2, 4, 6]
    assert artifact(runner_project, "total", "total") == 12
    assert record(runner_project, "total").status == "completed"
    assert record(runner_project, "total").unit == "math"


def test_failing_step_exits_1_with_the_error_logged(runner_project, run_cli):
    assert run_cli("step-runner", cwd=runner_project, env=unit_env("load")).returncode == 0
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total", FLOWYML_CONTEXT='{"fail": true}'))
    assert out.returncode == 1
    errors = [line for line in log_lines(out.stdout) if line["severity"] == "ERROR"]
    assert errors and "asked to fail" in errors[0]["message"]
    failed = record(runner_project, "total")
    assert failed.status == "failed" and "asked to fail" in failed.error
    assert failed.blocks == "not run: upstream step 'total' failed"


def test_a_cached_producer_is_read_through_its_record_in_a_later_run(runner_project, run_cli):
    """The second-run bug: a producer served from the cache writes nothing under the new run id."""
    cached_stack = """
        [stacks.remote-ish]
        executor = "echo"
        artifact_store = { flavor = "local", path = "store" }
        cache_store = { flavor = "local", path = "cache" }
    """
    write(runner_project / "stacks.toml", cached_stack)
    for run_id in ("run-1", "run-2"):
        out = run_cli("step-runner", cwd=runner_project, env=unit_env("load", run_id=run_id))
        assert out.returncode == 0, out.stdout + out.stderr
    second = record(runner_project, "load", "run-2")
    assert second.status == "cached" and second.outputs["numbers"].kind == "cached"
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total", run_id="run-2"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert artifact(runner_project, "total", "total", run_id="run-2") == 6


def test_missing_input_names_it_and_its_producer(runner_project, run_cli):
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total", run_id="never-ran"))
    assert out.returncode == 3
    errors = [line["message"] for line in log_lines(out.stdout) if line["severity"] == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "input 'numbers': step 'load' left no record in run never-ran" in errors[0]
    # The unit's steps are recorded as failed with that one line, for status and summaries.
    assert "left no record" in record(runner_project, "double", "never-ran").error


def test_missing_variables_are_one_clear_error(runner_project, run_cli):
    out = run_cli("step-runner", cwd=runner_project, env={})
    assert out.returncode == 1
    assert "FLOWYML_PIPELINE_MODULE, FLOWYML_STEP_NAMES, FLOWYML_RUN_ID" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"FLOWYML_STEP_NAMES": "nope"}, "has no step(s) nope"),
        ({"FLOWYML_CONTEXT": "[1"}, "FLOWYML_CONTEXT is not a JSON object"),
        ({"FLOWYML_CONTEXT": "[1]"}, "FLOWYML_CONTEXT is not a JSON object: got a list"),
        ({"FLOWYML_STACK": "local-typo"}, "unknown stack 'local-typo'"),
        ({"FLOWYML_PIPELINE_MODULE": "missing_module:pipeline"}, "cannot load pipeline missing_module:pipeline here"),
        ({"FLOWYML_STACK_CONFIG": "{}"}, "FLOWYML_STACK_CONFIG is not a flowyml stack"),
    ],
)
def test_a_unit_that_cannot_run_fails_in_one_line(runner_project, run_cli, env, fragment):
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("load", **env))
    assert out.returncode == 3
    errors = [line["message"] for line in log_lines(out.stdout) if line["severity"] == "ERROR"]
    assert len(errors) == 1 and fragment in errors[0] and "\n" not in errors[0]
    assert "Traceback" not in out.stdout + out.stderr
