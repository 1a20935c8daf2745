"""A plugin declares the plugin API it was written for (FLOWYML_API_VERSION); a mismatch is reported
by `flowyml plugins` and at stack resolution, with both versions."""

from __future__ import annotations

import json
import os
import textwrap
import types
from pathlib import Path

import pytest

from flowyml_core.errors import ConfigError, PluginError
from flowyml_core.plugins import API_VERSION, Registry

CORE_MAJOR = int(API_VERSION.split(".")[0])
FUTURE = f"{CORE_MAJOR + 1}.0"


def _plugin(declared: str | None, flavor: str = "future") -> types.ModuleType:
    from flowyml_core import hookimpl

    module = types.ModuleType(f"plugin_{flavor}")
    if declared is not None:
        module.FLOWYML_API_VERSION = declared

    @hookimpl
    def register_executors(register):
        register(flavor, "flowyml_core.testing.samples:CallLog", summary="a plugin from another API version")

    module.register_executors = register_executors
    return module


@pytest.mark.parametrize(
    ("declared", "compatible"),
    [(None, True), (API_VERSION, True), (f"{API_VERSION}.7", True), (f"{CORE_MAJOR}.99", False),
     (FUTURE, False), (f"{CORE_MAJOR - 1}.9", False), ("one", False), ("1", False)],
)
def test_declared_versions(declared: str | None, compatible: bool) -> None:
    registry = Registry()
    info = registry.register(_plugin(declared), name="future")
    assert info.api_version == declared
    assert ("executor", "future") in info.flavors  # listed either way, so `flowyml plugins` can show it
    if compatible:
        assert info.api_problem is None
        registry.flavor("executor", "future")
    else:
        assert info.api_problem and str(declared) in info.api_problem
        with pytest.raises(PluginError) as raised:
            registry.flavor("executor", "future")
        assert str(declared) in str(raised.value) and "future" in str(raised.value)


def test_in_process_mismatch_names_both_versions() -> None:
    registry = Registry()
    registry.register(_plugin(FUTURE), name="future")
    with pytest.raises(PluginError) as raised:
        registry.flavor("executor", "future")
    message = str(raised.value)
    assert f"API {FUTURE}" in message and f"provides {API_VERSION}" in message and "upgrade flowyml-core" in message


@pytest.fixture
def future_plugin_path(tmp_path: Path) -> Path:
    """A real plugin distribution declaring the next major API, discovered through its entry point."""
    site = tmp_path / "site"
    package = site / "flowyml_future"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(f"""
        from flowyml_core import hookimpl

        FLOWYML_API_VERSION = "{FUTURE}"

        @hookimpl
        def register_executors(register):
            register("future", "flowyml_future.plugin:FutureExecutor", summary="written for a newer flowyml")

        class FutureExecutor:
            def __init__(self, config=None):
                raise AssertionError("an incompatible executor must never be built")
    """))
    dist = site / "flowyml_future-0.4.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flowyml-future\nVersion: 0.4.0\n")
    (dist / "entry_points.txt").write_text("[flowyml.plugins]\nfuture = flowyml_future.plugin\n")
    return site


def test_flowyml_plugins_reports_the_mismatch(future_plugin_path: Path, run_cli) -> None:
    env = {"PYTHONPATH": str(future_plugin_path)}
    listed = run_cli("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["api_version"] == API_VERSION
    future = {p["name"]: p for p in data["plugins"]}["future"]
    assert future["distribution"] == "flowyml-future" and future["api_version"] == FUTURE
    assert FUTURE in future["api_problem"] and API_VERSION in future["api_problem"]
    text = run_cli("plugins", env=env)
    line = next(l for l in text.stdout.splitlines() if "INCOMPATIBLE" in l)
    assert FUTURE in line and API_VERSION in line
    # The other plugins are unaffected.
    assert {p["name"]: p for p in data["plugins"]}["local"]["api_problem"] is None


def test_stack_resolution_reports_the_mismatch(future_plugin_path: Path, run_cli, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "stacks.toml").write_text('[stacks.future]\nexecutor = "future"\n')
    (project / "flow.py").write_text(
        "from flowyml_core import Pipeline, step\n\n@step\ndef one():\n    return 1\n\npipeline = Pipeline('p', steps=[one])\n"
    )
    env = {"PYTHONPATH": str(future_plugin_path)}
    for args in (("stack", "validate", "future"), ("run", "flow.py:pipeline", "--stack", "future")):
        done = run_cli(*args, cwd=project, env=env)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert f"API {FUTURE}" in done.stderr and f"provides {API_VERSION}" in done.stderr, done.stderr
        assert "stacks.toml" in done.stderr and "Traceback" not in done.stderr


def test_resolution_in_process_names_file_stack_and_versions(future_plugin_path: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from flowyml_core.stacks import StackRegistry

    monkeypatch.syspath_prepend(str(future_plugin_path))
    registry = Registry()
    registry.load_entry_points()
    (tmp_path / "stacks.toml").write_text('[stacks.future]\nexecutor = "future"\n')
    with pytest.raises(ConfigError) as raised:
        StackRegistry.load(environ={**os.environ, "FLOWYML_STACKS_FILE": str(tmp_path / "stacks.toml")}).resolve(
            "future", registry=registry)
    message = str(raised.value)
    assert "stack 'future'" in message and "stacks.toml" in message and FUTURE in message and API_VERSION in message
