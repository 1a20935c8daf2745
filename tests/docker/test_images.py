"""Image building and pushing with the docker SDK, against a real dockerd and registry.

The base image is the busybox image the server fixtures build ``FROM scratch``
(nothing can be pulled here); the registry is a real ``docker-registry`` on
127.0.0.1. Packing and hashing of the build context need no engine.
"""

from __future__ import annotations

import os
import tarfile

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_docker.images import (
    BuildSpec,
    build_and_push,
    build_image,
    docker_client,
    generate_dockerfile,
    pack_context,
    push_image,
)


def make_project(path):
    (path / "pkg").mkdir(parents=True)
    (path / "pkg" / "pipeline.py").write_text("VALUE = 1\n")
    (path / "marker.txt").write_text("from the project\n")
    for junk in (".git/HEAD", ".venv/bin/python", "pkg/__pycache__/x.pyc", "data/big.bin", "notes/keep.md",
                 "build/lib/x.py", "pkg/build/steps.py"):
        (path / junk).parent.mkdir(parents=True, exist_ok=True)
        (path / junk).write_text("junk")
    (path / ".dockerignore").write_text("# local data\ndata\n")
    return path


def tar_names(packed):
    packed.tar.seek(0)
    with tarfile.open(fileobj=packed.tar) as tar:
        return sorted(tar.getnames())


def test_context_is_the_project_minus_ignored_files_and_its_hash_is_content_only(tmp_path):
    project = make_project(tmp_path / "p")
    spec = BuildSpec(context=project, base_image="python:3.11-slim", requirements=("numpy==2.0",))
    first = pack_context(spec)
    assert tar_names(first) == sorted([
        ".flowyml-build/Dockerfile", ".flowyml-build/requirements.txt", "marker.txt", "notes/keep.md",
        "pkg/build/steps.py", "pkg/pipeline.py",
    ])
    os.utime(project / "marker.txt", (1, 1))  # times do not matter, content does
    assert pack_context(spec).digest == first.digest
    (project / "pkg" / "pipeline.py").write_text("VALUE = 2\n")
    changed_code = pack_context(spec)
    assert changed_code.digest != first.digest
    changed_reqs = pack_context(BuildSpec(context=project, requirements=("numpy==2.1",)))
    assert changed_reqs.digest != changed_code.digest
    (project / "requirements.txt").write_text("pandas\n")
    with_file = pack_context(BuildSpec(context=project, requirements=("numpy==2.1",)))
    assert with_file.digest != changed_reqs.digest
    with_file.tar.seek(0)
    with tarfile.open(fileobj=with_file.tar) as tar:
        assert tar.extractfile(".flowyml-build/requirements.txt").read() == b"numpy==2.1\npandas\n"


def test_generated_dockerfile():
    spec = BuildSpec(context=".", base_image="python:3.12-slim", env_vars={"MODE": "prod run"})
    with_reqs = generate_dockerfile(spec, True)
    assert with_reqs.splitlines()[0] == "FROM python:3.12-slim"
    assert 'MODE="prod run"' in with_reqs and "PYTHONPATH=/app" in with_reqs
    assert with_reqs.index("pip install") < with_reqs.index("COPY . /app")  # dependency layer first
    assert "pip install" not in generate_dockerfile(spec, False)


def test_a_dockerfile_outside_the_context_is_refused(tmp_path):
    project = make_project(tmp_path / "p")
    with pytest.raises(FlowymlError, match="not a file inside the build context"):
        pack_context(BuildSpec(context=project, dockerfile="Dockerfile.missing"))


@pytest.mark.docker
def test_build_push_and_reuse(tmp_path, docker_engine, docker_registry, busybox_image):
    client = docker_client(docker_engine.base_url)
    project = make_project(tmp_path / "p")
    spec = BuildSpec(context=project, base_image=busybox_image)
    repository = f"{docker_registry.address}/flowyml/app"

    image = build_and_push(client, spec, repository)
    tag = image.rsplit(":", 1)[1]
    assert image == f"{repository}:{pack_context(spec).tag}"
    assert tag in docker_registry.tags("flowyml/app")
    output = client.containers.run(image, ["cat", "/app/marker.txt", "/app/pkg/pipeline.py"], network_mode="none", remove=True)
    assert output == b"from the project\nVALUE = 1\n"
    listing = client.containers.run(image, ["sh", "-c", "ls -a /app; echo $PYTHONPATH"], network_mode="none", remove=True)
    assert b".git" not in listing and b"data" not in listing and b"/app" in listing

    # Same content: the registry already has it, nothing is rebuilt.
    client.images.remove(image, force=True)
    assert build_and_push(client, spec, repository) == image
    with pytest.raises(Exception, match="No such image|not found"):
        client.images.get(image)

    # A code change is a new tag.
    (project / "pkg" / "pipeline.py").write_text("VALUE = 2\n")
    second = build_and_push(client, spec, repository)
    assert second != image
    assert second.rsplit(":", 1)[1] in docker_registry.tags("flowyml/app")


@pytest.mark.docker
def test_build_errors_in_the_stream_are_errors(tmp_path, docker_engine, busybox_image):
    client = docker_client(docker_engine.base_url)
    project = make_project(tmp_path / "p")
    (project / "Dockerfile").write_text(f"FROM {busybox_image}\nCOPY no-such-file /x\n")
    with pytest.raises(FlowymlError, match="docker build of .* failed: .*no-such-file"):
        build_image(client, BuildSpec(context=project, dockerfile="Dockerfile"), "127.0.0.1:1/flowyml/broken")


@pytest.mark.docker
def test_push_to_a_dead_registry_is_an_error(tmp_path, docker_engine, busybox_image):
    from tests.servers.gcs_emulator import free_port

    client = docker_client(docker_engine.base_url)
    project = make_project(tmp_path / "p")
    dead = f"127.0.0.1:{free_port()}/flowyml/app"
    image = build_image(client, BuildSpec(context=project, base_image=busybox_image), dead)
    with pytest.raises(FlowymlError, match=f"pushing {image} failed: .*(connection refused|connect)"):
        push_image(client, image)
    with pytest.raises(FlowymlError, match="pushing .* failed"):
        build_and_push(client, BuildSpec(context=project, base_image=busybox_image), dead)


def test_no_docker_engine_is_a_clear_error(tmp_path):
    with pytest.raises(FlowymlError, match="cannot reach a docker engine at unix://.*set image to a pre-built image"):
        docker_client(f"unix://{tmp_path}/no.sock").ping()
