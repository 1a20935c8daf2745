"""``--param``: names are checked against what the pipeline takes, values converted to the declared type, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from flowyml_core import Pipeline, step
from flowyml_core.errors import FlowymlError
from flowyml_core.params import check_params, declared_params, parse_param_items
from tests.core.helpers import write

TRAIN = """
    from pathlib import Path
    from flowyml_core import Pipeline, step

    @step(outputs=["data"])
    def load(n_samples: int = 10, seed=1):
        Path("ran-load").write_text("yes")
        return list(range(n_samples))

    @step(inputs=["data"], outputs=["model"])
    def train(data, epochs: int = 3, learning_rate: float = 0.1):
        Path("ran-train").write_text(repr((epochs, learning_rate)))
        return sum(data) * epochs * learning_rate

    @step(inputs=["model"], outputs=["score"])
    def evaluate(model, verbose=False, tags: list[str] = ()):
        Path("ran-evaluate").write_text(repr((verbose, tags)))
        return model

    pipeline = Pipeline("train", [load, train, evaluate])
"""


@pytest.fixture
def train(project: Path) -> Path:
    write(project / "pipe.py", TRAIN)
    return project


def test_a_misspelt_name_is_an_error_listing_the_parameters(train, run_cli):
    out = run_cli("run", "pipe.py:pipeline", "--param", "epoch=300", "--param", "learnin_rate=9", cwd=train)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "pipeline 'train' takes no parameters 'epoch', 'learnin_rate'" in out.stderr
    assert "(its parameters: epochs, learning_rate, n_samples, seed, tags, verbose)" in out.stderr
    assert "did you mean 'epochs' for 'epoch'?" in out.stderr and "'learning_rate' for 'learnin_rate'" in out.stderr
    assert not list(train.glob("ran-*"))  # nothing ran, nothing was cached


def test_a_value_that_does_not_convert_names_the_parameter_before_any_step_runs(train, run_cli):
    out = run_cli("run", "pipe.py:pipeline", "--param", "epochs=abc", cwd=train)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        "error: --param epochs=abc: 'abc' is not an integer (declared as int, from the annotation of step 'train')\n"
    )
    assert not (train / "ran-load").exists()  # the step before train did not run either


def test_values_take_the_declared_type(train, run_cli):
    out = run_cli("run", "pipe.py:pipeline", "--param", "epochs=5", "--param", "learning_rate=1",
                  "--param", "verbose=yes", "--param", 'tags=["a", 1]', cwd=train)
    assert out.returncode == 0, out.stderr
    assert (train / "ran-train").read_text() == "(5, 1.0)"  # int from the annotation, float though written "1"
    assert (train / "ran-evaluate").read_text() == "(True, ['a', '1'])"  # bool from the default, list[str]


@step(outputs=["x"])
def typed(count: int, ratio: Optional[float] = None, name: str = "n", when: int | None = None, **rest):
    return count


@step(inputs=["x"], outputs=["y"], condition=lambda deploy: deploy)
def gated(x, threshold=0.5):
    return x


def test_conversion_rules() -> None:
    pipeline = Pipeline("p", [typed, gated], context={"label": 3})
    declared, open_ended = declared_params(pipeline)
    assert open_ended  # typed takes **rest: unknown names cannot be refused
    assert sorted(declared) == ["count", "deploy", "label", "name", "ratio", "threshold", "when"]  # not the input x
    values = check_params(pipeline, parse_param_items(
        ["count=7", "ratio=none", "name=007", "when=3", "threshold=1", "label=4", "deploy=true", "other=[1, 2]"]))
    assert values == {"count": 7, "ratio": None, "name": "007", "when": 3, "threshold": 1.0, "label": 4,
                      "deploy": True, "other": [1, 2]}
    assert type(values["threshold"]) is float and type(values["label"]) is int  # default's type, context's type
    with pytest.raises(FlowymlError, match=r"--param ratio=high: 'high' is not a number"):
        check_params(pipeline, {"ratio": "high"})
    with pytest.raises(FlowymlError, match="is not NAME=VALUE"):
        parse_param_items(["=3"])


def test_unknown_names_are_refused_only_when_every_step_says_what_it_takes() -> None:
    pipeline = Pipeline("p", [gated])
    assert check_params(pipeline, {"threshold": "0.9"}) == {"threshold": 0.9}
    with pytest.raises(FlowymlError, match=r"takes no parameter 'thresold' \(its parameters: deploy, threshold\); "
                                           r"did you mean 'threshold'"):
        check_params(pipeline, {"thresold": "0.9"})
