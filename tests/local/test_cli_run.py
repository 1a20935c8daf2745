"""``flowyml run`` through the real console script, on the built-in local stack."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.conftest import REPO

QUICKSTART = REPO / "examples" / "quickstart.py"


def test_quickstart_twice_second_run_fully_cached(project: Path, run_cli) -> None:
    shutil.copy(QUICKSTART, project / "quickstart.py")

    first = run_cli("run", "quickstart.py:pipeline", cwd=project)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "\r" not in out and "\033" not in out  # not a terminal: plain lines
    assert re.search(r"^running quickstart on stack local \(5 steps, run [0-9a-f]{16}\)$", out, re.M)
    for i, name in enumerate(["make_dataset", "split", "train", "evaluate", "report"], start=1):
        assert re.search(rf"^\[{i}/5\] {name} +done +\d+\.\d{{3}}s$", out, re.M), out
    assert "| trained 150 epochs" in out  # what the step printed, under its line
    run_id = re.search(r"run ([0-9a-f]{16}) completed in [\d.]+s: 5 ran, 0 cached, 0 skipped, 0 failed", out).group(1)
    run_dir = project / ".flowyml" / "artifacts" / "default" / run_id
    assert f"outputs: {run_dir}\n" in out
    match = re.search(r"^  report = accuracy (\d+\.\d)% on 100 held-out rows", out, re.M)
    assert match and float(match.group(1)) > 75, out  # a model that learned something

    # the outputs are where the summary says, one file each: <step>.<name>, a JSON header line after the magic line
    magic, header = (run_dir / "evaluate.metrics").read_bytes().split(b"\n")[:2]
    assert magic == b"FLOWYML-ARTIFACT/3" and json.loads(header)["materializer"] == "json"
    assert {p.name for p in run_dir.iterdir()} == {"make_dataset.features", "make_dataset.labels", "split.train_set",
                                                    "split.test_set", "train.model", "evaluate.metrics",
                                                    "report.report"}

    second = run_cli("run", "quickstart.py:pipeline", cwd=project)
    assert second.returncode == 0, second.stderr
    out2 = second.stdout
    for i, name in enumerate(["make_dataset", "split", "train", "evaluate", "report"], start=1):
        assert re.search(rf"^\[{i}/5\] {name} +cached ", out2, re.M), out2
    assert "fully cached: all 5 steps came from the cache" in out2
    assert f"cache: {project / '.flowyml' / 'cache'}" in out2
    assert "| trained" not in out2  # nothing ran
    assert re.search(r"^  report = accuracy", out2, re.M)


def test_a_changed_parameter_reruns_from_the_step_that_takes_it(project: Path, run_cli) -> None:
    shutil.copy(QUICKSTART, project / "quickstart.py")
    assert run_cli("run", "quickstart.py:pipeline", cwd=project).returncode == 0
    done = run_cli("run", "quickstart.py:pipeline", "--param", "epochs=20", cwd=project)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\[2/5\] split +cached", done.stdout, re.M)
    assert re.search(r"^\[3/5\] train +done", done.stdout, re.M)
    assert "| trained 20 epochs" in done.stdout
    assert "3 ran, 2 cached, 0 skipped, 0 failed" in done.stdout


FAILING = '''
from flowyml_core import Pipeline, step


@step(outputs="rows")
def load():
    print("loaded 2 rows")
    return [1, 2]


@step(inputs="rows", outputs="third")
def pick(rows):
    print("picking the third row")
    return rows[2]


@step(inputs="third")
def use(third):
    return third


@step(outputs="other")
def independent():
    return "still runs"


pipeline = Pipeline("failing", [load, pick, use, independent])
'''


def test_failing_pipeline_exits_non_zero_with_the_steps_error(project: Path, run_cli) -> None:
    (project / "failing.py").write_text(FAILING)
    done = run_cli("run", "failing.py:pipeline", cwd=project)
    assert done.returncode == 1
    out, err = done.stdout, done.stderr
    assert re.search(r"^\[2/4\] pick +FAILED +\d+\.\d{3}s  IndexError\('list index out of range'\)$", out, re.M), out
    assert re.search(r"^\[3/4\] use +skipped .*\(not run: upstream step 'pick' failed\)$", out, re.M), out
    assert re.search(r"^\[4/4\] independent +done", out, re.M)
    assert "FAILED in" in out and "2 ran, 0 cached, 1 skipped, 1 failed" in out
    assert err.startswith("error: step 'pick' failed: IndexError('list index out of range')\nTraceback")
    assert 'failing.py", line 14, in pick' in err and "return rows[2]" in err
    assert "flowyml_core" not in err  # the user's frames, not ours
    assert "  | picking the third row" in err
    assert err.count("list index out of range") == 2  # the error line and the traceback's last line: said once


def test_progress_lines_are_plain_for_a_pipe_and_the_stack_option_works(project: Path, run_cli) -> None:
    (project / "stacks.toml").write_text(
        '[stacks.threads]\nexecutor = { flavor = "local", max_workers = 2 }\n'
        'cache_store = { flavor = "local", path = "cache-here" }\n'
    )
    (project / "tiny.py").write_text(
        "from flowyml_core import Pipeline, step\n"
        "@step(outputs='a')\ndef a(): return 1\n"
        "@step(outputs='b')\ndef b(): return 2\n"
        "@step(inputs=['a', 'b'], outputs='c')\ndef c(a, b): return a + b\n"
        "pipeline = Pipeline('tiny', [a, b, c])\n"
    )
    done = run_cli("run", "tiny.py:pipeline", "--stack", "threads", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("running tiny on stack threads (3 steps, run ")
    shown = [line.split()[1] for line in lines[1:4]]
    assert sorted(shown[:2]) == ["a", "b"] and shown[2] == "c"  # a and b run at once: either may finish first
    assert [line.split()[0] for line in lines[1:4]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "results:" in lines and "  c = 3" in lines
    assert (project / "cache-here").is_dir()
    assert "outputs: nothing was written" not in done.stdout  # no artifact store in this stack: nothing claimed


def test_bad_max_workers_in_stacks_toml_is_refused_with_the_field(project: Path, run_cli) -> None:
    (project / "stacks.toml").write_text('[stacks.bad]\nexecutor = { flavor = "local", max_workers = 0 }\n')
    shutil.copy(QUICKSTART, project / "quickstart.py")
    done = run_cli("run", "quickstart.py:pipeline", "--stack", "bad", cwd=project)
    assert done.returncode == 1
    assert "stack 'bad'" in done.stderr and "executor 'local'" in done.stderr
    assert "max_workers must be an integer >= 1, got 0" in done.stderr
    assert "Traceback" not in done.stderr
