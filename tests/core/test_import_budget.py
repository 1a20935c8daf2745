"""Listing plugins and stacks imports no cloud SDK; ``import flowyml_core`` imports almost nothing.

The commands run in a fresh interpreter exactly as the console script runs
them, with every plugin of this environment installed, and report what ended
up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.core.helpers import write

HEAVY = ("google", "kfp", "docker", "gcsfs", "dask", "distributed", "fsspec", "numpy", "pandas", "grpc", "requests",
         "boto3", "botocore", "s3fs", "aiobotocore")

# ``google`` and ``google.cloud`` may already be in sys.modules when the
# interpreter starts: google-cloud-aiplatform installs a *-nspkg.pth file that
# creates those (empty) namespace modules in every process, `python -c pass`
# included. Only modules that appear after start-up count.
PROBE = """
import sys
baseline = set(sys.modules)
import json
from flowyml_core.cli import main
sys.argv = ["flowyml", *sys.argv[1:]]
code = main(sys.argv[1:])
heavy = sorted(m for m in set(sys.modules) - baseline if m.split(".")[0] in set({heavy!r}))
print("\\nPROBE=" + json.dumps({{"code": code, "heavy": heavy, "modules": sorted(sys.modules)}}))
""".format(heavy=HEAVY)


def probe(*args: str, cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "PROBE=" in out.stdout, out.stderr
    return json.loads(out.stdout.split("PROBE=")[1])


ALL_FLAVORS = """
    [stacks.gcp]
    executor = { flavor = "vertex", project_id = "p", region = "europe-west1" }
    artifact_store = { flavor = "gcs", url = "gs://b/a" }
    cache_store = { flavor = "gcs", url = "gs://b/c" }

    [stacks.aws]
    executor = "local"
    artifact_store = { flavor = "s3", url = "s3://bucket/a", key = "${env:AWS_ACCESS_KEY_ID}", secret = "${env:AWS_SECRET_ACCESS_KEY}" }
    cache_store = { flavor = "s3", url = "s3://bucket/c", region = "eu-west-1" }

    [stacks.dask]
    executor = "dask"

    [stacks.echo]
    executor = "echo"
"""


@pytest.mark.parametrize("args", [["stack", "list"], ["stack", "list", "--json"], ["plugins"], ["plugins", "--json"],
                                  ["stack", "show", "echo"], ["stack", "validate", "echo"]])
def test_listing_imports_no_cloud_sdk(project, args):
    write(project / "stacks.toml", ALL_FLAVORS)
    result = probe(*args, cwd=project)
    assert result["code"] == 0
    assert result["heavy"] == []
    # What start-up put there is an empty namespace package, not SDK code.
    assert [m for m in result["modules"] if m.startswith("google.") and m != "google.cloud"] == []


def test_stack_list_does_not_even_load_plugins(project):
    write(project / "stacks.toml", ALL_FLAVORS)
    modules = probe("stack", "list", cwd=project)["modules"]
    assert not [m for m in modules if m.startswith(("flowyml_local", "flowyml_testplugin", "flowyml_vertex",
                                                     "flowyml_dask", "flowyml_gcs", "flowyml_s3", "pluggy", "cattrs", "attr"))]


def test_plugins_listing_loads_registration_modules_only(project):
    modules = probe("plugins", cwd=project)["modules"]
    assert "flowyml_testplugin.plugin" in modules
    assert "flowyml_testplugin.components" not in modules  # implementations load when a stack uses them
    # Entry points are read from the small entry_points.txt files, not through
    # importlib.metadata (20-30 ms), even though sys.path names a missing python3XX.zip.
    assert "importlib.metadata" not in modules


def test_import_flowyml_core_imports_nothing_heavy():
    code = (
        "import sys; before = set(sys.modules); import flowyml_core; "
        "print(' '.join(sorted(m for m in set(sys.modules) - before)))"
    )
    new = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "flowyml_core" in new
    third_party = sorted({m.split(".")[0] for m in new} - set(sys.stdlib_module_names) - {"flowyml_core"})
    assert third_party == []
    assert not [m for m in new if m.startswith("flowyml_core.")]  # submodules load on first use


def test_the_first_line_of_a_pipeline_file_loads_only_what_defining_steps_needs():
    """``from flowyml_core import Pipeline, step``: no graph checks, results, plugins, stacks or run ids yet."""
    code = (
        "import sys; before = set(sys.modules); from flowyml_core import Pipeline, step; "
        "print(' '.join(sorted(m for m in set(sys.modules) - before)))"
    )
    new = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    later = {"flowyml_core.dag", "flowyml_core.grouping", "flowyml_core.results", "flowyml_core.execution",
             "flowyml_core.plugins", "flowyml_core.stacks", "flowyml_core.container", "uuid", "pluggy", "cattrs"}
    assert "flowyml_core.pipeline" in new and "flowyml_core.step" in new
    assert sorted(new & later) == []
