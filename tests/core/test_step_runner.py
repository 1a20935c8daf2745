"""``flowyml step-runner``: one execution unit per process, exchanging data through the artifact store."""

from __future__ import annotations

import json
import pickle

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
        artifact_store = { flavor = "pickledir", path = "store" }
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


def artifact(project, step, name, run_id="run-1"):
    return pickle.loads((project / "store" / "default" / run_id / step / f"{name}.pkl").read_bytes())


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


def test_failing_step_exits_1_with_the_error_logged(runner_project, run_cli):
    assert run_cli("step-runner", cwd=runner_project, env=unit_env("load")).returncode == 0
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total", FLOWYML_CONTEXT='{"fail": true}'))
    assert out.returncode == 1
    errors = [line for line in log_lines(out.stdout) if line["severity"] == "ERROR"]
    assert errors and "asked to fail" in errors[0]["message"]


def test_missing_input_names_it_and_its_producer(runner_project, run_cli):
    out = run_cli("step-runner", cwd=runner_project, env=unit_env("double,total", run_id="never-ran"))
    assert out.returncode == 1
    message = " ".join(line["message"] for line in log_lines(out.stdout))
    assert "input 'numbers' of step 'double' was not found" in message and "step 'load'" in message


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({}, "FLOWYML_PIPELINE_MODULE, FLOWYML_STEP_NAMES, FLOWYML_RUN_ID"),
        ({"FLOWYML_STEP_NAMES": "nope"}, "has no step(s) nope"),
        ({"FLOWYML_CONTEXT": "[1"}, "FLOWYML_CONTEXT is not a JSON object"),
        ({"FLOWYML_CONTEXT": "[1]"}, "FLOWYML_CONTEXT is not a JSON object: got a list"),
        ({"FLOWYML_STACK": "local-typo"}, "unknown stack 'local-typo'"),
    ],
)
def test_bad_environment_is_one_clear_error(runner_project, run_cli, env, fragment):
    full = unit_env("load", **env) if env else {}
    out = run_cli("step-runner", cwd=runner_project, env=full)
    assert out.returncode == 1
    assert fragment in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
