"""Vertex builds its image with flowyml-docker's builder: built, pushed, and exactly that image runs."""

from __future__ import annotations

import sys

import attrs
import pytest

from flowyml_docker.images import BuildSpec, pack_context

from .conftest import PIPELINE_FILE, TEST_LOCATION, TEST_PROJECT


@pytest.mark.docker
def test_run_pipeline_builds_pushes_and_submits_the_built_image(
    tmp_path, monkeypatch, docker_engine, docker_registry, busybox_image, fake_gcp_factory, memory_store
):
    """No ``image`` in the stack: run_pipeline builds the project, pushes it and runs exactly that image."""
    from flowyml_core.loader import load_pipeline
    from flowyml_vertex.config import VertexConfig
    from flowyml_vertex.orchestrator import VertexAIOrchestrator

    project = tmp_path / "p"
    (project / "tests" / "vertex").mkdir(parents=True)
    (project / "tests" / "vertex" / PIPELINE_FILE.name).write_text(PIPELINE_FILE.read_text())
    monkeypatch.chdir(project)
    config = VertexConfig(
        project_id=TEST_PROJECT, region=TEST_LOCATION, registry=docker_registry.address, image_name="flowyml/e2e",
        base_image=busybox_image, docker_host=docker_engine.base_url, staging_bucket="gs://b/root", poll_interval=0.1,
    )
    repository = f"{docker_registry.address}/flowyml/e2e"
    expected = f"{repository}:{pack_context(BuildSpec(context=project, base_image=busybox_image)).tag}"
    # Strict images: only the built reference "pulls"; its entrypoint is replaced by a no-op.
    fake = fake_gcp_factory(workdir=project, image_map={expected: [sys.executable, "-c", "pass", "--"]})
    orchestrator = VertexAIOrchestrator(attrs.evolve(config, api_endpoint=fake.url))
    pipeline = load_pipeline("tests/vertex/multi_group_pipeline.py:pipeline")
    submission = orchestrator.run_pipeline(pipeline, "buildrun00000001", artifact_store=memory_store,
                                           pipeline_module="tests/vertex/multi_group_pipeline.py:pipeline")
    assert submission.metadata["image"] == expected
    assert submission.wait(30).value == "completed"
    assert {e.image for e in fake.executions} == {expected}
    assert expected.rsplit(":", 1)[1] in docker_registry.tags("flowyml/e2e")
