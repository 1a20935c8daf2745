"""Fixtures for the kubernetes plugin's tests: the fake API server, a project that uses it.

``k8s_project`` is a project directory (the current directory) holding the
test pipeline and a ``stacks.toml`` whose ``k8s`` stack sends runs to the fake
Kubernetes API server (tests/servers/fake_kubernetes.py), which runs every
Job's container as a local process. Stores are local directories: pods and
this process share the filesystem. Pods get a minimal environment plus
``XDG_CONFIG_HOME`` (the test's, so pickles signed here verify there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest

HERE = Path(__file__).resolve().parent
PIPELINE_FILE = HERE / "k8s_pipeline.py"
PIPELINE_REF = "k8s_pipeline.py:pipeline"
TEST_IMAGE = "registry.example/flowyml/test:local"


def toml_value(value: Any) -> str:
    """``value`` as inline TOML (tables inline too: stacks.toml options are written on one line)."""
    if isinstance(value, dict):
        return inline_table(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def inline_table(options: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{toml_value(k) if not k.isidentifier() else k} = {toml_value(v)}"
                            for k, v in options.items()) + " }"


def executor_options(fake: Any, **overrides: Any) -> dict[str, Any]:
    options = {"flavor": "kubernetes", "api_server": fake.url, "orchestrator_api_server": fake.url,
               "image": TEST_IMAGE, "poll_interval": 0.1, "max_parallel": 2}
    options.update(overrides)
    return {k: v for k, v in options.items() if v is not None}


@attrs.define
class K8sProject:
    """A project directory wired to a fake Kubernetes API server, with local stores."""

    path: Path
    fake: Any

    def write_stacks(self, **executor_overrides: Any) -> Path:
        stores = self.path / ".stores"
        text = (
            'default = "k8s"\n\n[stacks.k8s]\n'
            f"executor = {inline_table(executor_options(self.fake, **executor_overrides))}\n"
            f"artifact_store = {inline_table({'flavor': 'local', 'path': str(stores / 'artifacts')})}\n"
            f"cache_store = {inline_table({'flavor': 'local', 'path': str(stores / 'cache')})}\n"
        )
        path = self.path / "stacks.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def resolve(self, name: str = "k8s") -> Any:
        from flowyml_core.stacks import StackRegistry

        return StackRegistry.load(cwd=self.path).resolve(name)

    def pipeline(self) -> Any:
        from flowyml_core.loader import load_pipeline

        return load_pipeline(str(self.path / PIPELINE_REF))


@pytest.fixture
def k8s_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                fake_kubernetes_factory: Callable[..., Any]) -> K8sProject:
    path = tmp_path / "project"
    path.mkdir()
    shutil.copy(PIPELINE_FILE, path / PIPELINE_FILE.name)
    # PYTHONPATH: what images built by flowyml-docker set (the project at their working directory).
    fake = fake_kubernetes_factory(workdir=path, base_env={"XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
                                                           "PYTHONPATH": str(path)})
    project = K8sProject(path, fake)
    project.write_stacks()
    monkeypatch.chdir(path)
    return project
