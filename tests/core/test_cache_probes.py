"""Attempts to make the cache return a wrong value, as a user meets them (after issue 13).

Each case edits what a step runs or reads, the way a person does (the file on disk, a decorator's
argument, a class attribute), runs the pipeline again, and checks that the new value comes back:
a cache hit is only allowed where the step would have computed the same thing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import py_compile
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flowyml_core import Pipeline
from tests.core.helpers import env_with, outputs_and_cached, write
from tests.core.helpers import load_module as _load


def load_module(path: Path, name: str) -> Any:
    return _load(path, name, register=True)


@pytest.fixture
def module_name(request: pytest.FixtureRequest) -> Any:
    name = f"flowyml_probe_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    yield name
    sys.modules.pop(name, None)


# -- decorators over a step ---------------------------------------------------------------------
DECORATED = """
import functools
from flowyml_core import Pipeline, step

def twice(f):  # no functools.wraps: the step's function is `wrapper`, the body is in its closure
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs) * 2
    return wrapper

def scale(k):
    def decorate(f):
        @functools.wraps(f)
        def scaled(*args, **kwargs):
            return f(*args, **kwargs) * k
        return scaled
    return decorate

FACTOR = 10

@step(outputs=["doubled"], name="doubled")
@twice
def doubled():
    return BODY

@step(outputs=["scaled"])
@scale(FACTOR)
def scaled():
    return 1

pipeline = Pipeline("decorated", [doubled, scaled])
"""


def test_editing_a_step_under_a_decorator_without_wraps_is_a_miss(project: Path, module_name: str) -> None:
    path = write(project / "decorated.py", DECORATED.replace("BODY", "1"))
    assert outputs_and_cached(load_module(path, module_name).pipeline)[0]["doubled"] == 2
    write(path, DECORATED.replace("BODY", "500"))
    outputs, cached = outputs_and_cached(load_module(path, module_name).pipeline)
    assert outputs["doubled"] == 1000 and not cached["doubled"]
    assert not cached["doubled"] and cached["scaled"]  # what did not change still hits


def test_a_global_given_to_a_decorator_is_in_the_key(project: Path, module_name: str) -> None:
    path = write(project / "decorated.py", DECORATED.replace("BODY", "1"))
    assert outputs_and_cached(load_module(path, module_name).pipeline)[0]["scaled"] == 10
    write(path, DECORATED.replace("BODY", "1").replace("FACTOR = 10", "FACTOR = 1000"))
    outputs, cached = outputs_and_cached(load_module(path, module_name).pipeline)
    assert outputs["scaled"] == 1000 and not cached["scaled"]


# -- values read through a module, a class or self ------------------------------------------------
READS = """
from flowyml_core import Pipeline, step
import settings_mod

class Config:
    ROWS = CLASS_ROWS

class Model:
    FACTOR = FACTOR_VALUE

    def __init__(self, bias):
        self.bias = bias

    def predict(self):
        return self.FACTOR * 10 + self.bias

    def __call__(self):
        return self.FACTOR * 100 + self.bias

MODEL = Model(1)

@step(outputs=["by_class"])
def by_class():
    return list(range(Config.ROWS))

@step(outputs=["by_module"])
def by_module():
    return list(range(settings_mod.ROWS))

@step(outputs=["by_instance"])
def by_instance():
    return MODEL.FACTOR

pipeline = Pipeline("reads", [by_class, by_module, by_instance,
                              step(MODEL.predict, name="method", outputs=["method"]),
                              step(MODEL, name="callable", outputs=["callable"])])
"""


def reads_file(class_rows: int = 3, factor: int = 2) -> str:
    return READS.replace("CLASS_ROWS", str(class_rows)).replace("FACTOR_VALUE", str(factor))


@pytest.fixture
def reads(project: Path, module_name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(project))
    write(project / "settings_mod.py", "ROWS = 4\n")
    monkeypatch.delitem(sys.modules, "settings_mod", raising=False)
    yield project / "reads.py"
    sys.modules.pop("settings_mod", None)


def test_a_class_attribute_read_through_a_global_class_is_in_the_key(reads: Path, module_name: str) -> None:
    write(reads, reads_file(class_rows=3))
    assert outputs_and_cached(load_module(reads, module_name).pipeline)[0]["by_class"] == [0, 1, 2]
    write(reads, reads_file(class_rows=5))
    outputs, cached = outputs_and_cached(load_module(reads, module_name).pipeline)
    assert outputs["by_class"] == [0, 1, 2, 3, 4] and not cached["by_class"]
    assert cached["by_module"]


def test_a_module_attribute_read_by_a_step_is_in_the_key(reads: Path, module_name: str) -> None:
    write(reads, reads_file())
    assert outputs_and_cached(load_module(reads, module_name).pipeline)[0]["by_module"] == [0, 1, 2, 3]
    write(reads.parent / "settings_mod.py", "ROWS = 1\n")
    sys.modules.pop("settings_mod")
    outputs, cached = outputs_and_cached(load_module(reads, module_name).pipeline)
    assert outputs["by_module"] == [0] and not cached["by_module"]
    assert cached["by_class"]


def test_class_attributes_read_through_an_object_are_in_the_key(reads: Path, module_name: str) -> None:
    """``self.FACTOR`` in a bound method or a callable object, ``MODEL.FACTOR`` on a global object:
    the object's own state does not hold its class's attributes."""
    write(reads, reads_file(factor=2))
    outputs, _ = outputs_and_cached(load_module(reads, module_name).pipeline)
    assert (outputs["method"], outputs["callable"], outputs["by_instance"]) == (21, 201, 2)
    write(reads, reads_file(factor=3))
    outputs, cached = outputs_and_cached(load_module(reads, module_name).pipeline)
    assert (outputs["method"], outputs["callable"], outputs["by_instance"]) == (31, 301, 3)
    assert not cached["method"] and not cached["callable"] and not cached["by_instance"]


def test_a_method_called_on_a_class_attribute_keys_the_attribute(project: Path, module_name: str) -> None:
    """``Config.NAME.upper()`` reads ``Config.NAME``: the key holds its value, not only ``str.upper``."""
    source = """
        from flowyml_core import Pipeline, step

        class Config:
            NAME = "VALUE"

        @step(outputs=["shout"])
        def shout():
            return Config.NAME.upper()

        pipeline = Pipeline("shout", [shout])
    """
    path = write(project / "shout.py", source.replace("VALUE", "abc"))
    assert outputs_and_cached(load_module(path, module_name).pipeline) == ({"shout": "ABC"}, {"shout": False})
    write(path, source.replace("VALUE", "xyz"))
    assert outputs_and_cached(load_module(path, module_name).pipeline) == ({"shout": "XYZ"}, {"shout": False})


def test_an_attribute_that_is_not_there_yet_does_not_break_the_key(project: Path, module_name: str) -> None:
    path = write(project / "late.py", """
        from flowyml_core import Pipeline, step

        class Config:
            pass

        @step(outputs=["value"])
        def value():
            return Config.LATE if hasattr(Config, "LATE") else 0

        pipeline = Pipeline("late", [value])
    """)
    module = load_module(path, module_name)
    assert outputs_and_cached(module.pipeline)[0]["value"] == 0
    module.Config.LATE = 7
    outputs, cached = outputs_and_cached(module.pipeline)
    assert outputs["value"] == 7 and not cached["value"]


# -- a file edited after import, run in another process ---------------------------------------------
EDITED = """
from flowyml_core import Pipeline, step

def plain():
    return "PLAIN-VALUE"

@step(outputs=["decorated"])
def decorated():
    return "DECORATED-VALUE"

pipeline = Pipeline("edited", [decorated, step(plain, outputs=["plain"])])
"""


def test_with_process_isolation_code_edited_after_import_never_fills_the_old_key(
    project: Path, module_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit's process imports the module from disk: if the file changed since this process
    imported it, the new code must not run under the old code's key (reverting the file would
    then hit the new code's value)."""
    write(project / "stacks.toml", """
        [stacks.isolated]
        executor = { flavor = "local", isolation = "process" }
        cache_store = { flavor = "local", path = ".flowyml/cache" }
    """)
    monkeypatch.syspath_prepend(str(project))
    write(project / f"{module_name}.py", EDITED.replace("VALUE", "old"))
    module = importlib.import_module(module_name)
    write(project / f"{module_name}.py", EDITED.replace("VALUE", "new!"))
    result = module.pipeline.run(stack="isolated")
    assert not result.success
    for name in ("decorated", "plain"):
        error = result.steps[name].error
        assert "changed on disk after this run imported it" in error and f"step {name!r}" in error
    write(project / f"{module_name}.py", EDITED.replace("VALUE", "old"))
    sys.modules.pop(module_name)
    outputs, cached = outputs_and_cached(importlib.import_module(module_name).pipeline, stack="isolated")
    assert outputs == {"decorated": "DECORATED-old", "plain": "PLAIN-old"}
    assert not any(cached.values())


REPORT = """
import json
result = pipeline.run()
print(json.dumps({"outputs": result.outputs, "cached": {n: r.cached for n, r in result.steps.items()}}))
"""


def test_a_same_size_edit_within_the_second_of_a_pyc_is_keyed_by_what_runs(project: Path) -> None:
    """Python runs a ``.pyc`` whose recorded source mtime (whole seconds) and size match: the old
    code runs while the source already says something else. Its value must not be stored under
    the new source's key."""
    source = textwrap.dedent("""
        from flowyml_core import Pipeline, step

        @step(outputs=["v"])
        def v():
            return 1

        pipeline = Pipeline("pyc", [v])
    """)
    path = project / "pyc_pipe.py"
    second = int(time.time()) + 10  # one whole second, as Python's check sees it
    path.write_text(source)
    os.utime(path, ns=(second * 10**9 + 100_000_000,) * 2)
    pyc = Path(py_compile.compile(str(path)))  # the import that left it behind, at .2 s ...
    os.utime(pyc, ns=(second * 10**9 + 200_000_000,) * 2)
    path.write_text(source.replace("return 1", "return 2"))  # ... and a same-size edit at .5 s
    os.utime(path, ns=(second * 10**9 + 500_000_000,) * 2)

    def run_in_process() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", "from pyc_pipe import pipeline\n" + REPORT], cwd=project,
                             capture_output=True, text=True, timeout=120, env=env_with(PYTHONPATH=str(project)))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    stale = run_in_process()
    assert stale["outputs"] == {"v": 1}  # Python ran the old code (the premise of the test)
    os.utime(path, ns=((second + 5) * 10**9,) * 2)  # another second: the next import compiles it again
    fresh = run_in_process()
    assert fresh == {"outputs": {"v": 2}, "cached": {"v": False}}


# -- functions held in globals that have no name of their own ---------------------------------------
ANONYMOUS = """
from flowyml_core import Pipeline, step

def make_scaler(k):
    def scale(x):
        return x * k
    return scale

SCALE = lambda x: x * LAMBDA_FACTOR
SCALER = make_scaler(SCALER_FACTOR)

@step(outputs=["by_lambda"])
def by_lambda():
    return SCALE(3)

@step(outputs=["by_closure"])
def by_closure():
    return SCALER(3)

pipeline = Pipeline("anonymous", [by_lambda, by_closure])
"""


def anonymous_file(lambda_factor: int, scaler_factor: int) -> str:
    return ANONYMOUS.replace("LAMBDA_FACTOR", str(lambda_factor)).replace("SCALER_FACTOR", str(scaler_factor))


def test_a_global_lambda_is_keyed_by_its_code_not_its_name(project: Path, module_name: str) -> None:
    path = write(project / "anonymous.py", anonymous_file(2, 10))
    assert outputs_and_cached(load_module(path, module_name).pipeline)[0]["by_lambda"] == 6
    write(path, anonymous_file(5, 10))
    outputs, cached = outputs_and_cached(load_module(path, module_name).pipeline)
    assert outputs["by_lambda"] == 15 and not cached["by_lambda"] and cached["by_closure"]


def test_a_global_made_by_a_factory_is_keyed_by_what_it_closes_over(project: Path, module_name: str) -> None:
    path = write(project / "anonymous.py", anonymous_file(2, 10))
    assert outputs_and_cached(load_module(path, module_name).pipeline)[0]["by_closure"] == 30
    write(path, anonymous_file(2, 7))
    outputs, cached = outputs_and_cached(load_module(path, module_name).pipeline)
    assert outputs["by_closure"] == 21 and not cached["by_closure"] and cached["by_lambda"]


def test_a_recursive_local_function_read_by_a_step_does_not_hang(project: Path) -> None:
    from flowyml_core import step

    def make() -> Any:
        def countdown(n: int) -> int:
            return 0 if n == 0 else countdown(n - 1) + 1
        return countdown

    counter = make()
    pipeline = Pipeline("recursive", [step(lambda: counter(5), name="count", outputs=["n"])])
    assert outputs_and_cached(pipeline) == ({"n": 5}, {"count": False})
    assert outputs_and_cached(pipeline) == ({"n": 5}, {"count": True})


# -- values that compare alike but are not the same ---------------------------------------------
def test_a_negative_nan_parameter_is_not_a_hit_of_a_positive_one(project: Path) -> None:
    """``float.hex()`` gives ``nan`` for both; ``math.copysign`` (and ``np.signbit``) tell them apart."""
    import math

    from flowyml_core import step

    pipeline = Pipeline("nan", [step(lambda x: math.copysign(1.0, x), name="sign", outputs=["sign"])])
    nan = float("nan")
    assert pipeline.run(context={"x": nan}).outputs == {"sign": 1.0}
    result = pipeline.run(context={"x": -nan})
    assert result.outputs == {"sign": -1.0} and not result.steps["sign"].cached


OBJECTS = """
import threading
from flowyml_core import Pipeline, step

class Model:
    def __init__(self, bias):
        self.bias = bias

class Resource:  # cannot be fingerprinted (a lock): keyed by its type, and what the step reads of it
    def __init__(self, rows):
        self.rows = rows
        self.lock = threading.Lock()

MODEL = Model(BIAS)
RESOURCE = Resource(ROWS)

@step(outputs=["bias"])
def bias():
    return MODEL.bias

@step(outputs=["rows"])
def rows():
    return RESOURCE.rows

pipeline = Pipeline("objects", [bias, rows])
"""


def test_an_attribute_of_a_global_object_is_in_the_key(project: Path, module_name: str) -> None:
    path = write(project / "objects.py", OBJECTS.replace("BIAS", "1").replace("ROWS", "3"))
    assert outputs_and_cached(load_module(path, module_name).pipeline)[0] == {"bias": 1, "rows": 3}
    write(path, OBJECTS.replace("BIAS", "2").replace("ROWS", "4"))
    outputs, cached = outputs_and_cached(load_module(path, module_name).pipeline)
    assert outputs == {"bias": 2, "rows": 4} and cached == {"bias": False, "rows": False}
    assert outputs_and_cached(load_module(path, module_name).pipeline)[1] == {"bias": True, "rows": True}


def test_a_lambda_step_called_by_another_step_is_keyed_by_its_code(project: Path, module_name: str) -> None:
    source = """
        from flowyml_core import Pipeline, step

        FIVE = step(lambda: VALUE, name="five")
        PING = step(lambda n=1: 0 if n <= 0 else PONG(n - 1) + 1, name="ping")  # each reads the other
        PONG = step(lambda n=1: 0 if n <= 0 else PING(n - 1) + 10, name="pong")

        @step(outputs=["six"])
        def six():
            return FIVE() + PING(0)

        pipeline = Pipeline("helper_steps", [six])
    """
    path = write(project / "helper_steps.py", source.replace("VALUE", "5"))
    assert outputs_and_cached(load_module(path, module_name).pipeline) == ({"six": 5}, {"six": False})
    write(path, source.replace("VALUE", "7"))
    assert outputs_and_cached(load_module(path, module_name).pipeline) == ({"six": 7}, {"six": False})


# -- housekeeping on a real store ------------------------------------------------------------------
def test_cache_prune_older_than_removes_old_entries_and_nothing_else(project: Path, run_cli) -> None:
    """A cache directory may be one a person also keeps files in: only entries are pruned by age."""
    from flowyml_core import step

    write(project / "stacks.toml", """
        [stacks.mine]
        executor = "local"
        cache_store = { flavor = "local", path = "cache" }
    """)
    result = Pipeline("prunable", [step(lambda: [1, 2], name="rows", outputs=["rows"])]).run(stack="mine")
    assert result.success
    entries = [p for p in (project / "cache").iterdir() if p.is_file()]
    assert len(entries) == 1
    notes = write(project / "cache" / "notes.txt", "kept by a person\n")
    nested = write(project / "cache" / "old" / "data.csv", "a,b\n")
    old = time.time() - 10 * 86400
    for path in (*entries, notes, nested):
        os.utime(path, (old, old))
    out = run_cli("cache", "prune", "--stack", "mine", "--older-than", "1d", "--json", cwd=project)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stores"]["cache_store"]["removed"] == {"entries": 1}
    assert not entries[0].exists()
    assert notes.read_text() == "kept by a person\n" and nested.read_text() == "a,b\n"


_PROBE_LOG = logging.getLogger("probe.keys")


def _logs_and_reads_the_environment(n: int = 1):
    _PROBE_LOG.info("n=%s", n)
    return n + len(os.environ.get("HOME", ""))


def test_a_logger_is_keyed_by_its_name_and_an_unkeyable_module_attribute_by_its_type():
    from flowyml_core import step as make_step

    s = make_step(_logs_and_reads_the_environment)
    reads = s._reads()
    assert "g:_PROBE_LOG=logger:probe.keys" in reads, reads
    assert any(r.startswith("g:os.environ.get=type:") for r in reads), reads
    key = s.get_cache_key({}, {"n": 1})
    _PROBE_LOG.setLevel(logging.DEBUG)  # where output goes is not the data: the same key
    assert s.get_cache_key({}, {"n": 1}) == key != s.get_cache_key({}, {"n": 2})
