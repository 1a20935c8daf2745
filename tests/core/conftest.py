"""Helpers for the core tests: the test plugins, throwaway plugin distributions and stacks files."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Callable

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Plugins that exist only for these tests (tests/plugins/*). They are not
#: installed in the development venv, where `flowyml plugins` would list them
#: next to the real ones: here they are made importable, and discoverable
#: through their entry points, for the core tests only.
FIXTURE_PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _fixture_plugin_site() -> tuple[Path, Path]:
    """(code, metadata): the fixtures' packages (symlinked) and their dist-info, in two directories.

    Importing the packages is needed from collection on (test modules import
    their components); the entry points only while a core test runs, so the
    metadata directory joins ``sys.path`` (and ``PYTHONPATH``) per test.
    """
    root = Path(tempfile.mkdtemp(prefix="flowyml-test-plugins-"))
    atexit.register(shutil.rmtree, root, True)
    code, meta = root / "code", root / "meta"
    code.mkdir()
    meta.mkdir()
    for pyproject in sorted(FIXTURE_PLUGINS.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        for package in sorted(pyproject.parent.iterdir()):
            if (package / "__init__.py").is_file():
                (code / package.name).symlink_to(package, target_is_directory=True)
        info = meta / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8"
        )
        groups = project.get("entry-points", {})
        (info / "entry_points.txt").write_text(
            "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()),
            encoding="utf-8",
        )
    return code, meta


FIXTURE_CODE, FIXTURE_META = _fixture_plugin_site()
sys.path.append(str(FIXTURE_CODE))


@pytest.fixture(autouse=True)
def fixture_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test plugins, discoverable in this process and in the commands a test starts."""
    monkeypatch.syspath_prepend(str(FIXTURE_META))
    paths = [str(FIXTURE_META), str(FIXTURE_CODE), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))


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
