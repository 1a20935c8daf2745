"""The s3 stores through the real ``flowyml`` console script: the quickstart on an ``s3-local`` stack,
secrets that never reach the output, one-line errors, and the kit's stack parity contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyml_core.testing import StackParityContract
from flowyml_s3.config import S3ArtifactStoreConfig, S3CacheStoreConfig
from flowyml_s3.stores import S3ArtifactStore, S3CacheStore

from tests.servers.moto_s3 import KEY, SECRET

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = f"{REPO / 'examples' / 'quickstart.py'}:pipeline"

#: Credentials reach the stack as ${env:…} references only; the values must never be printed.
STACKS = """\
default = "local"

[stacks.s3-local]
description = "Local executor; artifacts and cache in an S3 API (moto)"
executor = "local"
artifact_store = {{ flavor = "s3", url = "s3://{bucket}/artifacts", endpoint_url = "{endpoint}", region = "us-east-1", key = "${{env:S3_TEST_KEY}}", secret = "${{env:S3_TEST_SECRET}}" }}
cache_store = {{ flavor = "s3", url = "s3://{bucket}/cache", endpoint_url = "{endpoint}", region = "us-east-1", key = "${{env:S3_TEST_KEY}}", secret = "${{env:S3_TEST_SECRET}}" }}

[stacks.s3-literal]
executor = "local"
artifact_store = {{ flavor = "s3", url = "s3://{bucket}/artifacts", endpoint_url = "{endpoint}", key = "AKIALITERALKEY", secret = "literal-secret-in-the-file" }}

[stacks.s3-no-bucket]
executor = "local"
artifact_store = {{ flavor = "s3", url = "s3://no-such-bucket-abc/a", endpoint_url = "{endpoint}", key = "${{env:S3_TEST_KEY}}", secret = "${{env:S3_TEST_SECRET}}" }}

[stacks.s3-no-server]
executor = "local"
artifact_store = {{ flavor = "s3", url = "s3://{bucket}/a", endpoint_url = "http://127.0.0.1:{dead_port}", deadline = 2, key = "${{env:S3_TEST_KEY}}", secret = "${{env:S3_TEST_SECRET}}" }}
"""

ENV = {"S3_TEST_KEY": KEY, "S3_TEST_SECRET": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def s3_project(tmp_path, moto_s3, s3_bucket) -> Path:
    from tests.servers.gcs_emulator import free_port

    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks.toml").write_text(STACKS.format(bucket=s3_bucket, endpoint=moto_s3.url, dead_port=free_port()))
    return project


def test_quickstart_runs_on_the_s3_local_stack_and_is_cached_the_second_time(s3_project, moto_s3, s3_bucket, run_cli):
    validated = run_cli("stack", "validate", "s3-local", cwd=s3_project, env=ENV)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    first = run_cli("run", QUICKSTART, "--stack", "s3-local", cwd=s3_project, env=ENV)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"outputs: s3://{s3_bucket}/artifacts/" in first.stdout
    artifacts = S3ArtifactStore(S3ArtifactStoreConfig(url=f"s3://{s3_bucket}/artifacts", **moto_s3.store_options))
    uris = artifacts.list_artifacts()
    names = {uri.rsplit("/", 1)[-1].split(".", 1)[1] for uri in uris}  # <step>.<name>
    assert {"features", "labels", "train_set", "test_set", "model", "metrics", "report"} <= names, names
    assert 0.5 < artifacts.load(next(u for u in uris if u.endswith(".metrics")))["accuracy"] <= 1.0
    assert not (s3_project / ".flowyml" / "artifacts").exists()  # nothing went to the local disk
    cache = S3CacheStore(S3CacheStoreConfig(url=f"s3://{s3_bucket}/cache", **moto_s3.store_options))
    assert cache.stats()["entries"] == 5  # one per step

    second = run_cli("run", QUICKSTART, "--stack", "s3-local", cwd=s3_project, env=ENV)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout
    assert len(artifacts.list_artifacts()) == len(uris)  # nothing was written again
    for result in (validated, first, second):
        assert SECRET not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr


def test_stack_show_masks_the_credentials(s3_project, run_cli):
    for stack in ("s3-local", "s3-literal"):
        for args in (["stack", "show", stack], ["stack", "show", stack, "--json"]):
            shown = run_cli(*args, cwd=s3_project, env=ENV)
            assert shown.returncode == 0, shown.stderr
            out = shown.stdout + shown.stderr
            for secret in (KEY, SECRET, "AKIALITERALKEY", "literal-secret-in-the-file"):
                assert secret not in out, (stack, args)
    assert "${env:S3_TEST_SECRET}" in run_cli("stack", "show", "s3-local", cwd=s3_project, env=ENV).stdout


@pytest.mark.parametrize("stack, expected", [
    ("s3-no-bucket", "bucket 'no-such-bucket-abc' (s3://no-such-bucket-abc/a, endpoint http://127.0.0.1:"),
    ("s3-no-server", "cannot reach 127.0.0.1:"),
])
def test_a_bad_bucket_or_endpoint_is_one_clear_line(s3_project, run_cli, stack, expected):
    for args in (["stack", "validate", stack], ["run", QUICKSTART, "--stack", stack]):
        result = run_cli(*args, cwd=s3_project, env=ENV)
        assert result.returncode != 0, result.stdout
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr
        if args[0] == "stack":
            assert any(expected in line for line in errors) and len(errors) <= 2, result.stderr
        else:  # the run fails at its first write, with the object named; the cause on the same line
            assert any("s3://" in line for line in errors) and len(errors) <= 2, result.stderr


class TestS3StoresParity(StackParityContract):
    """The kit's fixed pipelines on ``executor = "local"`` with both stores (and the routed output) on S3."""

    @pytest.fixture
    def parity_stack(self, moto_s3, s3_bucket):
        s3 = {"endpoint_url": moto_s3.url, "region": "us-east-1", "key": "${env:S3_TEST_KEY}",
              "secret": "${env:S3_TEST_SECRET}"}
        return {
            "executor": "local",
            "artifact_store": {"flavor": "s3", "url": f"s3://{s3_bucket}/artifacts", **s3},
            "cache_store": {"flavor": "s3", "url": f"s3://{s3_bucket}/cache", **s3},
        }

    @pytest.fixture
    def parity_env(self, moto_s3):
        # The kit's routed output goes to an s3:// URL through the type router's own store,
        # which builds an s3fs filesystem from botocore's environment.
        return {**ENV, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": moto_s3.url,
                "AWS_DEFAULT_REGION": "us-east-1"}
