"""A docker test project: ``dockerpipes.py`` built into an image on the test engine, and stacks that run it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


class DockerProject:
    """A stack named ``d`` on the test engine whose image is built from a directory holding dockerpipes.py."""

    def __init__(self, root: Path, pipes_dir: Path, docker_python: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
        from flowyml_core.testing.project import KitProject

        self.root = root
        self.pipes_dir = pipes_dir
        self.kit = KitProject(root / "kit")
        self.options = {k: v for k, v in docker_python.items() if k != "image"}
        self.options.update(build_context=str(pipes_dir), base_image=docker_python["image"], remove=False)
        self.stores = {"artifact_store": {"flavor": "local", "path": str(root / "artifacts")},
                       "cache_store": {"flavor": "local", "path": str(root / "cache")}}
        monkeypatch.setenv("FLOWYML_STACKS_FILE", str(self.kit.stacks_file))
        self.stack(**{})

    @property
    def stacks_file(self) -> Path:
        return self.kit.stacks_file

    def stack(self, **options: Any) -> Any:
        """(Re)declare stack ``d`` with these executor options over the defaults; returns it resolved."""
        stores = {**self.stores, **options.pop("stores", {})}
        self.kit.add_stack("d", "docker", {**self.options, **options}, **stores)
        return self.kit.resolve("d")

    def run(self, pipeline: Any, stack: Any = None, **params: Any) -> Any:
        return self.kit.run(pipeline, stack or self.kit.resolve("d"), context=params or None)


@pytest.fixture(scope="session")
def pipes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project directory of the image (one build for the session: same content, same tag)."""
    path = tmp_path_factory.mktemp("dockerpipes")
    shutil.copy(HERE / "dockerpipes.py", path / "dockerpipes.py")
    return path


@pytest.fixture(scope="session")
def pipes(pipes_dir: Path) -> Any:
    sys.path.insert(0, str(pipes_dir))
    try:
        import dockerpipes
    finally:
        sys.path.remove(str(pipes_dir))
    return dockerpipes


@pytest.fixture
def docker_project(tmp_path: Path, pipes_dir: Path, pipes: Any, docker_python: dict[str, Any],
                   monkeypatch: pytest.MonkeyPatch) -> DockerProject:
    monkeypatch.chdir(tmp_path)
    return DockerProject(tmp_path, pipes_dir, docker_python, monkeypatch)


def containers(client: Any, **labels: str) -> list[Any]:
    """Containers (any state) carrying all these flowyml labels (``run_id=...`` → ``flowyml.run-id``)."""
    filters = [f"flowyml.{key.replace('_', '-')}={value}" for key, value in labels.items()]
    return client.containers.list(all=True, ignore_removed=True, filters={"label": filters})
