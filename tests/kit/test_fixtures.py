"""The pytest11 plugin of flowyml-core: cheap to load in every session, and its fixtures work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flowyml_core.results import ExecutionStatus


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        "import flowyml_core.testing.pytest_plugin\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    ours = [m for m in loaded if m.startswith("flowyml")]
    assert ours == ["flowyml_core", "flowyml_core.testing", "flowyml_core.testing.pytest_plugin"], ours
    assert not [m for m in loaded if m.split(".")[0] in ("attrs", "cattrs", "pluggy", "fsspec", "numpy", "dask")]


def test_flowyml_project_runs_a_sample_pipeline_on_a_stack(flowyml_project, flowyml_pipelines, flowyml_calls) -> None:
    assert Path.cwd() == flowyml_project.path
    assert os.environ["FLOWYML_STACKS_FILE"] == str(flowyml_project.stacks_file)
    flowyml_project.add_stack("here", "local", default=True)
    flowyml_project.add_stack("threads", "local", {"max_workers": 2})
    assert "[stacks.here]" in flowyml_project.stacks_file.read_text()
    first = flowyml_project.run(flowyml_pipelines.diamond(), "threads", context=flowyml_pipelines.context())
    assert first.success and first.outputs["total"] == 5
    assert flowyml_project.recorder.kinds() == ["run_start"] + ["step_end"] * 4 + ["run_end"]
    second = flowyml_project.run(flowyml_pipelines.diamond(), "threads", context=flowyml_pipelines.context())
    assert second.status is ExecutionStatus.CACHED
    assert flowyml_calls.count() == 4 and sorted(set(flowyml_calls.names())) == ["add", "double", "source", "triple"]


def test_flowyml_project_with_local_stores_and_the_cli(flowyml_project, run_cli) -> None:
    flowyml_project.add_stack("disk", "local", cache_store={"flavor": "local", "path": ".flowyml/cache"},
                              artifact_store={"flavor": "local", "path": ".flowyml/artifacts"})
    shown = run_cli("stack", "show", "disk", "--json", cwd=flowyml_project.path)
    assert shown.returncode == 0, shown.stderr
    assert '"flavor": "local"' in shown.stdout
