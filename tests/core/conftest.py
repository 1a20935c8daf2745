"""Helpers for the core tests: throwaway plugin distributions and stacks files."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A directory to put on ``PYTHONPATH`` / ``sys.path`` holding throwaway plugins."""
    path = tmp_path / "site"
    path.mkdir()
    return path


@pytest.fixture
def make_plugin(plugin_site: Path) -> Callable[..., Path]:
    """Write a minimal installed distribution: ``NAME-VERSION.dist-info`` + a module.

    A dist-info directory with ``METADATA`` and ``entry_points.txt`` is what
    both our scanner and ``importlib.metadata`` read; nothing is pip-installed.
    """

    def make(
        entry_name: str,
        source: str,
        *,
        module: str | None = None,
        distribution: str | None = None,
        version: str = "1.0",
        site: Path | None = None,
    ) -> Path:
        site = site or plugin_site
        module = module or f"{entry_name.replace('-', '_')}_plugin"
        distribution = distribution or f"flowyml-{entry_name}"
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n", encoding="utf-8"
        )
        existing = (info / "entry_points.txt").read_text() if (info / "entry_points.txt").exists() else ""
        if "[flowyml.plugins]" not in existing:
            existing += "[flowyml.plugins]\n"
        (info / "entry_points.txt").write_text(existing + f"{entry_name} = {module}\n", encoding="utf-8")
        return site

    return make


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict]]:
    """The test plugin's observer-hook log (``FLOWYML_TESTPLUGIN_EVENTS``)."""
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("FLOWYML_TESTPLUGIN_EVENTS", str(path))

    def read() -> list[dict]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    read.path = path  # type: ignore[attr-defined]
    return read
