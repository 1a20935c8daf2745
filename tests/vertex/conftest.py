"""Fixtures for the Vertex plugin's tests: real servers, a project that uses them.

* ``fake_gcp_factory`` (tests/servers/vertex_fixtures.py): the fake Vertex AI +
  Cloud Logging REST server that executes submitted jobs as local processes;
* ``gcs_emulator`` / ``gcs_bucket`` and ``docker_engine`` / ``docker_registry``
  / ``busybox_image`` (tests/servers/fixtures.py): fake-gcs-server, a private
  dockerd and a registry on 127.0.0.1.

``vertex_project`` is a project directory (the current directory) holding the
test pipeline and a ``stacks.toml`` whose ``vertex-local`` stack submits to the
fake and keeps artifacts in the emulator. The fake runs each task with a
minimal environment (never the test's ``os.environ``), so everything the step
runner needs is listed in ``task_env``: this venv's ``flowyml`` on PATH, the
emulator host, and a private config dir.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

from tests.servers.vertex_fixtures import TEST_LOCATION, TEST_PROJECT

HERE = Path(__file__).resolve().parent
PIPELINE_FILE = HERE / "multi_group_pipeline.py"
PIPELINE_REF = "tests/vertex/multi_group_pipeline.py:pipeline"
#: The fake ignores images unless given an image_map; this one is never pulled.
TEST_IMAGE = "europe-docker.pkg.dev/fake-project/flowyml/test:local"


def toml_value(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def inline_table(options: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in options.items()) + " }"


@attrs.define
class VertexProject:
    """A project directory wired to the fake Vertex AI and the GCS emulator."""

    path: Path
    fake: Any
    bucket: str
    emulator_url: str
    task_env: dict[str, str]

    @property
    def artifact_url(self) -> str:
        return f"gs://{self.bucket}/flowyml"

    def executor_options(self, **overrides: Any) -> dict[str, Any]:
        options = {
            "flavor": "vertex",
            "project_id": TEST_PROJECT,
            "region": TEST_LOCATION,
            "api_endpoint": self.fake.url,
            "image": TEST_IMAGE,
            "staging_bucket": f"gs://{self.bucket}/vertex-root",
            "poll_interval": 0.2,
        }
        options.update(overrides)
        return options

    def store_options(self, suffix: str = "flowyml") -> dict[str, Any]:
        return {
            "flavor": "gcs",
            "url": f"gs://{self.bucket}/{suffix}",
            "endpoint": self.emulator_url,
            "token": "anon",
            "project": TEST_PROJECT,
        }

    def write_stacks(self, **executor_overrides: Any) -> Path:
        text = (
            'default = "vertex-local"\n\n'
            "[stacks.vertex-local]\n"
            f"executor = {inline_table(self.executor_options(**executor_overrides))}\n"
            f"artifact_store = {inline_table(self.store_options('flowyml'))}\n"
            f"cache_store = {inline_table(self.store_options('cache'))}\n"
        )
        path = self.path / "stacks.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def resolve(self) -> Any:
        from flowyml_core.stacks import StackRegistry

        return StackRegistry.load(cwd=self.path).resolve("vertex-local")


@pytest.fixture
def memory_store(tmp_path: Path) -> Any:
    """An artifact store for submissions whose containers never touch it (their commands are replaced)."""
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

    return LocalArtifactStore(LocalArtifactStoreConfig(path=f"memory://{tmp_path.name}"))


@pytest.fixture
def task_env(tmp_path: Path, gcs_emulator: Any) -> dict[str, str]:
    """What a task process needs beyond the fake's minimal env."""
    xdg = tmp_path / "task-xdg"
    xdg.mkdir()
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]),
        "STORAGE_EMULATOR_HOST": gcs_emulator.url,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "XDG_CONFIG_HOME": str(xdg),
        "HOME": str(tmp_path),
    }


@pytest.fixture
def vertex_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_gcp_factory: Callable[..., Any], gcs_emulator: Any,
    gcs_bucket: str, task_env: dict[str, str],
) -> VertexProject:
    """A project (the current directory) with the test pipeline and a ``vertex-local`` stack."""
    path = tmp_path / "project"
    (path / "tests" / "vertex").mkdir(parents=True)
    shutil.copy(PIPELINE_FILE, path / "tests" / "vertex" / PIPELINE_FILE.name)
    fake = fake_gcp_factory(workdir=path, base_env=task_env, task_timeout=60.0)
    project = VertexProject(path, fake, gcs_bucket, gcs_emulator.url, task_env)
    project.write_stacks()
    monkeypatch.chdir(path)
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    return project
