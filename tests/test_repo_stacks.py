"""The stacks this repository ships in stacks.toml: all usable, and gcs-local runs the quickstart.

These use the repository's own file (FLOWYML_STACKS_FILE), not a copy, so a
broken example stack fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STACKS_FILE = REPO / "stacks.toml"
QUICKSTART = f"{REPO / 'examples' / 'quickstart.py'}:pipeline"


def test_every_shipped_stack_structures_with_the_installed_plugins(run_cli, project):
    env = {"FLOWYML_STACKS_FILE": str(STACKS_FILE)}
    listed = run_cli("stack", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)["stacks"]}
    assert {"local", "gcs-local", "s3-local", "dask", "docker", "vertex-local", "gcp-dev", "gcp-prod",
            "sagemaker-local", "aws-dev", "aws-prod", "k8s-local", "k8s-dev", "k8s-prod"} <= names
    for name in sorted(names):
        shown = run_cli("stack", "show", name, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        components = json.loads(shown.stdout)["components"]
        problems = {kind: c["problems"] for kind, c in components.items() if "problems" in c}
        assert not problems, f"stack {name}: {problems}"


def test_quickstart_on_the_shipped_gcs_local_stack(run_cli, project, gcs_emulator):
    """Same pipeline code, selected by stack name: outputs and cache land in the emulator."""
    fs = gcs_emulator.filesystem()
    if not fs.exists("flowyml-local"):
        gcs_emulator.make_bucket("flowyml-local")
    env = {"FLOWYML_STACKS_FILE": str(STACKS_FILE), "STORAGE_EMULATOR_HOST": gcs_emulator.url}
    first = run_cli("run", QUICKSTART, "--stack", "gcs-local", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "outputs: gs://flowyml-local/artifacts/" in first.stdout
    run_dir = first.stdout.split("outputs: gs://", 1)[1].split()[0]
    fs.invalidate_cache()
    assert fs.ls(run_dir), f"no artifacts under gs://{run_dir}"
    second = run_cli("run", QUICKSTART, "--stack", "gcs-local", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout
    assert not (project / ".flowyml").exists(), "the gcs-local stack wrote local artifacts"


def test_quickstart_on_the_shipped_s3_local_stack(run_cli, project, moto_s3):
    """The s3-local stack with the variables scripts/s3_server.py prints: outputs and cache land in moto."""
    from tests.servers.moto_s3 import KEY, SECRET

    if not moto_s3.filesystem().exists("flowyml-local"):
        moto_s3.make_bucket("flowyml-local")
    env = {"FLOWYML_STACKS_FILE": str(STACKS_FILE), "AWS_ENDPOINT_URL": moto_s3.url, "AWS_ACCESS_KEY_ID": KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET}
    first = run_cli("run", QUICKSTART, "--stack", "s3-local", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "outputs: s3://flowyml-local/artifacts/" in first.stdout
    second = run_cli("run", QUICKSTART, "--stack", "s3-local", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout
    assert not (project / ".flowyml" / "artifacts").exists(), "the s3-local stack wrote local artifacts"


def test_gcs_local_without_the_emulator_variable_says_what_is_missing(run_cli, project):
    env = {"FLOWYML_STACKS_FILE": str(STACKS_FILE), "STORAGE_EMULATOR_HOST": ""}
    result = run_cli("run", QUICKSTART, "--stack", "gcs-local", env={k: v for k, v in env.items() if v})
    assert result.returncode == 1
    assert "STORAGE_EMULATOR_HOST" in result.stderr
    assert "Traceback" not in result.stderr



@pytest.mark.docker
def test_quickstart_on_the_shipped_docker_stack(run_cli, project, docker_engine, python_base_image):
    """The repository's docker stack, on the engine and base image scripts/docker_engine.py makes.

    Run from a project holding the quickstart (the stack builds its image from
    the current directory); the second run is fully cached and starts nothing.
    """
    import shutil

    (project / "examples").mkdir()
    shutil.copy(REPO / "examples" / "quickstart.py", project / "examples" / "quickstart.py")
    env = {"FLOWYML_STACKS_FILE": str(STACKS_FILE), "DOCKER_HOST": docker_engine.base_url}
    client = docker_engine.client()
    first = run_cli("run", "examples/quickstart.py:pipeline", "--stack", "docker", env=env, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "5 ran, 0 cached, 0 skipped, 0 failed" in first.stdout and "[5/5] report" in first.stdout
    assert "accuracy" in first.stdout  # the report step's own output, from its container
    assert (project / ".flowyml" / "docker" / "artifacts").is_dir()  # local stores, bind-mounted at the same path
    before = len(client.containers.list(all=True, sparse=True))
    second = run_cli("run", "examples/quickstart.py:pipeline", "--stack", "docker", env=env, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout and "nothing was built or submitted" in second.stdout
    assert len(client.containers.list(all=True, sparse=True)) == before
