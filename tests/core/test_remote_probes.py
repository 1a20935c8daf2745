"""Remote units (real ``flowyml step-runner`` processes, the kit's ``kit-subprocess``) against local runs.

Each test here failed before the fix it comes with (branch ``remoteprobe``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flowyml_core.testing import KitProject
from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin

PIPELINE = """
    import logging
    from flowyml_core import Pipeline, step

    log = logging.getLogger("user.steps")

    @step(outputs=["a"], cache=False)
    def make(n: int = 3):
        print("printed by make", n)
        log.warning("logged by make: %d", n)
        return n * 2

    @step(inputs=["a"], outputs=["b"], cache=False)
    def use(a):
        log.error("logged by use")
        return a + 1

    pipeline = Pipeline("logs", [make, use])
"""


@pytest.fixture
def kit(project: Path, monkeypatch: pytest.MonkeyPatch) -> KitProject:
    (project / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    kit = KitProject(project, plugins={"kit-subprocess": SubprocessExecutorPlugin()})
    stores = {"artifact_store": {"flavor": "local", "path": ".flowyml/artifacts"},
              "cache_store": {"flavor": "local", "path": ".flowyml/cache"}}
    kit.add_stack("sub", "kit-subprocess", **stores)
    kit.add_stack("here", "local", **stores)
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(kit.stacks_file))
    return kit


def _run(kit: KitProject, stack_name: str):
    from flowyml_core.loader import load_pipeline
    from flowyml_core.pipeline import run_on_stack

    return run_on_stack(load_pipeline("pipe.py:pipeline"), kit.resolve(stack_name), source="pipe.py:pipeline",
                        registry=kit.registry())


def test_what_a_step_logs_is_in_its_captured_output_as_locally(kit: KitProject) -> None:
    """A step's own ``logging`` calls belong to the step, remotely too.

    A local step's log lines reach the user (the terminal, or the step's
    captured output); in a unit they went to the step runner's JSON stream
    only, so no record kept them, ``flowyml run`` did not show them, and
    ``runs logs`` lost them with the container.
    """
    remote = _run(kit, "sub")
    assert remote.success, remote.failed_steps
    make, use = remote.steps["make"].logs or "", remote.steps["use"].logs or ""
    assert "printed by make 3" in make
    assert "logged by make: 3" in make and "logged by make" not in use  # each line with its own step
    assert "logged by use" in use and "logged by use" not in make
    assert "WARNING user.steps: logged by make: 3" in make
