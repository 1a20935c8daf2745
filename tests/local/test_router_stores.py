"""The ``type`` router writing to the rule's own store, through the real local artifact store."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest

from flowyml_core import Context, Pipeline, step
from flowyml_core.errors import FlowymlError
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.executor import LocalExecutor
from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule


class Model:
    """A user type with no safe format: it goes through pickle (signed by the store)."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.weights == self.weights


def header_of(uri: str) -> dict:
    """The JSON header line of a stored entry (after its magic line)."""
    return json.loads(Path(uri).read_bytes().split(b"\n")[1])


def _router(*rules: TypeRule) -> TypeRouter:
    return TypeRouter(TypeRouterConfig(rules=list(rules)))


def test_output_goes_to_the_rules_store_at_the_templated_path(tmp_path: Path) -> None:
    models = tmp_path / "models"
    router = _router(TypeRule(type="Model", store=str(models), path="{project_name}/by-step/{step_name}/{run_id}-{name}"))
    uri = router.route(Model([1.0, 2.0]), name="model", step_name="train", run_id="r1", project_name="proj")
    assert uri == str(models / "proj" / "by-step" / "train" / "r1-model")
    meta = header_of(uri)
    assert meta["type"].endswith("test_router_stores.Model") and meta["materializer"] == "pickle"
    assert router.load(uri) == Model([1.0, 2.0])
    assert LocalArtifactStore(LocalArtifactStoreConfig(path=str(models))).load(uri) == Model([1.0, 2.0])


def test_unmatched_output_is_left_to_the_artifact_store(tmp_path: Path) -> None:
    router = _router(TypeRule(type="Model", store=str(tmp_path / "m")))
    assert router.route({"a": 1}, name="x", step_name="s", run_id="r") is None
    assert not (tmp_path / "m").exists()


def test_rule_materializer_is_used(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    router = _router(
        TypeRule(type="numpy.ndarray", store=str(tmp_path / "arrays"), materializer="npy"),
        TypeRule(type="list", store=str(tmp_path / "lists"), materializer="pickle"),
    )
    array_uri = router.route(numpy.arange(6.0).reshape(2, 3), name="a", step_name="s", run_id="r")
    list_uri = router.route([1, 2], name="l", step_name="s", run_id="r")
    assert header_of(array_uri)["materializer"] == "npy"
    assert header_of(list_uri)["materializer"] == "pickle"  # not json: forced
    assert router.load(array_uri).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert router.load(list_uri) == [1, 2]


def test_a_materializer_that_cannot_hold_the_value_is_an_error(tmp_path: Path) -> None:
    router = _router(TypeRule(type="Model", store=str(tmp_path / "m"), materializer="json"))
    with pytest.raises(FlowymlError, match="materializer 'json' cannot store a .*Model"):
        router.route(Model([1.0]), name="m", step_name="s", run_id="r")


def test_rule_store_can_be_any_fsspec_url() -> None:
    root = f"flowyml-router-{uuid.uuid4().hex}"  # memory:// is one store per process
    router = _router(TypeRule(type="dict", store=f"memory://{root}/dicts"))
    uri = router.route({"k": [1, 2]}, name="d", step_name="s", run_id="r9")
    assert uri.startswith("memory://") and uri.endswith(f"{root}/dicts/r9/s/d")
    assert router.load(uri) == {"k": [1, 2]}


def test_stores_are_created_once_per_url_and_router_pickles(tmp_path: Path) -> None:
    router = _router(TypeRule(type="dict", store=str(tmp_path / "a")), TypeRule(type="list", store=str(tmp_path / "a")))
    assert router.store_for(str(tmp_path / "a")) is router.store_for(str(tmp_path / "a"))
    copy = pickle.loads(pickle.dumps(router))
    uri = copy.route({"x": 1}, name="n", step_name="s", run_id="r")
    assert router.load(uri) == {"x": 1}


def test_load_outside_the_rule_stores_is_refused(tmp_path: Path) -> None:
    router = _router(TypeRule(type="dict", store=str(tmp_path / "a")))
    with pytest.raises(ValueError, match="not inside any store"):
        router.load(str(tmp_path / "elsewhere" / "r" / "s" / "n"))


def test_in_a_pipeline_routed_outputs_go_to_the_rule_store_and_the_rest_to_the_artifact_store(tmp_path: Path) -> None:
    @step(outputs=["model", "metrics"])
    def train(lr: float) -> tuple[Model, dict]:
        return Model([lr]), {"loss": 0.5}

    @step(inputs=["model"], outputs=["report"])
    def describe(model: Model) -> str:
        return f"weights {model.weights}"

    artifacts = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))
    router = _router(TypeRule(type=f"{__name__}.Model", store=str(tmp_path / "models")))
    result = LocalExecutor().run_pipeline(
        Pipeline("p", [train, describe]), "run-7", context=Context(lr=0.1), artifact_store=artifacts, router=router
    )
    assert result.success, [r.error for r in result.failed_steps]
    uris = result.steps["train"].artifact_uris
    assert uris["model"] == str(tmp_path / "models" / "run-7" / "train" / "model")
    assert uris["metrics"] == str(tmp_path / "artifacts" / "default" / "run-7" / "train.metrics")
    assert router.load(uris["model"]) == Model([0.1])
    assert artifacts.load(uris["metrics"]) == {"loss": 0.5}
    assert artifacts.load(result.steps["describe"].artifact_uri) == "weights [0.1]"


def test_a_failing_route_fails_the_step_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "models"
    blocker.write_text("a file where the store's directory should be")

    @step(outputs=["model"])
    def train() -> Model:
        return Model([1.0])

    router = _router(TypeRule(type="Model", store=str(blocker)))
    result = LocalExecutor().run_pipeline(Pipeline("p", [train]), "r", router=router)
    assert not result.success
    assert result.steps["train"].error.startswith("routing output 'model' failed: ")


def test_validate_names_unknown_materializers(tmp_path: Path) -> None:
    from flowyml_core.errors import ConfigError

    good = _router(TypeRule(type="dict", store=str(tmp_path / "a"), materializer="json"))
    good.validate()
    bad = _router(TypeRule(type="dict", store=str(tmp_path / "a"), materializer="yaml"))
    with pytest.raises(ConfigError, match=r"rule 1 \(dict -> .*\): unknown materializer 'yaml' \(registered: .*json"):
        bad.validate()
