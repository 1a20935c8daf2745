"""The flowyml conformance kit: abstract pytest classes that check a plugin's components.

Subclass one per component and provide the component as a fixture; every
contract test then runs against it::

    import pytest
    from flowyml_core.testing import ExecutorContract
    from flowyml_myexec.executor import MyExecutor

    class TestMyExecutor(ExecutorContract):
        flavor = "myexec"

        @pytest.fixture
        def executor(self):
            return MyExecutor()

``CacheStoreContract`` (fixture ``cache_store``), ``ArtifactStoreContract``
(``artifact_store``) and ``RouterContract`` (``router``, ``routed_value``)
work the same way. The pytest plugin :mod:`flowyml_core.testing.pytest_plugin`
(loaded automatically through the ``pytest11`` entry point) adds fixtures for
your own tests: ``flowyml_project``, ``flowyml_calls`` and
``flowyml_pipelines``.

Names are imported on first use: pytest loads this package in every session
of an environment where flowyml-core is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ExecutorContract": "flowyml_core.testing.executor_contract",
    "CacheStoreContract": "flowyml_core.testing.store_contracts",
    "ArtifactStoreContract": "flowyml_core.testing.store_contracts",
    "RouterContract": "flowyml_core.testing.router_contract",
    "ROUTES_EVERYTHING": "flowyml_core.testing.router_contract",
    "CallLog": "flowyml_core.testing.samples",
    "SamplePipelines": "flowyml_core.testing.samples",
    "make_step": "flowyml_core.testing.samples",
    "KitProject": "flowyml_core.testing.project",
    "DirCacheStore": "flowyml_core.testing.stores",
    "DirArtifactStore": "flowyml_core.testing.stores",
    "DirStoreConfig": "flowyml_core.testing.stores",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'flowyml_core.testing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.testing.executor_contract import ExecutorContract
    from flowyml_core.testing.project import KitProject
    from flowyml_core.testing.router_contract import ROUTES_EVERYTHING, RouterContract
    from flowyml_core.testing.samples import CallLog, SamplePipelines, make_step
    from flowyml_core.testing.store_contracts import ArtifactStoreContract, CacheStoreContract
    from flowyml_core.testing.stores import DirArtifactStore, DirCacheStore, DirStoreConfig
