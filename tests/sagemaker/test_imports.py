"""Listing plugins and stacks with a sagemaker stack defined imports no boto3, botocore or Docker code.

Each command runs in a fresh interpreter through the real CLI entry point, then
reports which modules it imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.import_probe import cli_imports

HEAVY = ("boto3", "botocore", "s3transfer", "docker", "s3fs", "aiobotocore")


STACK = ('[stacks.aws-prod]\nexecutor = { flavor = "sagemaker", region = "eu-west-1", '
         'role_arn = "arn:aws:iam::123456789012:role/flowyml", registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com" }\n')


@pytest.mark.parametrize("args", [["stack", "list"], ["plugins"], ["stack", "show", "aws-prod"], ["stack", "list", "--json"]])
def test_cli_listing_imports_no_aws_sdk(project, args):
    (project / "stacks.toml").write_text(STACK)
    text, report, stderr = cli_imports(args, project, HEAVY)
    assert report["code"] in (0, None), stderr
    assert report["heavy"] == [], f"flowyml {' '.join(args)} imported {report['heavy']}"
    if args[0] == "plugins":
        assert "executor: sagemaker" in text
    else:
        assert "aws-prod" in text


def test_resolving_a_sagemaker_stack_imports_no_sdk_until_used(project):
    (project / "stacks.toml").write_text(STACK)
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import flowyml_core\n"
        "from flowyml_core.stacks import StackRegistry\n"
        "stack = StackRegistry.load().resolve('aws-prod')\n"
        "stack.executor.to_dict()\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
