"""Run history: every run leaves an entry; ``flowyml runs list|show``; ``runs status|logs|stop`` by run id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flowyml_core.history import RunNotFoundError, find_run, flush, list_runs
from tests.core.helpers import write

PIPELINE = """
    import os

    from flowyml_core import Pipeline, step

    @step(outputs=["numbers"])
    def load(n=3):
        return list(range(n))

    @step(inputs=["numbers"], outputs=["total"])
    def total(numbers, fail=False):
        if fail:
            raise RuntimeError("asked to fail; the store is at " + os.environ.get("STORE_DIR", "?"))
        return sum(numbers)

    pipeline = Pipeline("hist-demo", [load, total])
    other = Pipeline("other-demo", [load])
"""

STACKS = """
    default = "loc"

    [stacks.loc]
    executor = "local"
    artifact_store = { flavor = "local", path = "${env:STORE_DIR}" }
    cache_store = { flavor = "local", path = ".flowyml/cache" }

    [stacks.bare]
    executor = "local"
"""


@pytest.fixture
def hist(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(project / "pipe.py", PIPELINE)
    write(project / "stacks.toml", STACKS)
    monkeypatch.setenv("STORE_DIR", str(project / "secret-store-dir-9f1c"))
    return project


def cli_json(run_cli, *args: str, cwd: Path):
    out = run_cli(*args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_each_cli_run_is_listed_newest_first_with_its_steps(hist, run_cli):
    first = run_cli("run", "pipe.py:pipeline", cwd=hist)
    second = run_cli("run", "pipe.py:pipeline", "--param", "n=5", cwd=hist)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr

    listing = cli_json(run_cli, "runs", "list", cwd=hist)
    assert listing["history"] == str(hist / ".flowyml" / "runs") and listing["limit"] == 20
    runs = listing["runs"]
    assert [r["pipeline"] for r in runs] == ["hist-demo", "hist-demo"]
    newest, oldest = runs
    assert newest["started_at"] > oldest["started_at"]
    assert (newest["status"], newest["stack"], newest["executor"]) == ("completed", "loc", "local")
    assert oldest["step_counts"] == {"completed": 2}
    assert newest["step_counts"] == {"completed": 2}  # n changed: load's cache key changed too
    assert newest["duration"] >= 0 and newest["job_id"] is None

    shown = cli_json(run_cli, "runs", "show", newest["run_id"], cwd=hist)
    assert shown["params"] == {"n": 5}
    assert shown["source"] == "pipe.py:pipeline"
    assert list(shown["steps"]) == ["load", "total"]
    assert {s["status"] for s in shown["steps"].values()} == {"completed"}

    text = run_cli("runs", "list", cwd=hist).stdout.splitlines()
    assert text[0].split() == ["RUN", "ID", "PIPELINE", "STACK", "STATUS", "STARTED", "DURATION", "STEPS"]
    assert text[1].startswith(newest["run_id"]) and "2 ran" in text[1]


def test_a_cached_rerun_and_a_failed_run(hist, run_cli):
    assert run_cli("run", "pipe.py:pipeline", cwd=hist).returncode == 0
    assert run_cli("run", "pipe.py:pipeline", cwd=hist).returncode == 0
    failed = run_cli("run", "pipe.py:pipeline", "--param", "fail=true", cwd=hist)
    assert failed.returncode == 1

    bad, cached, _ = cli_json(run_cli, "runs", "list", cwd=hist)["runs"]
    assert cached["status"] == "cached" and cached["step_counts"] == {"cached": 2}
    assert bad["status"] == "failed" and bad["step_counts"] == {"cached": 1, "failed": 1}

    shown = run_cli("runs", "show", bad["run_id"], cwd=hist)
    assert shown.returncode == 0, shown.stderr
    assert "status:   failed" in shown.stdout
    assert "RuntimeError: asked to fail" in shown.stdout
    steps = cli_json(run_cli, "runs", "show", bad["run_id"], cwd=hist)["steps"]
    assert steps["load"] == {"status": "cached", "cached": True, "duration": steps["load"]["duration"]}
    assert steps["total"]["status"] == "failed"


def test_secrets_of_the_stack_never_reach_the_history(hist, run_cli):
    """The store path comes from ${env:STORE_DIR}: the step's error and the artifact URIs hold it."""
    assert run_cli("run", "pipe.py:pipeline", cwd=hist).returncode == 0
    assert run_cli("run", "pipe.py:pipeline", "--param", "fail=true", "--param", "n=4", cwd=hist).returncode == 1
    files = sorted((hist / ".flowyml" / "runs").glob("*.json"))
    assert len(files) == 2
    for path in files:
        assert "secret-store-dir-9f1c" not in path.read_text()
    failed = json.loads(files[-1].read_text())
    assert "asked to fail; the store is at " in failed["steps"]["total"]["error"]
    for args in (["runs", "list"], ["runs", "show", failed["run_id"]], ["runs", "list", "--json"]):
        out = run_cli(*args, cwd=hist)
        assert "secret-store-dir-9f1c" not in out.stdout + out.stderr


def test_filters_and_limit(hist, run_cli):
    for args in (["--stack", "bare"], ["--stack", "loc"], ["--stack", "bare"]):
        assert run_cli("run", "pipe.py:pipeline", *args, cwd=hist).returncode == 0
    assert run_cli("run", "pipe.py:other", "--stack", "bare", cwd=hist).returncode == 0

    def ids(*args: str) -> list[str]:
        return [r["stack"] + "/" + r["pipeline"] for r in cli_json(run_cli, "runs", "list", *args, cwd=hist)["runs"]]

    assert ids() == ["bare/other-demo", "bare/hist-demo", "loc/hist-demo", "bare/hist-demo"]
    assert ids("--stack", "loc") == ["loc/hist-demo"]
    assert ids("--pipeline", "hist-demo", "--stack", "bare") == ["bare/hist-demo", "bare/hist-demo"]
    assert ids("--limit", "2") == ["bare/other-demo", "bare/hist-demo"]
    assert len(ids("--limit", "0")) == 4
    assert ids("--status", "failed") == []
    empty = run_cli("runs", "list", "--stack", "nope", cwd=hist)
    assert empty.returncode == 0 and "no runs recorded in this project matching --stack nope" in empty.stdout
    negative = run_cli("runs", "list", "--limit", "-1", cwd=hist)
    assert negative.returncode == 1 and "--limit must be 0" in negative.stderr


def test_run_ids_by_prefix_unknown_and_ambiguous(hist, run_cli):
    for run_id in ("abc111", "abc222", "xyz"):
        assert run_cli("run", "pipe.py:pipeline", "--run-id", run_id, cwd=hist).returncode == 0
    assert cli_json(run_cli, "runs", "show", "xy", cwd=hist)["run_id"] == "xyz"
    assert cli_json(run_cli, "runs", "show", "abc2", cwd=hist)["run_id"] == "abc222"
    ambiguous = run_cli("runs", "show", "abc", cwd=hist)
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.strip() == ("error: run id 'abc' is ambiguous: it starts 2 run ids (abc111, abc222); "
                                        "give more of it")
    unknown = run_cli("runs", "show", "nope", cwd=hist)
    assert unknown.returncode == 1 and "no run 'nope' in " in unknown.stderr
    assert "list them with: flowyml runs list" in unknown.stderr


def test_status_of_an_in_process_run_and_no_logs_to_show(hist, run_cli):
    assert run_cli("run", "pipe.py:pipeline", "--run-id", "good1", cwd=hist).returncode == 0
    assert run_cli("run", "pipe.py:pipeline", "--run-id", "bad1", "--param", "fail=1", cwd=hist).returncode == 1
    good = run_cli("runs", "status", "good1", cwd=hist)
    assert (good.returncode, good.stdout.strip()) == (0, "completed")
    bad = run_cli("runs", "status", "bad1", cwd=hist)
    assert (bad.returncode, bad.stdout.strip()) == (1, "failed")
    logs = run_cli("runs", "logs", "good1", cwd=hist)
    assert logs.returncode == 1 and "has no remote job" in logs.stderr
    assert "flowyml runs show good1" in logs.stderr


def test_pipeline_run_in_process_is_recorded_and_readable_at_once(hist):
    from flowyml_core.loader import load_pipeline

    result = load_pipeline("pipe.py:pipeline").run(stack="bare", context={"n": 2})
    entry = find_run(result.run_id, hist)  # this process's pending write is finished before reading
    assert (entry.pipeline, entry.stack, entry.status) == ("hist-demo", "bare", "completed")
    assert entry.params == {"n": 2}
    assert {name: s.status for name, s in entry.steps.items()} == {"load": "completed", "total": "completed"}
    assert entry.duration is not None and entry.duration >= sum(s.duration for s in entry.steps.values()) * 0.5


def test_a_history_that_cannot_be_written_does_not_fail_the_run(hist, caplog):
    from flowyml_core.loader import load_pipeline

    (hist / ".flowyml").mkdir()
    (hist / ".flowyml" / "runs").write_text("a file where the directory should be")
    with caplog.at_level(logging.WARNING, logger="flowyml.history"):
        pipeline = load_pipeline("pipe.py:pipeline")
        assert pipeline.run(stack="bare").success
        assert pipeline.run(stack="bare").success
        assert flush()
    warnings = [r.getMessage() for r in caplog.records if r.name == "flowyml.history"]
    assert len(warnings) == 1, warnings  # once, not once per run
    assert "run history: could not write to" in warnings[0] and "runs go on without it" in warnings[0]


def test_unreadable_entries_are_skipped_with_a_warning(hist, caplog):
    from flowyml_core.loader import load_pipeline

    result = load_pipeline("pipe.py:pipeline").run(stack="bare")
    assert flush()  # the run's entry is written by the history's thread
    runs = hist / ".flowyml" / "runs"
    (runs / "29991231T000000.000000Z-torn.json").write_text('{"format": "flowyml-run/1", "run_id": "to')
    (runs / "29991231T000001.000000Z-alien.json").write_text('{"format": "something-else"}')
    with caplog.at_level(logging.WARNING, logger="flowyml.history"):
        entries = list_runs(hist)
    assert [e.run_id for e in entries] == [result.run_id]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert "alien.json: ValueError: not a flowyml-run/1 document" in skipped[0]  # newest first
    assert "torn.json: JSONDecodeError" in skipped[1]
    with pytest.raises(RunNotFoundError, match="cannot be read"):
        find_run("torn", hist)


def _submit_without_waiting(project: Path, monkeypatch) -> tuple:
    """``pipe.py`` submitted to the kit's subprocess executor, a RemoteOrchestrator whose units are real
    step-runner processes; the client does not wait. Returns the stack and the pending result."""
    from flowyml_core.loader import load_pipeline
    from flowyml_core.pipeline import run_on_stack
    from flowyml_core.testing import KitProject
    from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin

    write(project / "pipe.py", PIPELINE)
    kit = KitProject(project, plugins={"kit-subprocess": SubprocessExecutorPlugin()})
    kit.add_stack("sub", "kit-subprocess", artifact_store={"flavor": "local", "path": ".flowyml/artifacts"},
                  cache_store={"flavor": "local", "path": ".flowyml/cache"})
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(kit.stacks_file))
    stack = kit.resolve("sub")
    return stack, run_on_stack(load_pipeline("pipe.py:pipeline"), stack, source="pipe.py:pipeline",
                               registry=kit.registry(), wait=False)


def test_a_remote_run_is_recorded_at_submission_and_at_its_end(project: Path, monkeypatch) -> None:
    """The kit's subprocess executor: a RemoteOrchestrator whose units are real step-runner processes."""
    from flowyml_core.results import ExecutionStatus

    _, pending = _submit_without_waiting(project, monkeypatch)
    submission = pending.submission
    assert submission is not None
    seen = find_run(pending.run_id, project)
    assert seen.job_id == submission.job_id and seen.executor == "kit-subprocess"
    final = submission.result(submission.wait(120), pending.run_id)
    assert final.status is ExecutionStatus.COMPLETED
    entry = find_run(pending.run_id, project)
    assert entry.status == "completed" and entry.ended_at is not None
    assert {name: s.status for name, s in entry.steps.items()} == {"load": "completed", "total": "completed"}


def test_a_detached_remote_run_gets_its_steps_from_the_records(project: Path, monkeypatch) -> None:
    """After --no-wait nobody collects the run: its steps stay pending until someone asks, then come from records."""
    from flowyml_core.cli.history import write_back
    from flowyml_core.results import ExecutionStatus

    stack, pending = _submit_without_waiting(project, monkeypatch)
    submitted = find_run(pending.run_id, project)
    assert {name: s.status for name, s in submitted.steps.items()} == {"load": "pending", "total": "pending"}
    status = pending.submission.wait(120)  # the job ends; no result is collected, as after `flowyml run --no-wait`
    assert status is ExecutionStatus.COMPLETED
    assert find_run(pending.run_id, project).status == "running"
    shown = find_run(pending.run_id, project)
    _keep_the_history_writer_busy(shown, 0.3)  # as on a loaded machine: the write is still queued on return
    write_back(shown, status, stack)  # what `runs show` / `runs status` do, before printing ``shown``
    for read in (lambda: shown, lambda: find_run(pending.run_id, project)):  # what they print, what is kept
        entry = read()
        assert entry.status == "completed" and entry.ended_at is not None
        assert {name: s.status for name, s in entry.steps.items()} == {"load": "completed", "total": "completed"}
        assert all(s.duration is not None and s.artifact_uri for s in entry.steps.values())


def _keep_the_history_writer_busy(entry, seconds: float) -> None:
    """Queue a write that takes ``seconds`` ahead of whatever the test submits next."""
    import threading

    from flowyml_core import history

    gate = threading.Event()
    threading.Timer(seconds, gate.set).start()
    history._WRITER.submit(history.RunJournal.resume(entry), gate.wait, seconds * 10)


def test_runs_help_lists_every_action(run_cli, project):
    out = run_cli("runs", "--help", cwd=project)
    for action in ("list", "show", "status", "logs", "stop"):
        assert f"    {action} " in out.stdout, out.stdout


def test_the_history_format_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "reference" / "history.md").read_text()
    for field in ("format", "run_id", "pipeline", "stack", "executor", "status", "started_at", "ended_at",
                  "job_id", "params", "steps", "flowyml-run/1"):
        assert f"`{field}`" in doc, field
