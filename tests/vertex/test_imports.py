"""Listing plugins and stacks with a vertex stack defined imports no Google, KFP or Docker code.

Each command runs in a fresh interpreter through the real CLI entry point
(``runpy`` on ``flowyml_core.cli``), then reports which modules it imported
(beyond the empty namespace packages some ``*-nspkg.pth`` files load at start-up).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.import_probe import cli_imports

HEAVY = ("google", "kfp", "docker", "gcsfs", "grpc", "proto", "yaml")



def probe(args, cwd):
    return cli_imports(args, cwd, HEAVY)


@pytest.mark.parametrize(
    "args",
    [["stack", "list"], ["plugins"], ["stack", "show", "gcp-prod"], ["stack", "list", "--json"]],
)
def test_cli_listing_imports_no_cloud_sdk(project, args):
    (project / "stacks.toml").write_text(
        "[stacks.gcp-prod]\n"
        'executor = { flavor = "vertex", project_id = "acme-ml", region = "europe-west1", '
        'registry = "europe-west1-docker.pkg.dev/acme-ml/flowyml" }\n'
    )
    text, report, stderr = probe(args, project)
    assert report["code"] in (0, None), stderr
    assert report["heavy"] == [], f"flowyml {' '.join(args)} imported {report['heavy']}"
    if args[0] == "plugins":
        assert "vertex" in text and "executor: vertex" in text
    elif args[:2] == ["stack", "show"]:
        assert "acme-ml" in text
    else:
        assert "gcp-prod" in text


def test_resolving_a_vertex_stack_imports_no_sdk_until_used(project):
    (project / "stacks.toml").write_text(
        "[stacks.v]\nexecutor = { flavor = \"vertex\", project_id = \"acme-ml\", image = \"img\" }\n")
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from flowyml_core.stacks import StackRegistry\n"
        "stack = StackRegistry.load().resolve('v')\n"
        "stack.executor.to_dict()\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
