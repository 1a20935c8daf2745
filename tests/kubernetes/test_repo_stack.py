"""The repository's ``k8s-local`` stack runs the quickstart on the fake cluster, and the second run is cached."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_on_the_shipped_k8s_local_stack(project, run_cli, fake_kubernetes_factory):
    shutil.copy(REPO / "examples" / "quickstart.py", project / "quickstart.py")
    # A copy of the shipped file: pointing FLOWYML_STACKS_FILE at it would record the runs' history in the repository.
    shutil.copy(REPO / "stacks.toml", project / "stacks.toml")
    fake = fake_kubernetes_factory(workdir=project, base_env={"PYTHONPATH": str(project),
                                                              "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"]})
    env = {"FLOWYML_K8S_ENDPOINT": fake.url}
    first = run_cli("run", "quickstart.py:pipeline", "--stack", "k8s-local", env=env, cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr
    assert fake.job_objects("flowyml.io/role=orchestrator"), "the run went through the fake cluster"
    assert (project / ".flowyml" / "k8s" / "artifacts").is_dir()
    second = run_cli("run", "quickstart.py:pipeline", "--stack", "k8s-local", env=env, cwd=project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout
    assert len(fake.job_objects("flowyml.io/role=orchestrator")) == 1, "a fully cached run created a Job"
    assert len(list((project / ".flowyml" / "runs").glob("*.json"))) == 2
