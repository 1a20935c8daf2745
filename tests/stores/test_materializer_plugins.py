"""Materializers come from plugins through the ``register_materializers`` hook."""

from __future__ import annotations

import json
import types

import pytest

from flowyml_core import hookimpl
from flowyml_core.plugins import Registry, get_registry, reset_registry
from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig
from flowyml_local.materializers import Materializer, MaterializerSet


class Temperature:
    """A user type a plugin knows how to store safely."""

    def __init__(self, celsius: float) -> None:
        self.celsius = celsius

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Temperature) and other.celsius == self.celsius


class TemperatureMaterializer(Materializer):
    name = "temperature"
    extension = ".temp.json"

    def save(self, obj):
        return [json.dumps({"celsius": obj.celsius}).encode()]

    def info(self, obj):
        return {"unit": "C"}

    def load(self, data, info):
        assert info == {"unit": "C"}
        return Temperature(json.loads(bytes(data))["celsius"])


@pytest.fixture
def registry_with_plugin():
    plugin = types.ModuleType("temperature_plugin")

    @hookimpl
    def register_materializers(register):
        register("temperature", TemperatureMaterializer, types=(f"{__name__}.Temperature",), priority=10)

    plugin.register_materializers = register_materializers
    registry = Registry()
    registry.load_entry_points()  # the installed plugins (flowyml-local's built-in materializers)
    registry.register(plugin, "temperature")
    reset_registry(registry)
    yield registry
    reset_registry()


def test_a_plugin_materializer_is_chosen_by_type(registry_with_plugin, tmp_path):
    assert get_registry() is registry_with_plugin
    store = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a")))
    uri = store.materialize(Temperature(21.5), "t", "run", "step")
    meta = store.metadata(uri)
    assert meta["materializer"] == "temperature"
    assert meta["info"] == {"unit": "C"}
    assert store.load(uri) == Temperature(21.5)
    # the built-in ones are still there
    assert store.metadata(store.materialize({"a": 1}, "j", "run", "step"))["materializer"] == "json"
    cache = LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "c")))
    cache.set_value("ab" * 32, Temperature(-3.0), "s", "c")
    assert cache.get("ab" * 32).value == Temperature(-3.0)


def test_without_the_plugin_the_type_is_pickled(tmp_path):
    store = LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "a")))
    assert store.metadata(store.materialize(Temperature(1.0), "t", "run", "step"))["materializer"] == "pickle"


def test_an_explicit_set_and_a_subclass_match():
    class Hot(Temperature):
        pass

    chosen = MaterializerSet([("temperature", TemperatureMaterializer, (f"{__name__}.Temperature",), 5),
                              ("pickle", "flowyml_local.materializers:PickleMaterializer", ("builtins.object",), -100)])
    assert [m.name for m in chosen.choose(Hot(1.0))] == ["temperature", "pickle"]
    assert chosen.by_name("temperature").name == "temperature"
