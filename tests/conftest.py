"""Shared fixtures: every test runs with its own config dirs and no inherited stack choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

# Server fixtures (GCS emulator, fault proxy, dockerd, registry, fake Vertex AI)
# and pytester, loaded once for the whole suite: session-scoped servers start at
# most once per run, whichever directory asks first.
pytest_plugins = ["pytester", "tests.servers.fixtures", "tests.servers.vertex_fixtures", "tests.servers.moto_s3",
                  "tests.servers.sagemaker_fixtures", "tests.servers.kubernetes_fixtures"]

REPO = Path(__file__).resolve().parents[1]
FLOWYML = Path(sys.executable).with_name("flowyml")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test sees the developer's ~/.config, active stack or disabled plugins."""
    xdg = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for name in ("FLOWYML_STACK", "FLOWYML_STACKS_FILE", "FLOWYML_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    from flowyml_core.plugins import reset_registry

    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory that is the current directory."""
    path = tmp_path / "project"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``flowyml`` console script of this environment."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(
            [str(FLOWYML), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )

    return run
