"""``flowyml run|runs … --stack d`` on a docker stack, through the real command line.

Status, logs and stop run in other processes than the one walking the run:
they find it on the engine by its id (labels and the run's handle) and read
its records.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import FLOWYML
from tests.docker.conftest import containers

pytestmark = pytest.mark.docker


def _cli_env(docker_project) -> dict[str, str]:
    return {**os.environ, "FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def _sleepy_run(docker_project, run_id: str, client, **popen: Any) -> Iterator[subprocess.Popen]:
    """``flowyml run`` of the sleepy pipeline in another process, given once its nap unit's container
    runs; killed on the way out if it is still going."""
    walker = subprocess.Popen(
        [str(FLOWYML), "run", "dockerpipes.py:sleepy", "--stack", "d", "--run-id", run_id],
        cwd=docker_project.pipes_dir, env=_cli_env(docker_project), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **popen)
    try:
        _wait_for(lambda: [c for c in containers(client, run_id=run_id, role="unit") if c.status == "running"],
                  120, "the nap unit's container to run")
        yield walker
    finally:
        if walker.poll() is None:
            walker.kill()
            walker.communicate()


def test_run_follow_shows_progress_and_each_containers_output(docker_project, run_cli):
    result = run_cli("run", "dockerpipes.py:chain", "--stack", "d", "--follow", "--param", "size=4",
                     cwd=docker_project.pipes_dir, env={"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)},
                     timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[1/2] source" in out and "[2/2] total" in out  # progress, one line per unit's step
    assert "[source] running source (source) of run" in out  # the container's own output, as it came
    assert "[total] step total done" in out
    assert re.search(r"run \w+ completed in [^:]+: 2 ran, 0 cached, 0 skipped, 0 failed", out), out


def test_status_logs_and_stop_from_other_processes(docker_project, run_cli, docker_engine):
    env = {"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    run_id = "stopme" + os.urandom(4).hex()
    client = docker_engine.client()
    with _sleepy_run(docker_project, run_id, client) as walker:
        status = run_cli("runs", "status", run_id, "--stack", "d", env=env)
        assert (status.returncode, status.stdout.strip()) == (0, "running"), status.stderr
        _wait_for(lambda: "running nap" in run_cli("runs", "logs", run_id, "--stack", "d", env=env).stdout,
                  30, "the unit's output in runs logs")
        stop = run_cli("runs", "stop", run_id, "--stack", "d", env=env)
        assert stop.returncode == 0, stop.stderr
        out, err = walker.communicate(timeout=60)
    assert walker.returncode == 1, out + err
    assert f"run {run_id} FAILED in" in out and "1 skipped, 1 failed" in out
    assert "error: step 'nap' failed: stopped: stopped by request (flowyml runs stop)" in err
    status = run_cli("runs", "status", run_id, "--stack", "d", env=env)
    assert status.stdout.strip() == "stopped"
    # after_nap never started: only nap's container exists, and it ended by the stop.
    units = containers(client, run_id=run_id, role="unit")
    assert [c.labels["flowyml.unit"] for c in units] == ["nap"]
    assert units[0].attrs["State"]["ExitCode"] == 143
    logs = run_cli("runs", "logs", run_id, "--stack", "d", env=env)
    assert "running nap" in logs.stdout
    details = run_cli("runs", "status", run_id, "--stack", "d", "--json", env=env)
    assert '"after_nap"' in details.stdout and '"stopped"' in details.stdout
    # The project's run history knows the job and its stack: no --stack needed, a prefix of the id will do.
    by_history = run_cli("runs", "status", run_id[:-2], env=env)
    assert (by_history.returncode, by_history.stdout) == (status.returncode, status.stdout), by_history.stderr
    shown = json.loads(run_cli("runs", "show", run_id, "--json", env=env).stdout)
    assert (shown["stack"], shown["executor"], shown["job_id"]) == ("d", "docker", run_id)
    assert shown["status"] in ("stopped", "failed") and shown["steps"]["nap"]["status"] == "failed"


def test_a_run_submitted_without_waiting_is_brought_up_to_date_by_runs_show(docker_project, run_cli):
    env = {"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    run_id = "nowait" + os.urandom(4).hex()
    submitted = run_cli("run", "dockerpipes.py:chain", "--stack", "d", "--no-wait", "--run-id", run_id,
                        "--param", "size=3", cwd=docker_project.pipes_dir, env=env, timeout=300)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    def recorded() -> dict:
        listed = json.loads(run_cli("runs", "list", "--json", env=env).stdout)["runs"]
        return next(r for r in listed if r["run_id"] == run_id)

    assert recorded()["job_id"] == run_id  # recorded at submission; the client did not wait
    shown = _wait_for(lambda: (lambda d: d if d["status"] == "completed" else None)(
        json.loads(run_cli("runs", "show", run_id, "--json", env=env).stdout)), 120, "runs show to see the end")
    assert shown["ended_at"] is not None and "note" not in shown
    # the steps, pending while nobody waited, read from the units' records
    assert {name: step["status"] for name, step in shown["steps"].items()} == {"source": "completed",
                                                                                 "total": "completed"}
    assert recorded()["status"] == "completed"  # written back: runs list (which asks nobody) sees it too


def test_logs_come_from_the_records_once_the_containers_are_removed(docker_project, run_cli):
    docker_project.stack(remove=True)
    env = {"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    run = run_cli("run", "dockerpipes.py:crashing", "--stack", "d", "--run-id", "gone1", cwd=docker_project.pipes_dir,
                  env=env, timeout=300)
    assert run.returncode == 1
    status = run_cli("runs", "status", "gone1", "--stack", "d", env=env)
    assert (status.returncode, status.stdout.strip()) == (1, "failed")
    logs = run_cli("runs", "logs", "gone1", "--stack", "d", env=env)
    assert "step crash failed: exit code 7: " in logs.stdout and "about to exit with 7" in logs.stdout
    again = run_cli("run", "dockerpipes.py:crashing", "--stack", "d", "--run-id", "gone1",
                    cwd=docker_project.pipes_dir, env=env, timeout=300)
    assert again.returncode == 1
    assert again.stderr.startswith("error: run id 'gone1' was used before on this docker engine"), again.stderr


def test_unknown_run_is_one_line(docker_project, run_cli):
    result = run_cli("runs", "status", "nosuchrun", "--stack", "d",
                     env={"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)})
    assert result.returncode == 1
    assert result.stderr.startswith("error: no run 'nosuchrun' on the docker engine at unix://")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_code_change_builds_a_new_image_and_no_change_builds_nothing(docker_project, run_cli, docker_engine,
                                                                       tmp_path):
    project = tmp_path / "rebuild"
    project.mkdir()
    shutil.copy(Path(docker_project.pipes_dir) / "dockerpipes.py", project / "dockerpipes.py")
    stack = docker_project.stack(build_context=str(project), image_name="flowyml-test/rebuild")
    assert stack is not None
    env = {"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    client = docker_engine.client()

    def run(*params: str) -> str:
        """The run's log (``--debug``: the executor's INFO lines say whether it built the image)."""
        done = run_cli("--debug", "run", "dockerpipes.py:chain", "--stack", "d", *params, cwd=project, env=env,
                       timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stderr

    def tags() -> list[str]:
        found = {t for image in client.images.list("flowyml-test/rebuild") for t in image.tags}
        return sorted(t for t in found if t.startswith("flowyml-test/rebuild:"))

    first = run("--param", "size=6")
    assert "building flowyml-test/rebuild:" in first
    (tag,) = tags()
    same = run("--param", "size=7")  # not cached (new parameter), same code: same image, no build
    assert f"image {tag} is up to date (same content); not rebuilding" in same
    assert "building " not in same
    assert tags() == [tag]
    source = (project / "dockerpipes.py").read_text()
    (project / "dockerpipes.py").write_text(source.replace("return sum(range(n))", "return sum(range(n)) * 2"))
    changed = run("--param", "size=7", "--run-id", "rebuilt1")
    assert "building flowyml-test/rebuild:" in changed
    new_tags = tags()
    assert len(new_tags) == 2 and tag in new_tags
    store = docker_project.kit.resolve("d").artifact_store
    assert store.load_artifact("rebuilt1", "total", "total") == 42  # the new code ran: sum(range(7)) * 2


def test_no_wait_returns_at_once_yet_the_process_finishes_the_walk(docker_project, run_cli):
    """The process that started the run walks it: it exits only when the run ended (nothing is cut short)."""
    env = {"FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    done = run_cli("run", "dockerpipes.py:sleepy", "--stack", "d", "--no-wait", "--param", "seconds=1",
                   "--run-id", "nowait1", cwd=docker_project.pipes_dir, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: running" in done.stdout
    assert "run nowait1 goes on: this process starts its remaining units" in done.stderr
    status = run_cli("runs", "status", "nowait1", "--stack", "d", env=env)
    assert status.stdout.strip() == "completed"


def test_ctrl_c_stops_the_run_records_why_and_leaves_no_container(docker_project, run_cli, docker_engine):
    """Ctrl-C while ``flowyml run`` waits: the run is stopped, its steps say so, nothing is left on the engine.

    Python 3.11's ``Thread.join`` interrupted by Ctrl-C marks a still running
    thread as stopped, so the process exited without waiting for the unit it
    had just stopped: its container stayed (``remove = true`` notwithstanding)
    and the step had no record; the message said the run "goes on remotely".
    """
    docker_project.stack(remove=True)
    env = _cli_env(docker_project)
    run_id = "ctrlc" + os.urandom(4).hex()
    client = docker_engine.client()
    with _sleepy_run(docker_project, run_id, client,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as walker:
        walker.send_signal(signal.SIGINT)
        out, err = walker.communicate(timeout=60)
    assert walker.returncode == 130, out + err
    assert "goes on remotely" not in err, err
    assert f"run {run_id} was stopped" in err, err
    assert containers(client, run_id=run_id, role="unit") == []  # removed, as remove = true asks
    status = run_cli("runs", "status", run_id, "--stack", "d", env=env)
    assert status.stdout.strip() == "stopped", status.stdout + status.stderr
    logs = run_cli("runs", "logs", run_id, "--stack", "d", env=env)
    assert "step nap failed: stopped: interrupted" in logs.stdout, logs.stdout
