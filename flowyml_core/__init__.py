"""flowyml-core: the pipeline model, plugin hooks and stack registry.

Names are loaded on first use so that ``import flowyml_core`` stays cheap (the
CLI and plugin modules import it on every start).
"""

from __future__ import annotations

import sys as _sys
import types as _types
# Not ``from typing import ...``: typing (and the re module it pulls in) is most
# of what a bare ``import flowyml_core`` would cost. Annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__version__ = "0.1.0"

def _lazy_exports(namespace: dict, exports: dict):
    """``__getattr__`` and ``__dir__`` (PEP 562) for a package whose ``exports`` map name → module.

    Defined here rather than in a module of its own: ``import flowyml_core``
    (and the pytest plugin) must load nothing but this file.

    A name is looked up in the module ``sys.modules`` holds *now*, never kept
    in the package: pytester's in-process runs (how plugin authors test with
    the kit) drop the modules a run imported, and a kept name would then be
    a class from the old copy of its module, which ``isinstance`` against
    the new copy rejects. The lookup costs a dictionary access.
    """
    import importlib

    package = namespace["__name__"]
    modules = _sys.modules

    def __getattr__(name: str):
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = modules.get(module_name)
        return getattr(module if module is not None else importlib.import_module(module_name), name)

    def __dir__() -> list:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


_EXPORTS = {
    "step": "flowyml_core.step",
    "Step": "flowyml_core.step",
    "Pipeline": "flowyml_core.pipeline",
    "Context": "flowyml_core.context",
    "ExecutionResult": "flowyml_core.results",
    "ExecutionStatus": "flowyml_core.results",
    "RunResult": "flowyml_core.results",
    "SubmissionResult": "flowyml_core.results",
    "ResourceConfig": "flowyml_core.resources",
    "DockerConfig": "flowyml_core.container",
    "StepGroup": "flowyml_core.grouping",
    "get_execution_units": "flowyml_core.grouping",
    "hookimpl": "flowyml_core.hookspecs",
    "API_VERSION": "flowyml_core.plugins",
    "FlowymlError": "flowyml_core.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)


class _Package(_types.ModuleType):
    """``flowyml_core.step`` is the public decorator, not the submodule of the same name.

    Importing a submodule sets it as an attribute of its package, so once
    anything imported ``flowyml_core.step`` (the module), ``from flowyml_core
    import step`` returned the module instead of the decorator. The package
    keeps the decorator; the module stays importable as ``from
    flowyml_core.step import Step``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "step" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.context import Context
    from flowyml_core.errors import FlowymlError
    from flowyml_core.grouping import StepGroup, get_execution_units
    from flowyml_core.hookspecs import hookimpl
    from flowyml_core.pipeline import Pipeline
    from flowyml_core.plugins import API_VERSION
    from flowyml_core.container import DockerConfig
    from flowyml_core.resources import ResourceConfig
    from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult, SubmissionResult
    from flowyml_core.step import Step, step
