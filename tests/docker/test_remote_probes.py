"""A docker run probed as a user would, looking for differences from the same run on the local stack.

Each test here failed before the fix it comes with (see the branch ``remoteprobe``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import FLOWYML
from tests.docker.conftest import containers

pytestmark = pytest.mark.docker


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_stops_the_run_records_why_and_leaves_no_container(docker_project, run_cli, docker_engine):
    """Ctrl-C while ``flowyml run`` waits: the run is stopped, its steps say so, nothing is left on the engine.

    Python 3.11's ``Thread.join`` interrupted by Ctrl-C marks a still running
    thread as stopped, so the process exited without waiting for the unit it
    had just stopped: its container stayed (``remove = true`` notwithstanding)
    and the step had no record; the message said the run "goes on remotely".
    """
    docker_project.stack(remove=True)
    env = {**os.environ, "FLOWYML_STACKS_FILE": str(docker_project.stacks_file)}
    run_id = "ctrlc" + os.urandom(4).hex()
    walker = subprocess.Popen(
        [str(FLOWYML), "run", "dockerpipes.py:sleepy", "--stack", "d", "--run-id", run_id],
        cwd=docker_project.pipes_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    client = docker_engine.client()
    try:
        _wait_for(lambda: [c for c in containers(client, run_id=run_id, role="unit") if c.status == "running"],
                  120, "the nap unit's container to run")
        walker.send_signal(signal.SIGINT)
        out, err = walker.communicate(timeout=60)
    finally:
        if walker.poll() is None:
            walker.kill()
            walker.communicate()
    assert walker.returncode == 130, out + err
    assert "goes on remotely" not in err, err
    assert f"run {run_id} was stopped" in err, err
    assert containers(client, run_id=run_id, role="unit") == []  # removed, as remove = true asks
    status = run_cli("runs", "status", run_id, "--stack", "d", env=env)
    assert status.stdout.strip() == "stopped", status.stdout + status.stderr
    logs = run_cli("runs", "logs", run_id, "--stack", "d", env=env)
    assert "step nap failed: stopped: interrupted" in logs.stdout, logs.stdout
