"""Options of the docker executor: one line per bad option, naming it; nothing imported that the listing does not need."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowyml_core.errors import ConfigError
from flowyml_core.testing.project import KitProject


def _resolve(tmp_path, **options):
    project = KitProject(tmp_path / "p")
    project.add_stack("d", "docker", options or {"max_parallel": 2})
    return project.resolve("d")


def test_defaults_build_from_the_project_on_a_python_matching_this_one(tmp_path):
    config = _resolve(tmp_path).executor.config
    assert config.effective_base_image == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert config.command == ["flowyml", "step-runner"] and config.remove is True and config.image is None


def test_every_bad_option_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _resolve(tmp_path, max_parallel=0, volumes=["/data", "/x:relative"], docker_host="localhost:2375",
                 image="me/img:1", requirements=["pandas"], command=[])
    text = str(caught.value)
    for expected in ("option 'max_parallel': must be at least 1, got 0",
                     "option 'volumes': '/data' is not HOST:CONTAINER[:ro|rw]",
                     "option 'volumes': '/x:relative': the path in the container must be absolute",
                     "option 'docker_host': 'localhost:2375' is not an engine URL",
                     "option 'requirements': has no effect with image = 'me/img:1'",
                     "option 'command': must be a non-empty list"):
        assert expected in text, text


def test_a_secret_in_env_vars_is_refused_at_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "t0ps3cret")
    with pytest.raises(ConfigError) as caught:
        _resolve(tmp_path, env_vars={"TOKEN": "${env:API_TOKEN}"})
    assert "option 'env_vars.TOKEN' takes its value from the secret API_TOKEN" in str(caught.value)
    assert "t0ps3cret" not in str(caught.value)


def test_showing_a_docker_stack_imports_no_docker_sdk(tmp_path):
    """The executor module is loaded to show its flavor; the SDK (and requests) only when a run starts."""
    project = KitProject(tmp_path / "p")
    project.add_stack("d", "docker", {"max_parallel": 2}, artifact_store=None, cache_store=None)
    code = (
        "import sys; from flowyml_core.cli import main; main(['stack', 'show', 'd']);"
        "print('docker' in sys.modules, 'requests' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=project.environ(), capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stdout
