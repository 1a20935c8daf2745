"""The probes of issue 13, as a person meets them: ``Pipeline.run()`` on the local stack (cache in
``.flowyml/cache``), pipeline files run as scripts in separate processes where that is how it happens.

Each run must finish with the right value; a cache hit is only allowed where the step would
have computed the same thing.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowyml_core import ExecutionStatus, Pipeline, step
from tests.core.helpers import env_with, write

REPORT = """
if __name__ == "__main__":
    import json
    result = pipeline.run()
    print(json.dumps({"status": result.status.value, "outputs": {k: repr(v) for k, v in result.outputs.items()},
                      "cached": {n: r.cached for n, r in result.steps.items()},
                      "errors": {n: r.error for n, r in result.steps.items() if r.error}}))
"""


def run_script(project: Path, name: str, *, seed: str = "0", stdin: str | None = None) -> dict[str, Any]:
    args = [sys.executable, "-"] if stdin is not None else [sys.executable, name]
    out = subprocess.run(args, cwd=project, input=stdin, capture_output=True, text=True, timeout=120,
                         env=env_with(PYTHONHASHSEED=seed, PYTHONDONTWRITEBYTECODE="1"))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the key names what ran ---------------------------------------------------------------------------
ROWS_FILE = """
from flowyml_core import Pipeline, step

ROWS = NUMBER

@step(outputs=["rows"])
def load():
    return list(range(ROWS))

pipeline = Pipeline("rows", [load])
""" + REPORT


def test_two_pipeline_files_with_the_same_step_and_other_globals_do_not_share_entries(project: Path) -> None:
    write(project / "small.py", ROWS_FILE.replace("NUMBER", "10"))
    write(project / "big.py", ROWS_FILE.replace("NUMBER", "3"))
    small = run_script(project, "small.py")
    big = run_script(project, "big.py")
    assert small["outputs"]["rows"] == repr(list(range(10))) and not small["cached"]["load"]
    assert big["outputs"]["rows"] == repr(list(range(3))) and not big["cached"]["load"]
    again = run_script(project, "small.py")  # each file still hits its own entry
    assert again["cached"]["load"] and again["outputs"]["rows"] == small["outputs"]["rows"]


def make_pipeline(k: int) -> Pipeline:
    return Pipeline("factory", [step(lambda: k * 100, name="const", outputs=["value"])])


def test_a_factory_closure_does_not_leak_between_instances(project: Path) -> None:
    first = make_pipeline(1).run()
    second = make_pipeline(2).run()
    assert first.outputs == {"value": 100} and not first.steps["const"].cached
    assert second.outputs == {"value": 200} and not second.steps["const"].cached
    assert make_pipeline(1).run().steps["const"].cached


EDITED_FILE = '''
from pathlib import Path
from flowyml_core import Pipeline, step

@step(outputs=["done"])
def slow():
    # A long first step: meanwhile the person edits the file (a notebook, an editor).
    path = Path(__file__)
    path.write_text(path.read_text().replace('return "o' + 'ld"', 'return "new value"'))
    return True

@step(inputs=["done"], outputs=["value"])
def value(done):
    return "old"

pipeline = Pipeline("edited", [slow, value])
''' + REPORT


def test_a_file_edited_between_import_and_run_does_not_store_the_old_result_under_the_new_code(project: Path) -> None:
    write(project / "edited.py", EDITED_FILE)
    first = run_script(project, "edited.py")
    assert first["outputs"]["value"] == repr("old")  # the function that was imported ran
    assert 'return "new value"' in (project / "edited.py").read_text()
    second = run_script(project, "edited.py")
    assert second["outputs"]["value"] == repr("new value") and not second["cached"]["value"]
    assert second["cached"]["slow"]
    assert run_script(project, "edited.py")["cached"]["value"]


SET_FILE = """
from flowyml_core import Context, Pipeline, step

@step(outputs=["n"])
def count(tags):
    return sorted(tags)

pipeline = Pipeline("tags", [count], context=Context(tags={"alpha", "beta", "gamma", "delta", "epsilon"}))
""" + REPORT


def test_a_set_parameter_hits_in_another_process(project: Path) -> None:
    write(project / "tags.py", SET_FILE)
    first = run_script(project, "tags.py", seed="1")
    second = run_script(project, "tags.py", seed="2")  # another string hashing, another set order
    assert not first["cached"]["count"] and second["cached"]["count"]
    assert first["outputs"] == second["outputs"]


EXEC_PROGRAM = """
from flowyml_core import Pipeline, step
pipeline = Pipeline("stdin", [step(lambda: sorted([K, 1, 2], key=lambda r: -r) + [x * 2 for x in (1, 2)],
                                   name="ranked", outputs=["ranked"])])
""" + REPORT.replace('if __name__ == "__main__":', "if True:")


def test_code_without_a_source_file_with_a_lambda_hits_in_the_next_process(project: Path) -> None:
    first = run_script(project, "-", stdin=EXEC_PROGRAM.replace("K", "3"), seed="1")
    second = run_script(project, "-", stdin=EXEC_PROGRAM.replace("K", "3"), seed="2")
    other = run_script(project, "-", stdin=EXEC_PROGRAM.replace("K", "7"))
    assert not first["cached"]["ranked"] and second["cached"]["ranked"]
    assert not other["cached"]["ranked"] and other["outputs"]["ranked"] == repr([7, 2, 1, 2, 4])


# -- values -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["M8[ns]", "m8[s]"])
def test_datetime_and_timedelta_arrays_run_and_are_cached(project: Path, dtype: str) -> None:
    @step(outputs=["stamps"])
    def stamps():
        return np.arange(3, dtype="i8").astype(dtype)

    @step(inputs=["stamps"], outputs=["last"])
    def last(stamps):
        return stamps[-1]

    pipeline = Pipeline(f"stamps-{dtype[0]}", [stamps, last])
    first = pipeline.run()
    assert first.status is ExecutionStatus.COMPLETED, first.failed_steps
    second = pipeline.run()
    assert second.status is ExecutionStatus.CACHED
    np.testing.assert_array_equal(second.outputs["stamps"], first.outputs["stamps"])


def _echo_pipeline(name: str) -> Pipeline:
    @step(outputs=["seen"])
    def echo(buffer):
        return bytes(buffer) if isinstance(buffer, memoryview) else list(buffer.dtype.names)

    return Pipeline(name, [echo])


def test_a_non_contiguous_memoryview_parameter_is_keyed_by_its_content(project: Path) -> None:
    pipeline = _echo_pipeline("views")
    first = pipeline.run(context={"buffer": memoryview(b"abcdef")[::2]})
    assert first.outputs == {"seen": b"ace"} and not first.steps["echo"].cached
    assert pipeline.run(context={"buffer": memoryview(b"xaxcxe")[1::2]}).steps["echo"].cached  # same content
    other = pipeline.run(context={"buffer": memoryview(b"abcdef")[1::2]})
    assert other.outputs == {"seen": b"bdf"} and not other.steps["echo"].cached


def test_structured_arrays_with_other_field_names_are_not_a_hit(project: Path) -> None:
    pipeline = _echo_pipeline("records")
    first = pipeline.run(context={"buffer": np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])})
    second = pipeline.run(context={"buffer": np.zeros(2, dtype=[("x", "i4"), ("y", "f8")])})
    assert first.outputs == {"seen": ["a", "b"]}
    assert second.outputs == {"seen": ["x", "y"]} and not second.steps["echo"].cached


def test_a_parameter_that_cannot_be_fingerprinted_runs_the_step_uncached_with_one_warning(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @step(outputs=["value"])
    def guarded_lock_probe(lock):
        with lock:
            return 7

    pipeline = Pipeline("locked", [guarded_lock_probe])
    with caplog.at_level(logging.WARNING):
        results = [pipeline.run(context={"lock": threading.Lock()}) for _ in range(2)]
    for result in results:
        assert result.status is ExecutionStatus.COMPLETED and result.outputs == {"value": 7}
        assert not result.steps["guarded_lock_probe"].cached
    warnings = [r.getMessage() for r in caplog.records if "guarded_lock_probe" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "parameter 'lock' is a _thread.lock" in warnings[0] and "without the cache" in warnings[0]


def test_an_output_that_cannot_be_fingerprinted_is_not_cached_and_its_consumer_neither(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (project / "stacks.toml").write_text(
        '[stacks.cache-only]\nexecutor = "local"\ncache_store = { flavor = "local", path = ".flowyml/cache" }\n'
    )

    @step(outputs=["numbers"])
    def numbers_generator_probe():
        return (i for i in range(3))  # a generator: no content to key on

    @step(inputs=["numbers"], outputs=["total"])
    def total_generator_probe(numbers):
        return sum(numbers)

    pipeline = Pipeline("gen", [numbers_generator_probe, total_generator_probe])
    with caplog.at_level(logging.WARNING):
        results = [pipeline.run(stack="cache-only") for _ in range(2)]
    for result in results:
        assert result.status is ExecutionStatus.COMPLETED and result.outputs["total"] == 3
        assert not any(r.cached for r in result.steps.values())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    producer = [w for w in warnings if "'numbers_generator_probe'" in w]
    consumer = [w for w in warnings if "'total_generator_probe'" in w]
    assert len(producer) == 1 and "its output is a generator" in producer[0]
    assert len(consumer) == 1 and "input 'numbers' is a generator" in consumer[0]
