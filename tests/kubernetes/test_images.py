"""Without ``image``, a run builds the project with flowyml-docker's builder, pushes it, and every pod runs it."""

from __future__ import annotations

import pytest

from flowyml_core.results import ExecutionStatus
from flowyml_docker.images import BuildSpec, pack_context


@pytest.mark.docker
def test_run_builds_pushes_and_runs_the_built_image(k8s_project, docker_engine, docker_registry, busybox_image):
    project = k8s_project.path
    k8s_project.write_stacks(image=None, registry=docker_registry.address, image_name="flowyml/k8s-e2e",
                             base_image=busybox_image, docker_host=docker_engine.base_url)
    expected = f"{docker_registry.address}/flowyml/k8s-e2e:" + pack_context(
        BuildSpec(context=project, base_image=busybox_image)).tag  # the project as it is now, stacks.toml too
    k8s_project.fake.image_map = {expected: None}  # strict: any other image fails to pull
    text = (project / "stacks.toml").read_text()
    assert "image = " not in text.replace("image_name", "").replace("base_image", "")
    result = k8s_project.pipeline().run(stack="k8s")
    assert result.status is ExecutionStatus.COMPLETED, {n: r.error for n, r in result.steps.items()}
    assert result.submission.metadata["image"] == expected
    assert {e.image for e in k8s_project.fake.executions} == {expected}
    assert len(k8s_project.fake.executions) == 5
    assert expected.rsplit(":", 1)[1] in docker_registry.tags("flowyml/k8s-e2e")
