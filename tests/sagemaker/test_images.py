"""With no ``image``, a run builds the project with flowyml-docker's builder, pushes it, and runs exactly that image."""

from __future__ import annotations

import sys

import pytest

from flowyml_docker.images import BuildSpec, pack_context

from .conftest import PIPELINE_REF, REGION, ROLE


@pytest.mark.docker
def test_run_pipeline_builds_pushes_and_runs_the_built_image(sm_project, docker_engine, docker_registry, busybox_image):
    from flowyml_core.loader import load_pipeline
    from flowyml_sagemaker.config import SageMakerConfig
    from flowyml_sagemaker.orchestrator import SageMakerOrchestrator

    config = SageMakerConfig(region=REGION, role_arn=ROLE, endpoint_url=sm_project.fake.url,
                             registry=docker_registry.address, image_name="flowyml/sm-e2e", base_image=busybox_image,
                             docker_host=docker_engine.base_url, poll_interval=0.1)
    expected = f"{docker_registry.address}/flowyml/sm-e2e:" \
               f"{pack_context(BuildSpec(context=sm_project.path, base_image=busybox_image)).tag}"
    # Strict images: only the built reference "pulls"; its entrypoint is replaced by a no-op.
    sm_project.fake.image_map = {expected: [sys.executable, "-c", "pass", "--"]}
    stack = sm_project.resolve()
    submission = SageMakerOrchestrator(config).run_pipeline(load_pipeline(PIPELINE_REF), "buildrun00000001",
                                                            pipeline_module=PIPELINE_REF, stack=stack)
    assert submission.metadata["image"] == expected
    assert submission.wait(30).value == "completed"
    assert {e.image for e in sm_project.fake.executions} == {expected}
    assert expected.rsplit(":", 1)[1] in docker_registry.tags("flowyml/sm-e2e")
    steps = sm_project.fake.definition("flowyml-sm-multi-unit")["Steps"]
    assert {s["Arguments"]["AppSpecification"]["ImageUri"] for s in steps} == {expected}
