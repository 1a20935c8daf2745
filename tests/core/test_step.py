"""Steps: the @step forms, Step's attributes, code hash and cache key."""

from __future__ import annotations

import subprocess
import sys
import threading

import attrs
import pytest

import flowyml_core
from flowyml_core import ResourceConfig, Step, step
from flowyml_core.errors import UnfingerprintableError
from tests.core.helpers import load_module as _load_module, write


def test_bare_decorator_makes_a_step_named_after_the_function():
    @step
    def load():
        """Load things."""
        return 1

    assert isinstance(load, Step)
    assert attrs.has(Step)
    assert load.name == "load"
    assert load.inputs == () and load.outputs == ()
    assert load.cache is True and load.retry == 0 and load.condition is None
    assert load() == 1  # still callable like the function
    assert load.__doc__ == "Load things."
    assert load.func.__name__ == "load"


def test_decorator_with_arguments_sets_every_attribute():
    cond = lambda: True  # noqa: E731
    res = ResourceConfig(cpu="2", memory="4Gi")

    @step(inputs="raw", outputs=["clean", "stats"], cache=False, retry=3, retry_delay=0.5, timeout=9,
          condition=cond, resources=res, execution_group="prep", name="cleaner", tags={"team": "ml"})
    def clean(raw):
        return raw, {}

    assert clean.name == "cleaner"
    assert clean.inputs == ("raw",)  # a single string is one input, not its characters
    assert clean.outputs == ("clean", "stats")
    assert (clean.cache, clean.retry, clean.retry_delay, clean.timeout) == (False, 3, 0.5, 9)
    assert clean.condition is cond and clean.resources is res
    assert clean.execution_group == "prep" and clean.tags == {"team": "ml"}


def test_empty_parentheses_form_and_step_class_directly():
    @step()
    def a():
        return "a"

    b = Step(func=lambda x: x, name="b", inputs=["x"])
    assert a.name == "a" and a() == "a"
    assert b.inputs == ("x",) and b(3) == 3


@pytest.mark.parametrize("field", ["retry", "retry_delay", "timeout"])
def test_negative_policies_are_refused(field):
    with pytest.raises(ValueError, match=field):
        step(**{field: -1})(lambda: None)


def test_a_step_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        Step(func=42)


def test_signature_facts_are_known_without_calling():
    @step
    def f(a, b=1, *, c, **rest):
        return a

    @step
    def g(x, y):
        return x

    assert f.param_names == ("a", "b", "c") and f.accepts_any_kwargs
    assert g.param_names == ("x", "y") and not g.accepts_any_kwargs
    assert g.filter_kwargs({"x": 1, "y": 2, "z": 3}) == {"x": 1, "y": 2}
    assert f.filter_kwargs({"z": 3}) == {"z": 3}


# -- code hash -------------------------------------------------------------------
STEP_SOURCE = """
from flowyml_core import step

@step(inputs=["x"], outputs=["y"])
def transform(x):
    return x + {delta}
"""


def test_code_hash_changes_with_the_code_and_the_module_not_with_the_directory(tmp_path):
    one = _load_module(write(tmp_path / "a" / "mod.py", STEP_SOURCE.format(delta=1)), "flowyml_test_mod")
    moved = _load_module(write(tmp_path / "b" / "mod.py", STEP_SOURCE.format(delta=1)), "flowyml_test_mod")
    other = _load_module(write(tmp_path / "other.py", STEP_SOURCE.format(delta=1)), "flowyml_test_other")
    two = _load_module(write(tmp_path / "c" / "mod.py", STEP_SOURCE.format(delta=2)), "flowyml_test_mod")
    assert one.transform.get_code_hash() == moved.transform.get_code_hash()
    assert one.transform.get_code_hash() != two.transform.get_code_hash()
    # Another module is another step, even with the same source (issue 13: its globals may differ).
    assert one.transform.get_code_hash() != other.transform.get_code_hash()
    key = lambda m: m.transform.get_cache_key({"x": 1}, {})  # noqa: E731
    assert key(one) == key(moved) != key(two)


def test_code_hash_without_source_still_tracks_the_code():
    namespace: dict = {}
    exec("def f(x):\n    return x + 1\n", namespace)
    exec("def g(x):\n    return x + 2\n", namespace)
    exec("def f2(x):\n    return x + 1\n", namespace)
    f, g = Step(func=namespace["f"], name="s"), Step(func=namespace["g"], name="s")
    assert f.get_code_hash() != g.get_code_hash()


def test_code_hash_is_computed_once(monkeypatch):
    step_module = sys.modules["flowyml_core.step"]  # the package attribute is the decorator

    calls = []
    real = step_module.code_fingerprint

    def counting(func):
        calls.append(func)
        return real(func)

    monkeypatch.setattr(step_module, "code_fingerprint", counting)

    @step
    def f(x):
        return x

    for i in range(5):
        f.get_cache_key({"x": i}, {})
    assert f.get_code_hash() == f.get_code_hash()
    assert len(calls) == 1


def test_cache_key_is_the_same_in_another_process(tmp_path):
    module = write(tmp_path / "keymod.py", STEP_SOURCE.format(delta=5) + "\nKEY = transform.get_cache_key({'x': [1, 2]}, {'lr': 0.1})\n")
    here = _load_module(module, "keymod").KEY
    out = subprocess.run(
        [sys.executable, "-c", "import keymod; print(keymod.KEY)"], cwd=tmp_path, capture_output=True, text=True,
        check=True,
    )
    assert out.stdout.strip() == here


# -- cache key -------------------------------------------------------------------
@step(inputs=["data"], outputs=["model"])
def train(data, learning_rate=0.1):
    return sum(data) * learning_rate


def test_cache_key_changes_with_input_values():
    assert train.get_cache_key({"data": [1, 2]}, {}) == train.get_cache_key({"data": [1, 2]}, {})
    assert train.get_cache_key({"data": [1, 2]}, {}) != train.get_cache_key({"data": [1, 3]}, {})
    assert train.get_cache_key({"data": 1}, {}) != train.get_cache_key({"data": 1.0}, {})
    assert train.get_cache_key({"data": "1"}, {}) != train.get_cache_key({"data": 1}, {})


def test_cache_key_changes_with_received_params_not_with_unrelated_ones():
    base = train.get_cache_key({"data": [1]}, {"learning_rate": 0.1})
    assert base != train.get_cache_key({"data": [1]}, {"learning_rate": 0.2})
    # A parameter the step does not take cannot change what it computes.
    assert base == train.get_cache_key({"data": [1]}, {"learning_rate": 0.1, "epochs": 10})


def test_cache_key_of_a_kwargs_step_covers_every_param():
    @step
    def anything(**params):
        return params

    assert anything.get_cache_key({}, {"a": 1}) != anything.get_cache_key({}, {"a": 1, "b": 2})


def test_cache_key_uses_known_fingerprints_instead_of_rehashing():
    lock_a, lock_b = threading.Lock(), threading.Lock()  # unfingerprintable: only a known fingerprint keys them
    with pytest.raises(UnfingerprintableError, match="step 'train': input 'data' is a _thread.lock"):
        train.get_cache_key({"data": lock_a}, {})
    k1 = train.get_cache_key({"data": lock_a}, {}, input_fingerprints={"data": "fp-1"})
    k2 = train.get_cache_key({"data": lock_b}, {}, input_fingerprints={"data": "fp-1"})
    k3 = train.get_cache_key({"data": lock_b}, {}, input_fingerprints={"data": "fp-2"})
    assert k1 == k2 != k3


def test_steps_with_the_same_code_but_different_names_have_different_keys():
    a = Step(func=train.func, name="a", inputs=["data"])
    b = Step(func=train.func, name="b", inputs=["data"])
    assert a.get_cache_key({"data": 1}, {}) != b.get_cache_key({"data": 1}, {})


def test_public_exports_are_lazy_and_complete():
    for name in ["step", "Step", "Pipeline", "Context", "ExecutionResult", "ExecutionStatus", "RunResult",
                 "SubmissionResult", "ResourceConfig", "DockerConfig", "hookimpl"]:
        assert name in flowyml_core.__all__
        assert getattr(flowyml_core, name) is not None
    with pytest.raises(AttributeError):
        flowyml_core.no_such_name  # noqa: B018


def test_public_names_follow_the_module_that_is_loaded_now():
    """pytester's in-process runs unload modules; a name kept from the old copy would fail isinstance checks."""
    import subprocess
    import sys

    code = (
        "import sys, flowyml_core, flowyml_core.testing\n"
        "old, old_kit = flowyml_core.ExecutionResult, flowyml_core.testing.CallLog\n"
        "for name in ['flowyml_core.results', 'flowyml_core.testing.samples']:\n"
        "    del sys.modules[name]\n"
        "from flowyml_core.results import ExecutionResult\n"
        "from flowyml_core.testing.samples import CallLog\n"
        "assert ExecutionResult is not old and flowyml_core.ExecutionResult is ExecutionResult\n"
        "assert CallLog is not old_kit and flowyml_core.testing.CallLog is CallLog\n"
        "import flowyml_core.step\n"
        "assert callable(flowyml_core.step) and not isinstance(flowyml_core.step, type(sys))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
