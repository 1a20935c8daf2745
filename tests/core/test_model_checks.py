"""Bad input to the pipeline model is refused where it is written, in one line that names the step or field.

Each case here was accepted silently, or failed later with a bare TypeError,
before these checks (see docs/reference/model.md).
"""

from __future__ import annotations

import inspect
import threading
import time
import types

import pytest

from flowyml_core import Pipeline, step
from flowyml_core.container import DockerConfig
from flowyml_core.errors import DefinitionError, FlowymlError
from flowyml_core.execution import bind_inputs
from flowyml_core.pipeline import run_on_stack
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import ExecutionStatus as S
from flowyml_core.results import SubmissionResult
from tests.core.helpers import write


def _p(p):
    return p


# -- 1. duplicate names ----------------------------------------------------------------
@pytest.mark.parametrize("field", ["outputs", "inputs"])
def test_a_name_declared_twice_is_refused_when_the_step_is_defined(field):
    with pytest.raises(DefinitionError) as info:

        @step(**{field: ["o", "o"]})
        def twice(o=None, **rest):
            return (1, 2)

    message = str(info.value)
    assert message.startswith("step 'twice' (test_model_checks.py:")
    assert f"{field} ['o', 'o'] name 'o' more than once" in message


# -- 2. declared inputs and the function's parameters -----------------------------------
def _unreceived(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flowyml.step" and r.levelname == "WARNING"]


def test_an_input_no_parameter_receives_is_said_naming_the_step_input_and_parameters(caplog):
    """Not refused: the seed drops it (it may only order the step, or feed its condition), but never silently."""
    with caplog.at_level("WARNING", logger="flowyml.step"):
        made = step(inputs=["q", "r"])(_p)
    assert made.inputs == ("q", "r")
    [message] = _unreceived(caplog)
    assert message.startswith("step '_p' (test_model_checks.py:")
    assert "input 'r' reaches no parameter of _p() (its parameters: p): not passed, only waited for" in message
    assert "add a parameter (or **kwargs)" in message


def test_an_input_bound_by_position_is_lost_when_a_later_input_takes_its_parameter_by_name(caplog):
    # inputs map by name, then by position: 'x' would go to `a` by position, then input 'a' takes `a` by name.
    with caplog.at_level("WARNING", logger="flowyml.step"):

        @step(inputs=["x", "a"])
        def f(a, b=1):
            return a

    assert ["input 'x' reaches no parameter of f() (its parameters: a, b)" in m for m in _unreceived(caplog)] == [True]


def test_star_args_receives_no_input_because_steps_are_called_by_keyword(caplog):
    with caplog.at_level("WARNING", logger="flowyml.step"):

        @step(inputs=["a", "b"])
        def f(*args):
            return args

    assert ["inputs 'a', 'b' reach no parameter of f() (it takes no named" in m for m in _unreceived(caplog)] == [True]


def test_an_input_the_condition_reads_is_received(caplog):
    with caplog.at_level("WARNING", logger="flowyml.step"):

        @step(inputs=["data", "approved"], condition=lambda approved: approved)
        def deploy(data):
            return data

        @step(inputs=["data", "flag"], condition=lambda **assets: True)
        def anything(data):
            return data

        @step(inputs=["data", "other"], condition=lambda approved: approved)
        def partly(data):
            return data

    assert [m.split(":")[0] for m in _unreceived(caplog)] == ["step 'partly' (test_model_checks.py"]
    assert "input 'other' reaches no parameter of partly() (its parameters: data) nor its condition" \
        in _unreceived(caplog)[0]


def test_inputs_every_parameter_receives_are_accepted_and_bound_as_checked():
    @step(inputs=["raw", "labels"])
    def by_position(data, targets):
        return data

    @step(inputs=["b", "a"])
    def by_name(a, b):
        return a

    @step(inputs=["a", "b", "c"])
    def open_ended(a, **rest):
        return rest

    assert bind_inputs(by_position, {"raw": 1, "labels": 2})[0] == {"data": 1, "targets": 2}
    assert bind_inputs(by_name, {"a": 1, "b": 2})[0] == {"a": 1, "b": 2}
    assert bind_inputs(open_ended, {"a": 1, "b": 2, "c": 3})[0] == {"a": 1, "b": 2, "c": 3}


# -- 3. types of the step's settings ----------------------------------------------------
BAD_SETTINGS = [
    ({"condition": 5}, "condition must be a function", "got 5 (an int)"),
    ({"cache": "yes"}, "cache must be True or False", "got 'yes' (a str)"),
    ({"retry": "2"}, "retry must be a whole number >= 0", "got '2' (a str)"),
    ({"retry": True}, "retry must be a whole number >= 0", "got True (a bool)"),
    ({"retry": 1.5}, "retry must be a whole number >= 0", "got 1.5 (a float)"),
    ({"retry": -1}, "retry must be a whole number >= 0", "got -1"),
    ({"retry_delay": "1"}, "retry_delay must be a number of seconds >= 0", "got '1' (a str)"),
    ({"retry_delay": False}, "retry_delay must be a number of seconds >= 0", "got False (a bool)"),
    ({"retry_delay": float("nan")}, "retry_delay must be a number of seconds >= 0", "got nan"),
    ({"timeout": "30"}, "timeout must be None or a number of seconds >= 0", "got '30' (a str)"),
    ({"timeout": True}, "timeout must be None or a number of seconds >= 0", "got True (a bool)"),
    ({"timeout": -0.5}, "timeout must be None or a number of seconds >= 0", "got -0.5"),
    ({"tags": {"team": 1}}, "tags must be a dict of strings", "got {'team': 1}"),
    ({"tags": ["team"]}, "tags must be a dict of strings", "got ['team']"),
    ({"version": 1.5}, "version must be a string, an int or None", "got 1.5 (a float)"),
    ({"version": True}, "version must be a string, an int or None", "got True (a bool)"),
    ({"execution_group": 3}, "execution_group must be a non-empty string or None", "got 3"),
    ({"resources": ["cpu", "1"]}, "resources must be a ResourceConfig(...), a dict of its fields or None",
     "got ['cpu', '1']"),
    ({"outputs": 5}, "outputs must be asset names (non-empty strings)", "got 5 (an int)"),
    ({"outputs": ["ok", ""]}, "outputs must be asset names (non-empty strings)", "got '' (a str)"),
]


@pytest.mark.parametrize("settings, rule, got", BAD_SETTINGS, ids=[next(iter(s)) + "=" + repr(s[next(iter(s))])
                                                                    for s, _, _ in BAD_SETTINGS])
def test_a_setting_of_the_wrong_type_is_refused_naming_the_step_and_what_is_accepted(settings, rule, got):
    with pytest.raises(DefinitionError) as info:
        step(**settings)(_p)
    message = str(info.value)
    assert message.startswith("step '_p' (test_model_checks.py:")
    assert rule in message and got in message and "\n" not in message


def test_an_empty_name_is_refused_naming_the_function():
    with pytest.raises(DefinitionError, match=r"^step of function '_p' \(test_model_checks.py:\d+\): name must be "
                                              r"a non-empty string, got ''$"):
        step(name="")(_p)


def test_all_problems_of_a_step_are_reported_at_once():
    with pytest.raises(DefinitionError) as info:
        step(cache="no", retry="3", condition=True)(_p)
    message = str(info.value)
    assert "cache must be" in message and "retry must be" in message and "condition must be" in message


def test_the_error_is_a_flowyml_error_and_still_the_value_and_type_error_it_used_to_be():
    for exc_type in (FlowymlError, ValueError, TypeError):
        with pytest.raises(exc_type):
            step(retry="2")(_p)


def test_good_settings_are_accepted_as_given():
    s = step(retry=0, retry_delay=0, timeout=0.5, cache=False, condition=None, version="v2",
             tags=types.MappingProxyType({"team": "ml"}), execution_group="g", resources=ResourceConfig(cpu="1"))(_p)
    assert (s.retry, s.retry_delay, s.timeout, s.cache, s.version, s.tags) == (0, 0, 0.5, False, "v2", {"team": "ml"})
    assert step(version=3, timeout=None, retry_delay=1.5)(_p).version == 3


def test_flowyml_run_of_a_file_with_a_bad_step_prints_one_line_naming_it(project, run_cli):
    write(project / "pipe.py", """
        from flowyml_core import Pipeline, step

        @step(outputs=["a"], retry="2")
        def load():
            return 1

        pipeline = Pipeline("p", [load])
    """)
    out = run_cli("run", "pipe.py:pipeline", cwd=project)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    # line 3 is the @step line: a decorated function's code starts at its decorator
    assert "step 'load' (pipe.py:3): retry must be a whole number >= 0 (the extra attempts), got '2' (a str)" \
        in out.stderr


# -- resources given as a dict --------------------------------------------------------------
def test_a_dict_of_resources_becomes_a_resource_config_checked_where_it_is_written():
    made = step(resources={"cpu": "2", "memory": "512Mi"})(_p)
    assert made.resources == ResourceConfig(cpu="2", memory="512Mi")  # what every executor and group merge reads
    with pytest.raises(DefinitionError, match=r"step '_p' .*resources: invalid memory '4GB': memory is bytes"):
        step(resources={"memory": "4GB"})(_p)
    with pytest.raises(DefinitionError, match=r"resources field 'ram' is unknown \(fields: cpu, memory"):
        step(resources={"ram": "4Gi"})(_p)


def test_a_group_of_steps_with_dict_resources_merges_them():
    from flowyml_core import Pipeline

    @step(outputs=["a"], execution_group="g", resources={"cpu": "1", "memory": "1Gi"})
    def first():
        return 1

    @step(inputs=["a"], outputs=["b"], execution_group="g", resources={"cpu": "2"})
    def second(a):
        return a

    (unit,) = Pipeline("grouped", [first, second]).execution_units()
    assert unit.aggregated_resources == ResourceConfig(cpu="2", memory="1Gi")


# -- 4. resources and containers --------------------------------------------------------
@pytest.mark.parametrize("field, value, says", [
    ("disk_size", "abc", "invalid disk_size 'abc': disk_size is bytes with a Kubernetes suffix"),
    ("memory", "4GB", "invalid memory '4GB': memory is bytes with a Kubernetes suffix"),
    ("gpu_count", "2", "invalid gpu_count '2': gpu_count is a whole number >= 0"),
    ("gpu_count", True, "invalid gpu_count True: gpu_count is a whole number >= 0"),
    ("gpu_count", -1, "invalid gpu_count -1"),
    ("gpu", 1, "invalid gpu 1: gpu is a non-empty string or None"),
    ("machine_type", ["n1"], "invalid machine_type ['n1']: machine_type is a non-empty string or None"),
    ("cpu", [2], "invalid cpu [2]: CPU is a number of cores"),
])
def test_resource_errors_name_the_field(field, value, says):
    with pytest.raises(DefinitionError) as info:
        ResourceConfig(**{field: value})
    assert says in str(info.value)


def test_resource_numbers_are_still_read_as_units():
    r = ResourceConfig(cpu=2, memory=2048, disk_size="10Gi", gpu="nvidia-tesla-t4", gpu_count=1)
    assert (r.cpu, r.memory, r.disk_size, r.cpu_cores) == ("2", "2048", "10Gi", 2.0)


@pytest.mark.parametrize("settings, says", [
    ({"env_vars": {"A": 1}}, "DockerConfig env_vars['A'] must be a string, got 1 (int); write it as '1'"),
    ({"build_args": [1]}, "DockerConfig build_args must be a dict of strings"),
    ({"build_args": {"X": None}}, "DockerConfig build_args['X'] must be a string, got None"),
    ({"env_vars": {3: "x"}}, "DockerConfig env_vars: the name 3 must be a non-empty string"),
    ({"requirements": ["numpy", 2]}, "DockerConfig requirements must be a list of strings"),
    ({"requirements": 5}, "DockerConfig requirements must be a list of strings"),
    ({"command": ["python", 3]}, "DockerConfig command must be a list of strings"),
    ({"image": 7}, "DockerConfig image must be a non-empty string or None, got 7"),
    ({"platform": ""}, "DockerConfig platform must be a non-empty string, got ''"),
])
def test_docker_config_errors_name_the_field(settings, says):
    with pytest.raises(DefinitionError) as info:
        DockerConfig(**settings)
    assert says in str(info.value)


# -- 5. --param named like an asset -----------------------------------------------------
P4 = """
    from pathlib import Path
    from flowyml_core import Pipeline, step

    @step(outputs=["a"])
    def first(n: int = 3):
        return n

    @step(outputs=["crash"])
    def decide(sleep: float = 0.0):
        Path("ran-decide").write_text("yes")
        return False

    @step(inputs=["a"], outputs=["b"])
    def crasher(a, crash: bool = False):
        return a

    p4 = Pipeline("p4", [first, decide, crasher])
"""


def test_a_param_named_like_an_asset_says_it_is_an_asset_and_how_to_fix_it(project, run_cli):
    write(project / "pipe.py", P4)
    out = run_cli("run", "pipe.py:p4", "--param", "crash=true", cwd=project)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        "error: --param crash: pipeline 'p4' has an asset 'crash' (produced by step 'decide' and passed to step "
        "'crasher' by name), so 'crash' is not a parameter; to set it with --param, rename the argument of step "
        "'crasher' or the output of step 'decide' so that the two names differ (its parameters: n, sleep)\n"
    )
    assert not (project / "ran-decide").exists()


def test_an_asset_and_a_misspelt_param_are_both_explained(project, run_cli):
    write(project / "pipe.py", P4)
    out = run_cli("run", "pipe.py:p4", "--param", "crash=true", "--param", "sleeep=1", cwd=project)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "takes no parameter 'sleeep' (its parameters: n, sleep); did you mean 'sleep'" in out.stderr
    assert "pipeline 'p4' has an asset 'crash' (produced by step 'decide'" in out.stderr


# -- 6. SubmissionResult with the seed's zero-argument callback --------------------------
def test_a_zero_argument_callback_is_called_without_the_timeout():
    calls = []

    def wait_pipeline():
        calls.append("called")
        return S.COMPLETED

    sub = SubmissionResult("job-z", wait_pipeline)
    assert sub.wait() is S.COMPLETED
    assert sub.wait(5) is S.COMPLETED and calls == ["called"]


def test_a_zero_argument_callback_still_honours_the_timeout_and_a_later_wait_joins_the_same_call():
    release = threading.Event()
    calls = []

    def wait_pipeline():
        calls.append(threading.current_thread().name)
        release.wait(10)
        return S.FAILED

    sub = SubmissionResult("job-slow", wait_pipeline)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="job-slow did not finish within 0.2s"):
        sub.wait(0.2)
    assert 0.15 < time.monotonic() - started < 2
    with pytest.raises(TimeoutError):
        sub.wait(0.05)
    release.set()
    assert sub.wait(5) is S.FAILED
    assert calls == ["flowyml-wait-job-slow"]  # one call, in a daemon thread, not one per wait


def test_a_zero_argument_callbacks_error_reaches_the_waiter():
    def wait_pipeline():
        raise RuntimeError("the job failed")

    with pytest.raises(RuntimeError, match="the job failed"):
        SubmissionResult("job-e", wait_pipeline).wait(5)


def test_the_calling_convention_is_decided_at_construction():
    received = []

    class Waiter:
        def __call__(self, *args):
            received.append(args)
            return S.COMPLETED

    waiter = Waiter()
    waiter.__signature__ = inspect.Signature()  # takes nothing, as far as inspect can tell
    sub = SubmissionResult("job-c", waiter)
    waiter.__signature__ = inspect.Signature([inspect.Parameter("timeout", inspect.Parameter.POSITIONAL_ONLY)])
    assert sub.wait() is S.COMPLETED
    assert received == [()]


def test_a_callback_with_a_timeout_parameter_still_receives_it():
    received = []

    def poll(timeout=None):
        received.append(timeout)
        return S.COMPLETED

    assert SubmissionResult("job-t", poll).wait(3) is S.COMPLETED
    assert received and 2 < received[0] <= 3


# -- 7. context= ------------------------------------------------------------------------
@step(outputs=["x"])
def _source(k: int = 1):
    return k


@pytest.mark.parametrize("context, got", [([1, 2], "got [1, 2] (list)"), ("k=2", "got 'k=2' (str)"),
                                          ({1: 2}, "got a dict whose keys are not all strings")])
def test_run_with_a_context_that_is_not_a_context_or_a_dict_says_what_it_takes(project, context, got):
    with pytest.raises(DefinitionError) as info:
        Pipeline("ctx", [_source]).run(context=context)
    assert str(info.value) == (
        "pipeline 'ctx': run(context=...) takes a Context(...) or a dict of parameters by name "
        f"(e.g. {{'epochs': 10}}), {got}"
    )
    assert not (project / ".flowyml").exists()  # refused before a stack was resolved or a run recorded


def test_pipeline_and_run_on_stack_check_context_too():
    with pytest.raises(DefinitionError, match=r"^Pipeline\('ctx', context=\.\.\.\) takes a Context"):
        Pipeline("ctx", [_source], context=[("k", 2)])
    with pytest.raises(DefinitionError, match=r"^pipeline 'ctx': context takes a Context"):
        run_on_stack(Pipeline("ctx", [_source]), stack=None, context=(1, 2))


def test_a_dict_context_still_runs(project):
    result = Pipeline("ctx", [_source]).run(context={"k": 5})
    assert result.success and result.outputs == {"x": 5}


# -- a setting changed on a defined step ----------------------------------------------------------------------
def test_a_setting_changed_after_definition_is_checked_and_a_bad_one_refused():
    @step(outputs=["y"], retry=1)
    def settable(x: int = 1) -> int:
        return x

    with pytest.raises(DefinitionError, match=r"step 'settable' \(.*\): retry must be a whole number >= 0"):
        settable.retry = -1
    assert settable.retry == 1, "the refused value is not kept"
    with pytest.raises(DefinitionError, match="cache must be True or False"):
        settable.cache = "yes"
    settable.retry = 3
    settable.outputs = "z"
    settable.resources = {"cpu": "2"}
    assert (settable.retry, settable.outputs, settable.resources.cpu) == (3, ("z",), "2")


def test_a_version_set_after_definition_changes_the_key_as_version_given_to_step_does():
    def body(x: int = 1) -> int:
        return x

    plain, versioned = step(body, name="a"), step(body, name="a", version=2)
    assert plain.get_code_hash() != versioned.get_code_hash()
    plain.version = 2
    assert plain.get_code_hash() == versioned.get_code_hash()
    assert plain.get_cache_key({}, {"x": 1}) == versioned.get_cache_key({}, {"x": 1})
