"""Small helpers shared by the core tests."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path


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
