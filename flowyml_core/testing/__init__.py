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
work the same way; ``StackParityContract`` (fixture ``parity_stack``) checks
that a whole stack reports what the local stack reports for the same runs.
The pytest plugin :mod:`flowyml_core.testing.pytest_plugin` (loaded
automatically through the ``pytest11`` entry point) adds fixtures for
your own tests: ``flowyml_project``, ``flowyml_calls`` and
``flowyml_pipelines``.

Names are imported on first use: pytest loads this package in every session
of an environment where flowyml-core is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowyml_core import _lazy_exports

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
    "StackParityContract": "flowyml_core.testing.parity",
    "SubprocessExecutor": "flowyml_core.testing.subprocess_executor",
    "SubprocessExecutorPlugin": "flowyml_core.testing.subprocess_executor",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.testing.executor_contract import ExecutorContract
    from flowyml_core.testing.parity import StackParityContract
    from flowyml_core.testing.project import KitProject
    from flowyml_core.testing.router_contract import ROUTES_EVERYTHING, RouterContract
    from flowyml_core.testing.samples import CallLog, SamplePipelines, make_step
    from flowyml_core.testing.store_contracts import ArtifactStoreContract, CacheStoreContract
    from flowyml_core.testing.stores import DirArtifactStore, DirCacheStore, DirStoreConfig
    from flowyml_core.testing.subprocess_executor import SubprocessExecutor, SubprocessExecutorPlugin
