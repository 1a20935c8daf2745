"""Small helpers shared by the core tests."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def pythonpath(*dirs: Path) -> str:
    """``dirs`` first on ``PYTHONPATH``, keeping what is there (the test plugins, see conftest.py)."""
    return os.pathsep.join([*map(str, dirs), *filter(None, [os.environ.get("PYTHONPATH")])])


def load_module(path: Path, name: str, register: bool = False) -> ModuleType:
    """Import ``path`` as module ``name``, afresh (as a new process would after an edit).

    ``register`` puts it in ``sys.modules`` (replacing an earlier import), as a
    real import does: what unpickles a step by reference looks it up there.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def outputs_and_cached(pipeline: Any, stack: str | None = None) -> tuple[dict[str, Any], dict[str, bool]]:
    """Run ``pipeline`` (it must succeed): its outputs, and whether each step came from the cache."""
    result = pipeline.run(stack=stack)
    assert result.success, {n: r.error for n, r in result.steps.items() if r.error}
    return result.outputs, {name: r.cached for name, r in result.steps.items()}
