"""ImageSource: what every remote orchestrator decides about its image before it submits anything."""

from __future__ import annotations

from pathlib import Path

import attrs

from flowyml_core.container import DockerConfig, ImageSource


@attrs.define
class _Options:  # the fields an executor config that builds images has
    build_context: str = "."
    image: str | None = None
    env_vars: dict = attrs.field(factory=dict)


def test_the_pipelines_docker_config_wins_over_the_executors_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = _Options(build_context="proj", env_vars={"A": "stack", "B": "stack"})
    built = ImageSource.choose(options, DockerConfig(build_context="other", env_vars={"B": "pipeline"}))
    assert built == ImageSource(Path("other"), None, {"A": "stack", "B": "pipeline"})
    assert built.project_root == Path("other")  # the image will hold the build context

    given = ImageSource.choose(_Options(build_context="proj", image="stack:1"), DockerConfig(image="pipe:2"))
    assert given.image == "pipe:2" and given.build_context == Path("proj")
    assert given.project_root == tmp_path  # an image built elsewhere: the project is where flowyml runs

    default = ImageSource.choose(_Options(build_context="proj", image="stack:1"), None)
    assert default == ImageSource(Path("proj"), "stack:1", {})
