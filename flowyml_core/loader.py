"""Finding a pipeline from ``MODULE_OR_FILE:PIPELINE``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from flowyml_core.errors import FlowymlError


def load_pipeline(target: str) -> Any:
    """Import the module or file and return the named Pipeline.

    The attribute may be a Pipeline, or a function of no arguments annotated
    ``-> Pipeline``. Nothing else is called: a ``@step`` or any other
    function named by mistake would run its body (deploy, delete, train...)
    before flowyml could say it is not a pipeline. A file's directory is put
    first on ``sys.path`` so its sibling modules import as they would when it
    runs as a script.
    """
    from flowyml_core.pipeline import Pipeline

    source, sep, attr = target.rpartition(":")
    if not sep or not source or not attr:
        raise FlowymlError(f"{target!r} is not MODULE_OR_FILE:PIPELINE (e.g. examples/quickstart.py:pipeline)")
    module = _import(source)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise FlowymlError(f"{source} has no attribute {attr!r} ({_defined_pipelines(module)})") from None
    if isinstance(obj, Pipeline):
        return obj
    if not _declares_pipeline(obj):
        raise FlowymlError(f"{target} is {_what(obj)}; {_defined_pipelines(module)}")
    try:
        obj = obj()
    except FlowymlError:
        raise
    except Exception as exc:
        raise FlowymlError(f"{target}: calling {attr}() to get the pipeline failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Pipeline):
        raise FlowymlError(f"{target}: {attr}() returned {_what(obj)}")
    return obj


def _defined_pipelines(module: Any) -> str:
    from flowyml_core.pipeline import Pipeline

    names = sorted(n for n, v in vars(module).items() if isinstance(v, Pipeline))
    return f"pipelines defined there: {', '.join(names) or 'none'}"


def _what(obj: Any) -> str:
    """What the target turned out to be, and why it is not run."""
    from flowyml_core.step import Step

    if isinstance(obj, Step):
        return "a step, not a pipeline (a step runs as part of a pipeline; name the pipeline)"
    if inspect.isfunction(obj):
        return ("a function, not a flowyml Pipeline (flowyml calls a function only when it takes no arguments "
                "and is annotated `-> Pipeline`)")
    return f"a {type(obj).__name__}, not a flowyml Pipeline"


def _declares_pipeline(obj: Any) -> bool:
    """A plain function of no required arguments whose return annotation is Pipeline.

    Only the annotation is read (a string under ``from __future__ import
    annotations``): deciding whether to call a function must not call it.
    """
    from flowyml_core.step import Step

    if isinstance(obj, Step) or not inspect.isfunction(obj):
        return False
    annotation = obj.__annotations__.get("return")
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if not isinstance(name, str) or name.rpartition(".")[2] != "Pipeline":
        return False
    required = [
        p for p in inspect.signature(obj).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return not required


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
        except KeyboardInterrupt:
            sys.modules.pop(name, None)
            raise
        except BaseException as exc:
            sys.modules.pop(name, None)
            raise _import_failed(source, exc) from exc
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name and source.startswith(exc.name):
            raise FlowymlError(f"no module named {source!r} (run from the project directory, or give a file path)") from exc
        raise FlowymlError(f"importing {source} failed: {exc}") from exc
    except (FlowymlError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise _import_failed(source, exc) from exc


def _import_failed(source: str, exc: BaseException) -> FlowymlError:
    """One line for anything a pipeline file raises while it is imported, ``sys.exit()`` included.

    A ``SystemExit`` would otherwise end flowyml with the file's exit code and
    no message, and other ``BaseException`` subclasses would print a traceback.
    """
    if isinstance(exc, SystemExit):
        return FlowymlError(
            f"importing {source} called sys.exit({exc.code!r}) before the pipeline was defined; "
            f"put script code under `if __name__ == \"__main__\":` so that importing {source} only defines it"
        )
    return FlowymlError(f"importing {source} failed: {type(exc).__name__}: {exc}")
