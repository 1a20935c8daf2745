"""What a step's cache key covers (issue 13, item 1): the module, the source hashed at
definition, the globals, closure cells and defaults the function reads, ``version=``; and
that it is the same in another process, directory and project path."""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowyml_core import Step, step
from tests.core.helpers import env_with, write
from tests.core.helpers import load_module as load


def key(s: Step, **inputs) -> str:
    return s.get_cache_key(inputs, {})


# -- the module ------------------------------------------------------------------------------
def test_the_same_source_in_two_modules_has_two_keys(tmp_path):
    source = "from flowyml_core import step\n\n@step\ndef load():\n    return 1\n"
    a = load(write(tmp_path / "a.py", source), "flowyml_key_a")
    b = load(write(tmp_path / "b.py", source), "flowyml_key_b")
    assert key(a.load) != key(b.load)


KEY_MODULE = """
import sys
from flowyml_core import step
from helpers_mod import helper

ROWS = 3

@step(inputs=["x"], outputs=["y"])
def transform(x, scale=2):
    assert __file__ and __name__  # set by the import system: another path in a container, __main__ in a script
    return [helper(v) * scale for v in x][:ROWS]

KEY = transform.get_cache_key({"x": [1, 2]}, {"scale": 3})
if __name__ == "__main__":
    print(KEY)
"""


def test_a_file_run_as_a_script_has_the_key_it_has_when_imported_by_stem(tmp_path):
    """The client runs ``python pipe.py`` (``__main__``); a step runner imports it as ``pipe``."""
    write(tmp_path / "pipe.py", KEY_MODULE)
    write(tmp_path / "helpers_mod.py", "def helper(v):\n    return v + 1\n")
    as_script = subprocess.run([sys.executable, "pipe.py"], cwd=tmp_path, capture_output=True, text=True, check=True)
    imported = subprocess.run([sys.executable, "-c", "import pipe; print(pipe.KEY)"], cwd=tmp_path,
                              capture_output=True, text=True, check=True)
    assert as_script.stdout.strip() == imported.stdout.strip() != ""


def test_keys_are_the_same_under_another_project_path_working_directory_and_hash_seed(tmp_path):
    """A container imports the project at another absolute path (/app) and computes the same keys."""
    client = tmp_path / "home" / "me" / "project"
    write(client / "pipe.py", KEY_MODULE)
    write(client / "helpers_mod.py", "def helper(v):\n    return v + 1\n")
    container = tmp_path / "app"
    shutil.copytree(client, container)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    keys = set()
    for root, cwd, seed in ((client, client, "1"), (container, elsewhere, "2")):
        out = subprocess.run([sys.executable, str(root / "pipe.py")], cwd=cwd, capture_output=True, text=True,
                             check=True, env=env_with(PYTHONHASHSEED=seed, PYTHONPATH=str(root)))
        keys.add(out.stdout.strip())
    assert len(keys) == 1


# -- globals, closures, defaults --------------------------------------------------------------------
GLOBALS_MODULE = """
import json
from flowyml_core import step

LIMIT = {limit}
TAGS = {{"b", "a"}}

def helper(rows):
    return rows

class Model:
    pass

@step
def upstream():
    return 0

@step
def reads():
    return [helper(r) for r in range(LIMIT) if r not in TAGS], Model, json.dumps, upstream

@step
def attribute_only(obj):
    return obj.LIMIT  # an attribute named like a global is not a global read
"""


def _globals_module(tmp_path: Path, limit: int = 3):
    return load(write(tmp_path / f"g{limit}.py", GLOBALS_MODULE.format(limit=limit)), "flowyml_key_globals")


def test_a_global_the_step_reads_is_in_its_key_even_inside_a_comprehension(tmp_path):
    module = _globals_module(tmp_path)
    before = key(module.reads)
    module.LIMIT = 4
    assert key(module.reads) != before
    module.LIMIT = 3
    assert key(module.reads) == before


def test_globals_that_are_code_are_keyed_by_name_not_value(tmp_path):
    module = _globals_module(tmp_path)
    before = key(module.reads)
    # The same names bound to other objects with other code are still the same names:
    # the key does not follow helpers' code (that is what version= is for) ...
    other = _globals_module(tmp_path / "copy")
    module.helper, module.Model, module.upstream = other.helper, other.Model, other.upstream
    assert key(module.reads) == before
    # ... but a global bound to another function, class or module is another key.
    for name, value in (("helper", print), ("Model", dict), ("json", functools), ("upstream", module.attribute_only)):
        original = getattr(module, name)
        setattr(module, name, value)
        assert key(module.reads) != before, name
        setattr(module, name, original)
    assert key(module.reads) == before


def test_an_attribute_named_like_a_global_is_not_a_global_read(tmp_path):
    module = _globals_module(tmp_path)
    before = key(module.attribute_only, obj=1)
    module.LIMIT = 99
    assert key(module.attribute_only, obj=1) == before


def test_factory_closures_have_a_key_per_captured_value():
    def make(k):
        return step(lambda: k * 100, name="const")

    assert key(make(1)) == key(make(1))
    assert key(make(1)) != key(make(2))


def test_two_lambdas_on_one_line_have_two_keys():
    one, two = step(lambda: 1, name="same"), step(lambda: 2, name="same")  # one source line for both
    assert key(one) != key(two)


def test_defaults_and_keyword_defaults_are_in_the_key():
    def make(n, *, m):
        def compute(x=n, *, y=m):
            return x + y

        return Step(func=compute, name="compute")

    assert key(make(1, m=1)) == key(make(1, m=1))
    assert key(make(1, m=1)) != key(make(2, m=1)) != key(make(1, m=2))


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        return x * self.factor

    def __call__(self, x):
        return x * self.factor


def test_partial_arguments_and_a_bound_self_are_in_the_key():
    def scale(x, factor):
        return x * factor

    assert key(Step(func=Scaler(2).apply, name="s"), x=1) == key(Step(func=Scaler(2).apply, name="s"), x=1)
    assert key(Step(func=Scaler(2).apply, name="s"), x=1) != key(Step(func=Scaler(3).apply, name="s"), x=1)
    p2 = Step(func=functools.partial(scale, factor=2), name="p")
    p3 = Step(func=functools.partial(scale, factor=3), name="p")
    assert key(p2, x=1) != key(p3, x=1)
    assert key(Step(func=Scaler(2), name="c"), x=1) != key(Step(func=Scaler(3), name="c"), x=1)  # a callable object


def test_a_global_that_cannot_be_fingerprinted_is_keyed_by_type_with_one_warning(tmp_path, caplog):
    module = load(write(tmp_path / "lockmod.py", """
        import threading
        from flowyml_core import step

        LOCK = threading.Lock()

        @step
        def guarded_in_key_test():
            with LOCK:
                return 1
        """), "flowyml_key_lock")
    with caplog.at_level(logging.WARNING, logger="flowyml.cache"):
        first = key(module.guarded_in_key_test)
        module.LOCK = threading.Lock()  # another lock: the same type, the same key
        second = key(module.guarded_in_key_test)
    assert first == second
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'guarded_in_key_test'" in warnings[0] and "global 'LOCK'" in warnings[0] and "_thread.lock" in warnings[0]
    module.LOCK = 5
    assert key(module.guarded_in_key_test) != first


# -- version= ----------------------------------------------------------------------------------------
def test_version_is_in_the_key_and_the_code_hash():
    def body():
        return 1

    assert key(Step(func=body, version="1")) == key(Step(func=body, version="1"))
    assert key(Step(func=body, version="1")) != key(Step(func=body, version="2")) != key(Step(func=body))
    assert step(version=3)(body).get_code_hash() != step(body).get_code_hash()


# -- when the code is hashed -------------------------------------------------------------------------
def test_the_source_is_hashed_when_the_step_is_created(tmp_path):
    path = write(tmp_path / "edited.py", "from flowyml_core import step\n\n@step\ndef value():\n    return 'old'\n")
    module = load(path, "flowyml_key_edited")
    at_import = module.value.get_code_hash()
    path.write_text(path.read_text().replace("'old'", "'new, longer'"))
    assert module.value.get_code_hash() == at_import  # still the code that will run
    reloaded = load(path, "flowyml_key_edited")
    assert reloaded.value.get_code_hash() != at_import


def test_steps_made_in_a_thread_pool_share_one_code_hash():
    def body(x):
        return x

    hashes: list[str] = []
    threads = [threading.Thread(target=lambda: hashes.append(Step(func=body, name="t").get_code_hash())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(hashes)) == 1 and len(hashes) == 8


def test_a_step_pickled_by_value_keeps_its_key():
    import pickle

    def make(k):
        return Step(func=_module_level_adder, name="adder", version=k)

    original = make("v1")
    copy = pickle.loads(pickle.dumps(original))
    assert key(copy, x=1) == key(original, x=1)


def _module_level_adder(x):
    return x + 1


@pytest.mark.parametrize("source", ["stdin", "-c"])
def test_a_step_from_code_without_a_source_file_has_the_same_key_in_another_process(tmp_path, source):
    program = (
        "from flowyml_core import step\n"
        "rows = step(lambda data: sorted(data, key=lambda r: -r) + [x for x in data if x], name='rows')\n"
        "print(rows.get_cache_key({'data': [3, 1]}, {}))\n"
    )
    keys = set()
    for seed in ("1", "2"):
        args = [sys.executable, "-"] if source == "stdin" else [sys.executable, "-c", program]
        out = subprocess.run(args, input=program if source == "stdin" else None, cwd=tmp_path, capture_output=True,
                             text=True, check=True, env=env_with(PYTHONHASHSEED=seed))
        keys.add(out.stdout.strip())
    assert len(keys) == 1 and "" not in keys
