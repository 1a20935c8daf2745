"""`flowyml plugin new`: the generated packages install, show up in `flowyml plugins`, and pass the kit as generated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.scaffold import KINDS, new_plugin

PYTHON = sys.executable


def _pytest(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWYML_", "PYTEST_"))}
    full_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=180)


def test_every_kind_passes_the_kit_as_generated(tmp_path: Path) -> None:
    roots = [new_plugin(f"gen-{kind.replace('_', '-')}", kind=kind, directory=tmp_path) for kind in KINDS]
    assert [r.name for r in roots] == ["flowyml-gen-executor", "flowyml-gen-cache-store", "flowyml-gen-artifact-store", "flowyml-gen-router"]
    done = _pytest(["--import-mode=importlib", *[str(r / "tests") for r in roots]], cwd=tmp_path,
                   env={"PYTHONPATH": os.pathsep.join(map(str, roots))})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary


def test_generated_executor_installs_lists_and_passes(tmp_path: Path, run_cli) -> None:
    name = f"myexec-{uuid.uuid4().hex[:6]}"
    dist, flavor = f"flowyml-{name}", name
    made = run_cli("plugin", "new", name, "--kind", "executor", "--directory", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / dist
    assert str(root) in made.stdout and (root / "pyproject.toml").is_file()
    executor_source = (root / f"flowyml_{name.replace('-', '_')}" / "executor.py").read_text()
    assert len(executor_source.splitlines()) <= 40, "the generated executor is the ≤ 40-line example of CONTRIBUTING.md"
    install = subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--config-settings", "editable_mode=compat", "-e", str(root)],
        capture_output=True, text=True, timeout=300,
    )
    try:
        assert install.returncode == 0, install.stderr[-3000:]
        listed = run_cli("plugins", "--json")
        assert listed.returncode == 0, listed.stderr
        plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
        assert flavor in plugins, sorted(plugins)
        mine = plugins[flavor]
        assert mine["distribution"] == dist and mine["version"] == "0.1.0"
        assert mine["flavors"] == {"executor": [flavor]} and mine["api_problem"] is None and mine["error"] is None
        done = _pytest([], cwd=root)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        summary = done.stdout.strip().splitlines()[-1]
        assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    finally:
        subprocess.run([PYTHON, "-m", "pip", "uninstall", "-q", "-y", dist], capture_output=True, timeout=120)
    gone = run_cli("plugins", "--json")
    assert flavor not in {p["name"] for p in json.loads(gone.stdout)["plugins"]}


def test_names_are_normalized_and_checked(tmp_path: Path) -> None:
    assert new_plugin("flowyml-thing", kind="router", directory=tmp_path).name == "flowyml-thing"
    for bad in ("My Exec", "1abc", "a--b", "", "flowyml-"):
        with pytest.raises(FlowymlError, match="lowercase letters and digits"):
            new_plugin(bad, directory=tmp_path)
    with pytest.raises(FlowymlError, match="unknown plugin kind 'orchestrator'"):
        new_plugin("x", kind="orchestrator", directory=tmp_path)


def test_an_existing_package_is_never_overwritten(tmp_path: Path, run_cli) -> None:
    root = new_plugin("keep", directory=tmp_path)
    marker = root / "flowyml_keep" / "executor.py"
    marker.write_text("# my work\n")
    again = run_cli("plugin", "new", "keep", "--directory", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert marker.read_text() == "# my work\n"


def test_contributing_shows_exactly_what_is_generated(tmp_path: Path) -> None:
    guide = (Path(__file__).resolve().parents[2] / "CONTRIBUTING.md").read_text()
    root = new_plugin("myexec", directory=tmp_path)
    executor = guide.split("### 2.2", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert executor == (root / "flowyml_myexec" / "executor.py").read_text()
    assert len(executor.splitlines()) <= 40
    kit = guide.split("### 2.6", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    generated = (root / "tests" / "test_conformance.py").read_text()
    assert kit.strip() in generated
    assert len([line for line in kit.splitlines() if line.strip()]) <= 10  # "adopted in ≤ 10 lines"


@pytest.mark.parametrize("kind", KINDS)
def test_generated_readme_has_a_valid_stack_and_commands_for_the_shipped_pipeline(tmp_path: Path, kind: str) -> None:
    import re
    import tomllib

    from flowyml_core.stacks import StackRegistry

    root = new_plugin(f"try-{kind.replace('_', '-')}", kind=kind, directory=tmp_path)
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, readme
    data = tomllib.loads(blocks[0])  # each key once: `executor` used to be set twice for --kind executor
    (stack_name, stack), = data["stacks"].items()
    flavor = f"try-{kind.replace('_', '-')}"
    component = stack[kind]
    assert (component if isinstance(component, str) else component["flavor"]) == flavor
    assert set(stack) >= {"executor", "artifact_store", "cache_store"}
    (tmp_path / "stacks.toml").write_text(blocks[0])
    assert stack_name in StackRegistry.load(cwd=tmp_path).stacks  # a stack flowyml reads without complaint
    assert 'pip install -e ".[test]"' in readme and "python -m pytest" in readme
    assert f"flowyml run examples/tiny_pipeline.py:pipeline --stack {stack_name}" in readme
    assert (root / "examples" / "tiny_pipeline.py").is_file()


def test_the_tiny_pipeline_runs_on_the_local_stack(tmp_path: Path, run_cli) -> None:
    root = new_plugin("tiny", kind="router", directory=tmp_path)
    out = run_cli("run", "examples/tiny_pipeline.py:pipeline", "--stack", "local", "--param", "count=3", cwd=root)
    assert out.returncode == 0, out.stderr
    assert "report = {'count': 3, 'sum_of_squares': 14}" in out.stdout
    refused = run_cli("run", "examples/tiny_pipeline.py:pipeline", "--stack", "local", "--param", "count=three", cwd=root)
    assert refused.returncode == 1 and "--param count=three: 'three' is not an integer" in refused.stderr


def test_templates_are_package_data() -> None:
    """The scaffold reads real files shipped in the wheel (tests/kit/test_walkthrough.py runs one installed from it)."""
    import tomllib

    from flowyml_core.scaffold import read_template

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["package-data"]["flowyml_core"] == ["templates/**/*.tmpl"]
    source = read_template("components/cache_store.py.tmpl")
    assert "#include" not in source and "def _key_for(" in source and "import hashlib" in source
