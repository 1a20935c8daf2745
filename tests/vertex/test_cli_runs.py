"""``flowyml runs status|logs|stop`` through the real console script, against the fake."""

from __future__ import annotations

import json
import sys
import time

from flowyml_core import Pipeline, step
from flowyml_core.results import ExecutionStatus
from flowyml_vertex.config import VertexConfig
from flowyml_vertex.orchestrator import VertexAIOrchestrator

from .conftest import TEST_IMAGE, TEST_LOCATION, TEST_PROJECT, inline_table

PY = sys.executable
TICKER = (
    "import json, os, time\n"
    "for i in range(int(os.environ['TICKS'])):\n"
    "    print(json.dumps({'severity': 'INFO', 'message': f'tick {i}'}), flush=True)\n"
    "    time.sleep(0.1)\n"
)


@step
def only():
    return 1


def submit(fake, ticks, store):
    """One CustomJob whose container (the fake's image_map) prints ``ticks`` lines instead of running steps."""
    orchestrator = VertexAIOrchestrator(VertexConfig(
        project_id=TEST_PROJECT, region=TEST_LOCATION, api_endpoint=fake.url, image=TEST_IMAGE, poll_interval=0.1,
        submit="custom_job", env_vars={"TICKS": str(ticks)}))
    return orchestrator.run_pipeline(Pipeline("ticker", steps=[only]), "clirun0000000001",
                                     pipeline_module="ticker.py:pipeline", artifact_store=store)


def test_runs_status_logs_and_stop(project, run_cli, fake_gcp_factory, memory_store):
    fake = fake_gcp_factory(image_map={TEST_IMAGE: [PY, "-c", TICKER, "--"]})
    options = {"flavor": "vertex", "project_id": TEST_PROJECT, "region": TEST_LOCATION, "api_endpoint": fake.url,
               "image": TEST_IMAGE, "poll_interval": 0.1}
    (project / "stacks.toml").write_text(f"[stacks.v]\nexecutor = {inline_table(options)}\n")

    finished = submit(fake, 3, memory_store)
    assert finished.wait(20) is ExecutionStatus.COMPLETED
    out = run_cli("runs", "logs", finished.job_id, "--stack", "v", "--follow", cwd=project)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("] ", 2)[-1] for line in lines[:3]] == ["tick 0", "tick 1", "tick 2"]
    assert lines[-1].endswith(f"job {finished.job_id} finished: completed")
    running = submit(fake, 600, memory_store)
    deadline = time.monotonic() + 15
    orchestrator = VertexAIOrchestrator(VertexConfig(project_id=TEST_PROJECT, region=TEST_LOCATION, api_endpoint=fake.url))
    while orchestrator.get_run_status(running.job_id) is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "job never ran"
        time.sleep(0.05)
    out = run_cli("runs", "stop", running.job_id, "--stack", "v", cwd=project)
    assert out.returncode == 0 and f"cancellation requested for {running.job_id}" in out.stdout, out.stderr
    assert running.wait(20) is ExecutionStatus.CANCELLED
    out = run_cli("runs", "status", running.job_id, "--stack", "v", "--json", cwd=project)
    assert out.returncode == 1  # a cancelled run is not a success
    data = json.loads(out.stdout)
    assert data["status"] == "cancelled" and data["state"] == "JOB_STATE_CANCELLED" and data["kind"] == "custom_job"

