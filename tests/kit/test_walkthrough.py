"""The newcomer's path, outside this repository: wheels from a checkout, then CONTRIBUTING's walkthrough as written.

A fresh virtualenv gets flowyml from the wheels ``scripts/build-wheels.sh``
builds (not the editable checkout), with pip offline: ``--find-links dist``
must be enough for flowyml's own packages, plugins depending on plugins
included. Third-party libraries are not downloaded: the dev venv's are made
visible to the fresh one (everything but flowyml's packages and pip), so the
test needs no network and stays fast. Then every ``bash`` block of
CONTRIBUTING's plugin walkthrough runs, as written, in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["flowyml-core", *sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())]


def offline_env(path_first: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: no flowyml settings, no PYTHONPATH, pip offline."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("FLOWYML_", "PIP_", "PYTEST_", "VIRTUAL_ENV")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p, "python").resolve() != Path(sys.executable).resolve()]
    env["PATH"] = os.pathsep.join(([str(path_first)] if path_first else []) + path)
    # No config files (this machine's may add wheel directories), no index: only what --find-links names.
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # The generated package builds with the setuptools already present (no index to fetch one from).
    env["PIP_NO_BUILD_ISOLATION"] = "0"
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = run(["bash", str(REPO / "scripts" / "build-wheels.sh"), str(dist), "--no-build-isolation"], REPO,
                offline_env(PYTHON=sys.executable))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return dist


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """A fresh virtualenv with flowyml-local installed from the wheels, as CONTRIBUTING §2 assumes; its bin/."""
    root = tmp_path_factory.mktemp("newcomer")
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], root, offline_env())
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    purelib = run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root,
                  offline_env()).stdout.strip()
    libraries = root / "libraries"
    libraries.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not re.match(r"(flowyml|__editable__|pip$|pip-)", entry.name):
            (libraries / entry.name).symlink_to(entry)
    Path(purelib, "_dev_venv_libraries.pth").write_text(f"import site; site.addsitedir({str(libraries)!r})\n")
    installed = run([str(bin_dir / "pip"), "install", "-q", "flowyml-local", "--find-links", str(wheels)], root,
                    offline_env(bin_dir))
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return bin_dir


def test_every_package_has_a_wheel_and_its_plugin_dependencies_resolve_offline(wheels: Path, newcomer: Path) -> None:
    built = sorted(w.name.split("-")[0].replace("_", "-") for w in wheels.glob("*.whl"))
    assert built == sorted(PACKAGES), built
    command = "bash scripts/build-wheels.sh && pip install flowyml-vertex --find-links dist"
    assert command in (REPO / "README.md").read_text() and command in (REPO / "plugins/flowyml-vertex/README.md").read_text()
    # vertex depends on gcs and docker (and gcs on local): all must come from dist/, with no index at all.
    done = run([str(newcomer / "pip"), "install", "flowyml-vertex", "--find-links", str(wheels)], newcomer, offline_env(newcomer))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check = run([str(newcomer / "pip"), "check"], newcomer, offline_env(newcomer))
    assert check.returncode == 0, check.stdout + check.stderr
    listed = run([str(newcomer / "flowyml"), "plugins", "--json"], newcomer, offline_env(newcomer))
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert {"docker", "gcs", "local", "vertex"} <= set(plugins), sorted(plugins)
    assert all(plugins[n]["distribution"] == f"flowyml-{n}" and plugins[n]["error"] is None for n in ("gcs", "vertex"))
    assert "testplugin" not in plugins
    where = run([str(newcomer / "python"), "-c", "import flowyml_core; print(flowyml_core.__file__)"], newcomer,
                offline_env(newcomer)).stdout
    assert str(newcomer.parent) in where and str(REPO) not in where, "flowyml_core must come from the wheel, not the checkout"


def walkthrough_blocks() -> list[str]:
    """The ``bash`` blocks of CONTRIBUTING §2, in order."""
    guide = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = guide.split("\n## 2. ", 1)[1].split("\n## 3. ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_contributing_walkthrough_runs_as_written_outside_the_repository(newcomer: Path, tmp_path: Path) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 4, blocks
    outputs = []
    for block in blocks:
        done = run(["bash", "-euo", "pipefail", "-c", block], tmp_path, offline_env(newcomer, XDG_CONFIG_HOME=str(tmp_path / "xdg")))
        assert done.returncode == 0, f"this block of CONTRIBUTING §2 failed:\n{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done)
    stdout = "".join(o.stdout for o in outputs)
    stderr = "".join(o.stderr for o in outputs)
    # §2.4: installed with its [test] extra, listed.
    assert "myexec 0.1.0 (flowyml-myexec)" in stdout and "executor: myexec" in stdout
    # §2.5: the tiny pipeline the package ships ran on the new executor, log_steps showing without --debug, then cached.
    assert "running tiny-myexec on stack mine (3 steps" in stdout
    assert "INFO flowyml_myexec.executor: running step make_numbers" in stderr
    assert "report = {'count': 5, 'sum_of_squares': 55}" in stdout
    assert "fully cached: all 3 steps came from the cache" in stdout
    # §2.6: the kit passes against the generated executor, with nothing skipped.
    summary = outputs[-1].stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    assert not (REPO / "flowyml-myexec").exists() and (tmp_path / "flowyml-myexec" / "examples" / "tiny_pipeline.py").is_file()
