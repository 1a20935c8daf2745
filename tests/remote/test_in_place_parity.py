"""A step that sorts a list other steps read: locally as in a remote run, where each unit loads its own copy.

The remote side is the kit's ``kit-subprocess`` executor: every unit a real
``flowyml step-runner`` process that reads its inputs from the stores.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowyml_core.loader import load_pipeline
from flowyml_core.pipeline import run_on_stack
from flowyml_core.testing import KitProject
from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin

PIPELINE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["rows"])
    def make():
        return [3, 1, 2]

    @step(inputs=["rows"], outputs=["smallest"])
    def smallest(rows):
        rows.sort()  # changes the list the other reader gets, locally
        return rows[0]

    @step(inputs=["rows", "smallest"], outputs=["kept"])
    def kept(rows, smallest):
        return {"rows": list(rows), "smallest": smallest}

    pipeline = Pipeline("in-place", [make, smallest, kept])
"""


@pytest.fixture
def kit(project: Path, monkeypatch: pytest.MonkeyPatch) -> KitProject:
    (project / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    kit = KitProject(project, plugins={"kit-subprocess": SubprocessExecutorPlugin()})
    for name, flavor, options in (("here", "local", None), ("threads", "local", {"max_workers": 4}),
                                  ("units", "kit-subprocess", None)):
        kit.add_stack(name, flavor, options, artifact_store={"flavor": "local", "path": f".flowyml/{name}/artifacts"},
                      cache_store={"flavor": "local", "path": f".flowyml/{name}/cache"})
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(kit.stacks_file))
    return kit


def outputs(kit: KitProject, stack: str) -> dict:
    result = run_on_stack(load_pipeline("pipe.py:pipeline"), kit.resolve(stack), source="pipe.py:pipeline",
                          registry=kit.registry())
    assert result.success, {n: r.error for n, r in result.steps.items() if r.error}
    return dict(result.outputs)


def test_the_later_reader_gets_the_list_as_produced_locally_and_remotely(kit: KitProject) -> None:
    remote = outputs(kit, "units")
    assert remote["kept"] == {"rows": [3, 1, 2], "smallest": 1}  # its own copy, loaded from the store
    assert outputs(kit, "here") == remote
    assert outputs(kit, "here") == remote  # and again, from the cache


def test_with_threads_a_reader_that_starts_after_the_change_gets_the_list_as_produced(kit: KitProject) -> None:
    first = outputs(kit, "threads")
    assert first == outputs(kit, "units") == outputs(kit, "threads")
