"""Remote runs behave like local ones (issue: remote parity), through the core's RemoteRun.

The executor is the kit's ``kit-subprocess``: every unit is a real ``flowyml
step-runner`` process, with only the environment ``RemoteRun.unit_env`` gives
it plus this test's, so units share nothing with the client but the stores.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.records import RunRecords
from flowyml_core.results import ExecutionStatus
from flowyml_core.shipping import STACK_CONFIG_ENV, stack_payload
from flowyml_core.testing import KitProject
from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin

PIPELINE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["features", "labels"])
    def prepare(n: int = 4):
        return list(range(n)), [x % 2 for x in range(n)]

    @step(inputs=["features", "labels"], outputs=["model"])
    def train(features, labels, epochs: int = 1):
        return {"weights": sum(features) * epochs, "classes": sorted(set(labels))}

    @step(inputs=["model"], outputs=["score"])
    def evaluate(model):
        return model["weights"] / 10

    @step(inputs=["features"], outputs=["nothing"])
    def audit(features):
        return None

    pipeline = Pipeline("quick", [prepare, train, evaluate, audit], context={"n": 4, "epochs": 1})
"""


@pytest.fixture
def kit(project: Path, monkeypatch: pytest.MonkeyPatch) -> KitProject:
    (project / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    kit = KitProject(project, plugins={"kit-subprocess": SubprocessExecutorPlugin()})
    kit.add_stack("sub", "kit-subprocess",
                  artifact_store={"flavor": "local", "path": ".flowyml/artifacts"},
                  cache_store={"flavor": "local", "path": ".flowyml/cache"})
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(kit.stacks_file))
    return kit


def run(kit: KitProject, **params):
    from flowyml_core.loader import load_pipeline
    from flowyml_core.pipeline import run_on_stack

    stack = kit.resolve("sub")
    result = run_on_stack(load_pipeline("pipe.py:pipeline"), stack, context=params, source="pipe.py:pipeline",
                          registry=kit.registry())
    return result, stack.executor


def flags(result) -> dict[str, str]:
    return {name: "cached" if r.cached else "failed" if not r.success else "skipped" if r.skipped else "ran"
            for name, r in result.steps.items()}


def test_a_second_run_submits_nothing_and_reports_every_step_cached(kit: KitProject) -> None:
    first, executor = run(kit)
    assert first.status is ExecutionStatus.COMPLETED, first.failed_steps
    assert executor.launched == ["prepare", "train", "evaluate", "audit"]
    second, executor = run(kit)
    assert executor.launched == [], "a fully cached run started units"
    assert second.status is ExecutionStatus.CACHED and second.submission is None
    assert set(flags(second).values()) == {"cached"}
    assert dict(second.outputs) == dict(first.outputs) == {
        "features": [0, 1, 2, 3], "labels": [0, 1, 0, 1], "model": {"weights": 6, "classes": [0, 1]},
        "score": 0.6, "nothing": None,
    }


def test_after_a_parameter_change_only_affected_units_run(kit: KitProject) -> None:
    run(kit)
    result, executor = run(kit, epochs=3)
    assert executor.launched == ["train", "evaluate"]
    assert flags(result) == {"prepare": "cached", "train": "ran", "evaluate": "ran", "audit": "cached"}
    assert result.outputs["score"] == 1.8
    assert result.submission.metadata["units"] == ["train", "evaluate"]


def test_cached_producers_are_read_through_records_of_the_new_run(kit: KitProject) -> None:
    first, _ = run(kit)
    second, _ = run(kit, epochs=2)
    from flowyml_core.stacks import StackRegistry

    records = RunRecords(kit.resolve("sub").artifact_store, second.run_id)
    prepare = records.read("prepare")
    assert prepare.status == "cached" and {ref.kind for ref in prepare.outputs.values()} == {"cached"}
    assert records.read("train").outputs["model"].kind == "artifact"
    assert records.read("audit").outputs["nothing"].kind == "cached"
    assert RunRecords(kit.resolve("sub").artifact_store, first.run_id).read("audit").outputs["nothing"].kind == "none"
    assert StackRegistry  # resolved above through the kit's registry


def test_outputs_are_loaded_only_when_read(kit: KitProject) -> None:
    result, _ = run(kit)
    assert sorted(result.outputs) == ["features", "labels", "model", "nothing", "score"]
    assert "loaded on access" in repr(result.outputs)
    assert result.steps["train"].output is None  # values stay in the stores
    assert result.outputs["model"]["weights"] == 6


def test_a_failure_skips_what_depends_on_it_as_locally(kit: KitProject, project: Path) -> None:
    (project / "pipe.py").write_text((project / "pipe.py").read_text().replace(
        'return model["weights"] / 10', 'raise RuntimeError("evaluation broke")'))
    result, executor = run(kit)
    assert result.status is ExecutionStatus.FAILED
    assert "evaluation broke" in result.steps["evaluate"].error.splitlines()[0]
    assert flags(result)["audit"] == "ran"


def test_the_stack_travels_with_the_job_and_secrets_stay_references(project: Path, monkeypatch) -> None:
    """A stack in the user's config (not the project's file) works in units; its secret never enters their env."""
    (project / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    xdg = project.parent / "xdg"
    (xdg / "flowyml").mkdir(parents=True)
    (xdg / "flowyml" / "stacks.toml").write_text(textwrap.dedent(f"""
        [stacks.sub]
        executor = "kit-subprocess"
        artifact_store = {{ flavor = "local", path = "{project / 'store'}" }}
        cache_store = {{ flavor = "local", path = "cache", signing_key = "${{env:TEAM_SIGNING_KEY}}" }}
    """))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("TEAM_SIGNING_KEY", "s3cr3t-signing-value")
    from flowyml_core.loader import load_pipeline
    from flowyml_core.pipeline import run_on_stack
    from flowyml_core.plugins import get_registry
    from flowyml_core.remote import RemoteRun
    from flowyml_core.stacks import StackRegistry

    registry = get_registry()
    registry.register(SubprocessExecutorPlugin(), name="kit-subprocess")
    stack = StackRegistry.load().resolve("sub", registry=registry)
    pipeline = load_pipeline("pipe.py:pipeline")
    remote = RemoteRun(pipeline, "r-secret", pipeline_module="pipe.py:pipeline", stack=stack)
    env_text = json.dumps([task.env for task in remote.tasks])
    assert "s3cr3t-signing-value" not in env_text
    shipped = json.loads(remote.tasks[0].env[STACK_CONFIG_ENV])
    assert shipped["components"]["cache_store"]["signing_key"] == "${env:TEAM_SIGNING_KEY}"
    assert shipped["components"]["cache_store"]["path"] == str(project / "cache")  # made absolute
    result = run_on_stack(pipeline, stack, source="pipe.py:pipeline", registry=registry)
    assert result.status is ExecutionStatus.COMPLETED, result.failed_steps
    assert result.outputs["score"] == 0.6


def test_portable_options_keep_urls_and_references(tmp_path: Path, monkeypatch) -> None:
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule

    monkeypatch.chdir(tmp_path)
    store = LocalArtifactStore(LocalArtifactStoreConfig(path="rel/artifacts"))
    assert store.portable_options({"path": "rel/artifacts"})["path"] == str(tmp_path / "rel" / "artifacts")
    assert store.portable_options({})["path"] == str(tmp_path / "rel" / "artifacts")
    assert store.portable_options({"path": "${env:ARTIFACTS}"}) == {"path": "${env:ARTIFACTS}"}
    memory = LocalArtifactStore(LocalArtifactStoreConfig(path="memory://kit/a"))
    assert memory.portable_options({"path": "memory://kit/a"}) == {"path": "memory://kit/a"}
    router = TypeRouter(TypeRouterConfig([TypeRule(type="dict", store="routed")]))
    rules = router.portable_options({"rules": [{"type": "dict", "store": "routed"}, {"type": "x", "store": "gs://b/p"}]})
    assert [r["store"] for r in rules["rules"]] == [str(tmp_path / "routed"), "gs://b/p"]


UNGUARDED = PIPELINE + """
    from flowyml_core.plugins import get_registry
    from flowyml_core.testing.subprocess_executor import SubprocessExecutorPlugin

    get_registry().register(SubprocessExecutorPlugin(), name="kit-subprocess")
    RESULT = pipeline.run(stack="sub")  # no __main__ guard: importing this file starts a run
    print("RUN", RESULT.run_id, RESULT.status.value)
"""


def test_an_unguarded_module_level_run_is_not_started_again_by_units(kit: KitProject, project: Path) -> None:
    """``python pipe.py`` runs the pipeline; every unit imports pipe.py again, which must start nothing."""
    import os
    import subprocess
    import sys

    (project / "pipe.py").write_text(textwrap.dedent(UNGUARDED))
    done = subprocess.run([sys.executable, "pipe.py"], cwd=project, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FLOWYML_STACKS_FILE": str(kit.stacks_file)})
    assert done.returncode == 0, done.stdout + done.stderr
    runs = [line.split() for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert len(runs) == 1 and runs[0][2] == "completed", done.stdout + done.stderr
    store = Path(kit.resolve("sub").artifact_store.root, "default")
    assert sorted(p.name for p in store.iterdir()) == [runs[0][1]], "units started runs of their own"


def test_a_pipeline_without_a_module_is_refused_before_anything_runs(kit: KitProject) -> None:
    from flowyml_core import Pipeline, step
    from flowyml_core.pipeline import run_on_stack

    @step(outputs=["x"])
    def make():
        return 1

    pipeline = Pipeline("interactive", [make])
    stack = kit.resolve("sub")
    with pytest.raises(FlowymlError, match="its units import it again from its module, and it has none.*flowyml run"):
        run_on_stack(pipeline, stack, registry=kit.registry())
    assert stack.executor.launched == []


def test_stack_payload_ships_only_stores_and_router(kit: KitProject) -> None:
    payload = json.loads(stack_payload(kit.resolve("sub")))
    assert payload["format"] == "flowyml-stack/1" and payload["name"] == "sub"
    assert sorted(payload["components"]) == ["artifact_store", "cache_store"]


INITIAL = """
    from flowyml_core import Pipeline, step

    @step(outputs=["scaled"])
    def scale(raw, factor: int = 2):
        return [x * factor for x in raw]

    @step(inputs=["scaled"], outputs=["summed"])
    def add(scaled):
        return sum(scaled)

    pipeline = Pipeline("initial", [scale, add])
"""


@pytest.mark.parametrize("stack", ["sub", "local-here"])
def test_initial_inputs_reach_steps_by_parameter_name(kit: KitProject, project: Path, stack: str) -> None:
    """``run_pipeline(inputs=...)``: honoured locally and remotely, never accepted and ignored."""
    from flowyml_core.loader import load_pipeline
    from flowyml_core.pipeline import run_on_stack

    (project / "initial.py").write_text(textwrap.dedent(INITIAL))
    kit.add_stack("local-here", "local", artifact_store={"flavor": "local", "path": ".flowyml/a2"},
                  cache_store={"flavor": "local", "path": ".flowyml/c2"})
    pipeline = load_pipeline("initial.py:pipeline")
    results = [run_on_stack(pipeline, kit.resolve(stack), inputs={"raw": raw}, source="initial.py:pipeline",
                            registry=kit.registry()) for raw in ([1, 2, 3], [1, 2, 3], [5])]
    assert [r.outputs["summed"] for r in results] == [12, 12, 10]
    assert [r.status for r in results] == [ExecutionStatus.COMPLETED, ExecutionStatus.CACHED, ExecutionStatus.COMPLETED]


CONDITIONS = """
    from flowyml_core import Pipeline, step

    @step(outputs=["data"])
    def load(n: int = 3):
        return list(range(n))

    @step(inputs=["data"], outputs=["report"], condition=lambda publish: publish)
    def publish_report(data):
        return sum(data)

    @step(inputs=["data"], outputs=["flag"], condition=lambda data: len(data) > 1)
    def reads_an_asset(data):
        return True

    pipeline = Pipeline("cond", [load, publish_report, reads_an_asset], context={"n": 3, "publish": True})
"""


def test_a_condition_on_parameters_is_checked_by_the_client_so_a_cached_rerun_submits_nothing(
        kit: KitProject, project: Path) -> None:
    (project / "pipe.py").write_text(textwrap.dedent(CONDITIONS))
    first, executor = run(kit)
    assert first.status is ExecutionStatus.COMPLETED, first.failed_steps
    assert executor.launched == ["load", "publish_report", "reads_an_asset"]
    second, executor = run(kit)
    # The condition on a parameter holds here, so the step is a cache hit as locally; the one that reads an
    # asset cannot be asked without its value, so its unit runs (and hits the cache there).
    assert executor.launched == ["reads_an_asset"]
    assert flags(second) == {"load": "cached", "publish_report": "cached", "reads_an_asset": "cached"}
    assert second.outputs["report"] == 3
    skipped, executor = run(kit, publish=False)
    assert "publish_report" in executor.launched, "a false condition is left to the unit, which reports the skip"
    assert flags(skipped)["publish_report"] == "skipped"
