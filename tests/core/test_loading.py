"""``flowyml run FILE:NAME`` never runs user code by mistake, and anything raised at import is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.helpers import write

PIPE = """
    from pathlib import Path
    from flowyml_core import Pipeline, step

    @step(outputs=["x"])
    def deploy():
        Path("deployed").write_text("the step's body ran")
        return 1

    def cleanup():
        Path("cleaned").write_text("a plain function ran")

    def make() -> Pipeline:
        return Pipeline("made", [deploy])

    def make_with_args(n) -> Pipeline:
        Path("called-with-args").write_text("yes")
        return Pipeline("made", [deploy])

    pipeline = Pipeline("p", [deploy])
    label = "not a pipeline"
"""


@pytest.fixture
def demo(project: Path) -> Path:
    write(project / "pipe.py", PIPE)
    return project


@pytest.mark.parametrize("target, fragment, marker", [
    ("pipe.py:deploy", "pipe.py:deploy is a step, not a pipeline", "deployed"),
    ("pipe.py:cleanup", "pipe.py:cleanup is a function, not a flowyml Pipeline (flowyml calls a function only when "
                        "it takes no arguments and is annotated `-> Pipeline`)", "cleaned"),
    ("pipe.py:make_with_args", "is a function, not a flowyml Pipeline", "called-with-args"),
    ("pipe.py:label", "pipe.py:label is a str, not a flowyml Pipeline", None),
])
def test_what_is_not_a_pipeline_is_refused_before_it_is_called(demo, run_cli, target, fragment, marker):
    out = run_cli("run", target, "--stack", "local", cwd=demo)
    assert out.returncode == 1 and fragment in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.rstrip().endswith("pipelines defined there: pipeline")
    if marker:
        assert not (demo / marker).exists(), "flowyml called the object before refusing it"


def test_a_function_annotated_to_return_a_pipeline_is_called(demo, run_cli):
    out = run_cli("run", "pipe.py:make", "--stack", "local", cwd=demo)
    assert out.returncode == 0, out.stderr
    assert "running made on stack local" in out.stdout and (demo / "deployed").exists()


@pytest.mark.parametrize("body, message", [
    ("import sys\nsys.exit(7)\n",
     'error: importing bad.py called sys.exit(7) before the pipeline was defined; put script code under '
     '`if __name__ == "__main__":` so that importing bad.py only defines it\n'),
    ("raise SystemExit('usage: train.py EPOCHS')\n",
     "error: importing bad.py called sys.exit('usage: train.py EPOCHS') before the pipeline was defined; put script "
     'code under `if __name__ == "__main__":` so that importing bad.py only defines it\n'),
    ("class Abort(BaseException):\n    pass\nraise Abort('stop here')\n", "error: importing bad.py failed: Abort: stop here\n"),
])
def test_anything_raised_at_import_is_one_line_naming_the_file(project, run_cli, body, message):
    write(project / "bad.py", body)
    out = run_cli("run", "bad.py:pipeline", cwd=project)
    assert (out.returncode, out.stdout, out.stderr) == (1, "", message)
