"""Finding a pipeline from ``MODULE_OR_FILE:PIPELINE``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from flowyml_core.errors import FlowymlError


def load_pipeline(target: str) -> Any:
    """Import the module or file and return the named Pipeline.

    The attribute may be a Pipeline or a function of no arguments returning
    one. A file's directory is put first on ``sys.path`` so its sibling modules
    import as they would when it runs as a script.
    """
    from flowyml_core.pipeline import Pipeline

    source, sep, attr = target.rpartition(":")
    if not sep or not source or not attr:
        raise FlowymlError(f"{target!r} is not MODULE_OR_FILE:PIPELINE (e.g. examples/quickstart.py:pipeline)")
    module = _import(source)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = sorted(n for n, v in vars(module).items() if isinstance(v, Pipeline))
        raise FlowymlError(
            f"{source} has no attribute {attr!r} (pipelines defined there: {', '.join(names) or 'none'})"
        ) from None
    if not isinstance(obj, Pipeline) and callable(obj):
        try:
            obj = obj()
        except FlowymlError:
            raise
        except Exception as exc:
            raise FlowymlError(f"{target}: calling {attr}() to get the pipeline failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Pipeline):
        raise FlowymlError(f"{target} is a {type(obj).__name__}, not a flowyml Pipeline")
    return obj


#: Module names this loader gave to pipeline files: loading another file under
#: the same name replaces ours, never a library's.
_LOADED_FILES: dict[str, Path] = {}


def _other_module(name: str, path: Path, existing: Any) -> str | None:
    """Where a *different* module of that name lives, if importing the file would shadow one."""
    if name in sys.stdlib_module_names:
        return "the standard library's"
    if name in _LOADED_FILES:
        return None
    if existing is not None:
        return getattr(existing, "__file__", None) or "built in"
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not os.path.exists(spec.origin):
        return None
    return None if Path(spec.origin).resolve() == path else spec.origin


def _import(source: str) -> Any:
    path = Path(source)
    if source.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FlowymlError(f"pipeline file {source} does not exist")
        resolved = path.resolve()
        name = resolved.stem
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__file__", None) == str(resolved):
            return existing
        other = _other_module(name, resolved, existing)
        if other is not None:
            raise FlowymlError(
                f"pipeline file {source} would be imported as module {name!r}, which is already a different "
                f"module ({other}); rename the file"
            )
        _LOADED_FILES[name] = resolved
        directory = str(resolved.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, resolved)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except FlowymlError:
            raise
        except Exception as exc:
            sys.modules.pop(name, None)
            raise FlowymlError(f"importing {source} failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name and source.startswith(exc.name):
            raise FlowymlError(f"no module named {source!r} (run from the project directory, or give a file path)") from exc
        raise FlowymlError(f"importing {source} failed: {exc}") from exc
    except FlowymlError:
        raise
    except Exception as exc:
        raise FlowymlError(f"importing {source} failed: {type(exc).__name__}: {exc}") from exc
