"""pytest11 entry point of flowyml-core: fixtures of the conformance kit.

pytest loads this module in every session of an environment where
flowyml-core is installed, so it imports only pytest and the standard library
at import time; flowyml modules are imported inside the fixtures. Fixture names
start with ``flowyml_`` so they never shadow a project's own fixtures.

* ``flowyml_project`` — a :class:`~flowyml_core.testing.project.KitProject` in
  a temporary directory (also the current directory): ``add_stack(...)`` writes
  its stacks.toml, ``resolve(name)`` builds a stack with a private plugin
  registry, ``run(pipeline, stack)`` runs a pipeline with observer hooks
  recorded in ``recorder``.
* ``flowyml_calls`` — a :class:`~flowyml_core.testing.samples.CallLog`: counts
  step calls across threads and processes.
* ``flowyml_pipelines`` — :class:`~flowyml_core.testing.samples.SamplePipelines`
  (linear, diamond, with_failure, grouped, conditional, independent(n)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def flowyml_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A temporary flowyml project (the current directory) with its own stacks.toml and plugin registry."""
    from flowyml_core.testing.project import KitProject

    path = tmp_path / "flowyml-project"
    path.mkdir()
    monkeypatch.chdir(path)
    monkeypatch.delenv("FLOWYML_STACK", raising=False)
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(path / "stacks.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(path / ".xdg"))
    return KitProject(path)


@pytest.fixture
def flowyml_calls(tmp_path: Path) -> Any:
    """A call log on disk that steps append to (see ``flowyml_core.testing.samples``)."""
    from flowyml_core.testing.samples import CallLog

    return CallLog(tmp_path / "flowyml-calls.jsonl")


@pytest.fixture
def flowyml_pipelines(flowyml_calls: Any) -> Any:
    """Sample pipelines whose steps record into ``flowyml_calls``; run them with ``context=pipelines.context()``."""
    from flowyml_core.testing.samples import SamplePipelines

    return SamplePipelines(flowyml_calls)
