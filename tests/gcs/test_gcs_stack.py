"""The quickstart on a ``gcs-local`` stack: same pipeline code, outputs and cache in the GCS emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyml_gcs.config import GcsArtifactStoreConfig, GcsCacheStoreConfig
from flowyml_gcs.stores import GcsArtifactStore, GcsCacheStore

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.py"

STACKS = """\
default = "local"

[stacks.gcs-local]
description = "Local executor; artifacts and cache in the GCS emulator"
executor = "local"
artifact_store = {{ flavor = "gcs", url = "gs://{bucket}/artifacts", endpoint = "{endpoint}" }}
cache_store = {{ flavor = "gcs", url = "gs://{bucket}/cache", endpoint = "{endpoint}" }}
"""


@pytest.fixture
def gcs_project(tmp_path, gcs_emulator, gcs_bucket) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "stacks.toml").write_text(STACKS.format(bucket=gcs_bucket, endpoint=gcs_emulator.url))
    return project


def test_quickstart_runs_on_the_gcs_local_stack(gcs_project, gcs_emulator, gcs_bucket, run_cli):
    if not QUICKSTART.is_file():
        pytest.skip("examples/quickstart.py is not there yet")
    target = f"{QUICKSTART}:pipeline"
    validated = run_cli("stack", "validate", "gcs-local", cwd=gcs_project)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    first = run_cli("run", target, "--stack", "gcs-local", cwd=gcs_project)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "gs://" + gcs_bucket in first.stdout + first.stderr  # the summary says where the outputs are

    artifacts = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{gcs_bucket}/artifacts", endpoint=gcs_emulator.url))
    uris = artifacts.list_artifacts()
    names = {uri.rsplit("/", 1)[-1].split(".", 1)[1] for uri in uris}  # <step>.<name>
    assert {"features", "labels", "train_set", "test_set", "model", "metrics", "report"} <= names, names
    metrics = artifacts.load(next(u for u in uris if u.endswith(".metrics")))
    assert 0.5 < metrics["accuracy"] <= 1.0
    assert isinstance(artifacts.load(next(u for u in uris if u.endswith(".report"))), str)
    assert not (gcs_project / ".flowyml" / "artifacts").exists()  # nothing went to the local disk

    cache = GcsCacheStore(GcsCacheStoreConfig(url=f"gs://{gcs_bucket}/cache", endpoint=gcs_emulator.url))
    assert cache.stats()["entries"] == 5  # one per step

    second = run_cli("run", target, "--stack", "gcs-local", cwd=gcs_project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "fully cached" in second.stdout + second.stderr
    assert cache.stats()["entries"] == 5


def test_the_repository_gcs_local_stack_resolves(monkeypatch):
    """The shipped stack structures and builds (no request is made until a store is used)."""
    from flowyml_core.stacks import StackRegistry

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    stack = StackRegistry.load(cwd=REPO).resolve("gcs-local")
    assert isinstance(stack.artifact_store, GcsArtifactStore) and isinstance(stack.cache_store, GcsCacheStore)
    assert stack.artifact_store.uri_for("run", "step", "out").startswith("gs://flowyml-local/")
    assert stack.cache_store.config.endpoint == "http://127.0.0.1:4443"
