"""The conformance kit's own tests: pytester runs the kit against broken components to prove it can fail.

pytester's in-process runs unload every module a run imported. A module
imported again by the next run is a second copy, and objects made by one copy
fail ``isinstance`` checks against the other (a ``Context`` from the kit's
copy is not a ``Context`` to a walker loaded earlier). So what those runs use
is imported here, before any of them: the suite no longer depends on another
test file having imported it first. numpy cannot be imported twice at all.
"""

import importlib

for _name in ("numpy", "flowyml_core.components", "flowyml_core.context", "flowyml_core.execution",
              "flowyml_core.pipeline", "flowyml_core.plugins", "flowyml_core.results", "flowyml_core.walker",
              "flowyml_core.testing.executor_contract", "flowyml_core.testing.parity",
              "flowyml_core.testing.project", "flowyml_core.testing.store_contracts",
              "flowyml_core.testing.router_contract", "flowyml_core.testing.subprocess_executor",
              "flowyml_local.executor", "flowyml_local.cache_store", "flowyml_local.artifact_store"):
    importlib.import_module(_name)  # all in the test environment (requirements-dev.txt, plugins/flowyml-local)
# pytester is enabled in tests/conftest.py (pytest allows pytest_plugins only there).
