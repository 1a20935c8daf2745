"""Detach and come back: ``flowyml run --no-wait``, then ``flowyml runs status|logs|stop`` by run id.

Everything goes through the real console script in fresh processes: the
process that submitted the run is gone when the others ask about it, so what
they find comes from the cluster (the fake API server) and the run's records.
"""

from __future__ import annotations

import json
import time

PIPELINE = "k8s_pipeline.py:pipeline"


def _wait_for(predicate, timeout=30.0, what="condition", interval=0.1):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def _status(run_cli, project, run_id):
    out = run_cli("runs", "status", run_id, cwd=project)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr


def test_detached_run_status_and_logs_by_run_id(k8s_project, run_cli):
    project, fake = k8s_project.path, k8s_project.fake
    started = run_cli("run", PIPELINE, "--stack", "k8s", "--no-wait", "--run-id", "detached0001", cwd=project)
    assert started.returncode == 0, started.stdout + started.stderr
    # The submitting process is gone; each status is a fresh `flowyml` process, asked once the fake says it ended.
    _wait_for(lambda: fake.job_objects("flowyml.io/role=orchestrator")[0]["status"].get("conditions"),
              what="the run to end")
    details = run_cli("runs", "status", "detached0001", "--json", cwd=project)
    assert details.returncode == 0, details.stderr
    data = json.loads(details.stdout)
    assert data["status"] == "completed" and data["job_id"] == "flowyml-detached0001"
    assert sorted(u["unit"] for u in data["units"]) == ["join", "left", "prep", "right"]
    assert all(u["status"] == "completed" and u["pods"][0]["exit_code"] == 0 for u in data["units"])
    logs = run_cli("runs", "logs", "detached0001", cwd=project)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any("[orchestrator]" in line and "walking 4 unit(s)" in line for line in lines), logs.stdout
    assert any("[prep]" in line and "loading with factor 3" in line for line in lines), logs.stdout
    stamps = [line.split("]", 1)[0].lstrip("[") for line in lines]
    assert stamps == sorted(stamps), "entries of the orchestrator and unit pods are merged in time order"
    followed = run_cli("runs", "logs", "detached0001", "--follow", cwd=project)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines()[-1].endswith("run flowyml-detached0001 finished: completed")


def test_stop_by_run_id_kills_the_running_units_and_starts_nothing_more(k8s_project, run_cli):
    project, fake = k8s_project.path, k8s_project.fake
    started = run_cli("run", PIPELINE, "--stack", "k8s", "--no-wait", "--run-id", "stopped0001",
                      "--param", "sleep_seconds=60", cwd=project)
    assert started.returncode == 0, started.stdout + started.stderr

    def right_is_running():
        return any(e.task_name.startswith("flowyml-stopped0001-right") for e in fake.running_processes())

    _wait_for(right_is_running, what="unit right to run")
    stop = run_cli("runs", "stop", "stopped0001", cwd=project)
    assert stop.returncode == 0, stop.stderr
    assert "cancellation requested for flowyml-stopped0001" in stop.stdout
    _wait_for(lambda: not fake.running_processes(), timeout=15, what="every pod process to end")
    right = next(e for e in fake.executions if e.task_name.startswith("flowyml-stopped0001-right"))
    assert right.returncode != 0, "the sleeping unit was killed, not left to finish"
    assert fake.job_objects("flowyml.io/role=unit") == [], "unit Jobs are deleted"
    [orchestrator] = fake.job_objects("flowyml.io/role=orchestrator")
    assert orchestrator["spec"]["suspend"] is True
    assert not any("join" in e.task_name for e in fake.executions), "nothing started after the stop"
    assert _status(run_cli, project, "stopped0001") == "stopped"
    shown = json.loads(run_cli("runs", "show", "stopped0001", "--json", cwd=project).stdout)
    assert shown["status"] == "stopped"
    assert shown["steps"]["join"]["error"] == "not run: the run was stopped first", shown["steps"]["join"]
    again = run_cli("runs", "stop", "stopped0001", cwd=project)
    assert again.returncode != 0 and "already finished (stopped)" in again.stderr
    assert "Traceback" not in again.stderr


def test_status_of_an_unknown_run_is_one_clear_line(k8s_project, run_cli):
    out = run_cli("runs", "status", "flowyml-nosuchrun", "--stack", "k8s", cwd=k8s_project.path)
    assert out.returncode != 0
    assert "no run 'flowyml-nosuchrun' in namespace default" in out.stderr
    assert "Traceback" not in out.stderr
