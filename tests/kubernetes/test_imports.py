"""Listing plugins and stacks with a kubernetes stack defined imports neither the kubernetes client nor docker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.import_probe import cli_imports

HEAVY = ("kubernetes", "docker", "urllib3", "yaml", "google", "requests")


STACKS = ('[stacks.k8s]\nexecutor = { flavor = "kubernetes", namespace = "ml", context = "prod", '
          'registry = "registry.acme.io/flowyml" }\n')


@pytest.mark.parametrize("args", [["stack", "list"], ["plugins"], ["stack", "show", "k8s"], ["stack", "list", "--json"]])
def test_cli_listing_imports_no_kubernetes_client(project, args):
    (project / "stacks.toml").write_text(STACKS)
    _, data, stderr = cli_imports(args, project, HEAVY)
    assert data["code"] in (0, None), stderr
    assert data["heavy"] == []


def test_import_flowyml_core_and_resolving_a_stack_import_no_kubernetes_client(project):
    (project / "stacks.toml").write_text(STACKS)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import flowyml_core\n"
        "from flowyml_core.stacks import StackRegistry\n"
        "stack = StackRegistry.load().resolve('k8s')\n"
        "stack.executor.to_dict()\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
