"""``StackParityContract``: a run on your stack reports what the same run on the local stack reports.

Subclass it and describe the stack under test (stores your units can reach)::

    import pytest
    from flowyml_core.testing import StackParityContract

    class TestMyStackParity(StackParityContract):
        @pytest.fixture
        def parity_stack(self, tmp_path):
            return {
                "executor": {"flavor": "myexec", "workers": 2},
                "artifact_store": {"flavor": "local", "path": str(tmp_path / "artifacts")},
                "cache_store": {"flavor": "local", "path": str(tmp_path / "cache")},
            }

Every test runs one pipeline of :mod:`flowyml_core.testing.parity_pipelines`
twice, on a reference stack (the ``local`` executor and stores, from
flowyml-local) and on yours, each with fresh stores, and compares the run
status, each step's success, skipped and cached flags, retries, error (its
first line) and every output value. The set: a chain; a diamond; a group whose
inputs are mapped by name and by position; a ``None`` output; a routed output;
a ``condition`` that is false; a retry that then succeeds; a failure that skips
what is downstream; run parameters; a second run that is fully cached with
nothing submitted; a rerun after one parameter changed, where only the
affected steps run (and, on a remote executor, only their units are submitted).

The kit adds a ``type`` router to both stacks (``routed_store``, by default next
to the artifact store) unless yours declares one. Units import the pipelines
from the installed ``flowyml_core``, so the images or workers of your
executor need nothing else of the test project. Runs happen with the project
directory as the current directory and ``FLOWYML_STACKS_FILE`` pointing at its
stacks.toml; set anything else your units need with ``parity_env``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pytest

from flowyml_core.results import ExecutionStatus, RunResult
from flowyml_core.testing import parity_pipelines
from flowyml_core.testing.project import KitProject, author_plugin, close_component

REFERENCE = "parity-local"
UNDER_TEST = "parity"


class ParityRuns:
    """The kit's project: the reference stack and the stack under test, and runs on both."""

    def __init__(self, project: KitProject, stack: Any) -> None:
        self.project = project
        self.stack = stack
        self.reference = project.resolve(REFERENCE)

    def run_both(self, pipeline_name: str, params: Mapping[str, Any] | None = None) -> tuple[RunResult, RunResult]:
        pipeline = parity_pipelines.PIPELINES[pipeline_name]
        local = self.run(pipeline, self.reference, params)
        remote = self.run(pipeline, self.stack, params)
        return local, remote

    def run(self, pipeline: Any, stack: Any, params: Mapping[str, Any] | None = None) -> RunResult:
        context = {"token": uuid.uuid4().hex} if pipeline is parity_pipelines.retry else {}
        context.update(params or {})
        result = self.project.run(pipeline, stack, context=context)
        assert isinstance(result, RunResult), f"the run returned {result!r}, not a RunResult"
        assert result.status.is_finished, f"the run returned while still {result.status.value} (it must wait)"
        return result


def describe(result: RunResult) -> dict[str, Any]:
    """What the contract compares of a run: status, per-step flags and errors."""
    steps = {}
    for name, step in result.steps.items():
        first_line = (step.error or "").strip().splitlines()[0] if step.error else None
        steps[name] = {"success": step.success, "skipped": step.skipped, "cached": step.cached,
                       "retries": step.retries, "error": first_line}
    return {"status": result.status.value, "steps": steps}


def values(result: RunResult) -> dict[str, Any]:
    return {name: result.outputs[name] for name in result.outputs}


def submitted_units(result: RunResult) -> list[str] | None:
    """The units a remote run submitted (None: the executor runs in process or does not say)."""
    if result.submission is None:
        return None
    units = result.submission.metadata.get("units")
    return list(units) if units is not None else None


class StackParityContract:
    """Abstract test class: subclass it and provide ``parity_stack``."""

    #: Your plugin module, registered in process when the package is not installed.
    plugin: ClassVar[Any] = None

    # -- fixtures an author provides or may override ---------------------------------------
    @pytest.fixture
    def parity_stack(self) -> Mapping[str, Any]:
        raise NotImplementedError(
            "provide a `parity_stack` fixture: the stack under test as a stacks.toml table, e.g. "
            "{'executor': {'flavor': 'myexec'}, 'artifact_store': {...}, 'cache_store': {...}}"
        )

    @pytest.fixture
    def parity_env(self) -> Mapping[str, str]:
        """Environment variables the runs need (an emulator's address, a signing key...)."""
        return {}

    @pytest.fixture
    def routed_store(self, parity_stack: Mapping[str, Any], tmp_path: Path) -> str:
        """Where the kit's router rule writes the routed output on the stack under test."""
        store = dict(parity_stack.get("artifact_store") or {})
        root = store.get("url") or store.get("path")
        return f"{str(root).rstrip('/')}-routed" if root else str(tmp_path / "routed")

    @pytest.fixture
    def parity(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parity_stack: Mapping[str, Any],
               parity_env: Mapping[str, str], routed_store: str) -> Any:
        project_dir = tmp_path / "parity-project"
        project = KitProject(project_dir, plugins=author_plugin(self.plugin))
        monkeypatch.chdir(project_dir)
        monkeypatch.setenv("FLOWYML_STACKS_FILE", str(project.stacks_file))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(project_dir / ".xdg"))
        for key, value in parity_env.items():
            monkeypatch.setenv(key, value)
        reference_root = tmp_path / "parity-reference"
        project.add_stack(
            REFERENCE, "local",
            artifact_store={"flavor": "local", "path": str(reference_root / "artifacts")},
            cache_store={"flavor": "local", "path": str(reference_root / "cache")},
            router=_router(str(reference_root / "routed")),
        )
        stack = dict(parity_stack)
        executor = stack.pop("executor")
        flavor, options = (executor, None) if isinstance(executor, str) else (
            executor["flavor"], {k: v for k, v in executor.items() if k != "flavor"})
        project.add_stack(
            UNDER_TEST, flavor, options,
            artifact_store=stack.get("artifact_store"), cache_store=stack.get("cache_store"),
            router=stack.get("router") or _router(routed_store),
        )
        resolved = project.resolve(UNDER_TEST)
        try:
            yield ParityRuns(project, resolved)
        finally:
            for component in resolved.components.values():
                close_component(component)

    # -- the contract ---------------------------------------------------------------------------
    def assert_same(self, local: RunResult, remote: RunResult) -> None:
        assert describe(remote) == describe(local), "the run on the stack under test differs from the local run"
        assert values(remote) == values(local), "the outputs differ from the local run's"

    @pytest.mark.parametrize("name", ["chain", "diamond", "group", "none_and_routed", "condition", "retry", "failure",
                                      "in_place"])
    def test_pipeline_matches_the_local_run(self, parity: ParityRuns, name: str) -> None:
        local, remote = parity.run_both(name)
        self.assert_same(local, remote)

    def test_run_parameters_reach_the_steps(self, parity: ParityRuns) -> None:
        local, remote = parity.run_both("chain", {"size": 6, "scale": 3, "label": "six"})
        self.assert_same(local, remote)
        assert values(remote)["summary"] == {"label": "six", "value": 45}

    def test_second_run_is_fully_cached_and_submits_nothing(self, parity: ParityRuns) -> None:
        for _ in range(2):
            local, remote = parity.run_both("diamond")
        self.assert_same(local, remote)
        assert remote.status is ExecutionStatus.CACHED, describe(remote)
        assert submitted_units(remote) in (None, []), f"a fully cached run submitted {submitted_units(remote)}"

    def test_rerun_after_a_parameter_change_runs_only_what_it_affects(self, parity: ParityRuns) -> None:
        parity.run_both("chain", {"scale": 1})
        local, remote = parity.run_both("chain", {"scale": 2})
        self.assert_same(local, remote)
        ran = sorted(name for name, step in remote.steps.items() if not step.cached)
        assert ran == ["summary", "total"], describe(remote)
        units = submitted_units(remote)
        if units is not None:
            assert sorted(units) == ["summary", "total"], f"submitted units {units}, expected only total and summary"


def _router(store: str) -> dict[str, Any]:
    return {"flavor": "type", "rules": [{"type": "Routed", "store": store, "materializer": "json"}]}


__all__ = ["ParityRuns", "StackParityContract", "describe", "submitted_units", "values"]
