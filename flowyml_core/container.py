"""Container settings: how to get the image a remote step runs in."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import attrs

from flowyml_core.errors import DefinitionError


def _str_tuple(value: Any) -> Any:
    """A sequence of strings; a single string is one item, not its characters."""
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:  # not a sequence: the validator names the field
        return value


def _strings(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A tuple of strings (``requirements``, ``command``, ``args``); ``None`` where the field allows it."""
    if value is None and attribute.default is None:
        return
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise DefinitionError(
            f"DockerConfig {attribute.name} must be a list of strings (e.g. [\"numpy>=1.26\"]), got {value!r}"
        )


def _string_table(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``env_vars`` and ``build_args``: names to string values, as the container and the build see them."""
    if not isinstance(value, dict):
        raise DefinitionError(f"DockerConfig {attribute.name} must be a dict of strings (e.g. {{\"MODE\": \"1\"}}), "
                              f"got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise DefinitionError(f"DockerConfig {attribute.name}: the name {key!r} must be a non-empty string")
        if not isinstance(item, str):
            raise DefinitionError(
                f"DockerConfig {attribute.name}[{key!r}] must be a string, got {item!r} ({type(item).__name__}); "
                f"write it as {str(item)!r}"
            )


def _text(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None and attribute.default is None:
        return
    if not isinstance(value, str) or not value:
        raise DefinitionError(f"DockerConfig {attribute.name} must be a non-empty string"
                              f"{' or None' if attribute.default is None else ''}, got {value!r}")


@attrs.define(frozen=True)
class DockerConfig:
    """How to get the image a remote step runs in: use ``image`` or build one.

    Fields are checked when the object is made: an ``env_vars`` value of ``1``
    would otherwise fail (or be stringified differently) inside an image build.
    """

    image: str | None = attrs.field(default=None, validator=_text)
    dockerfile: str | None = attrs.field(default=None, validator=_text)
    build_context: str = attrs.field(default=".", validator=_text)
    base_image: str = attrs.field(default="python:3.11-slim", validator=_text)
    requirements: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    env_vars: dict[str, str] = attrs.field(factory=dict, validator=_string_table)
    build_args: dict[str, str] = attrs.field(factory=dict, validator=_string_table)
    platform: str = attrs.field(default="linux/amd64", validator=_text)
    command: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_str_tuple),
                                                  validator=_strings)
    args: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_str_tuple),
                                               validator=_strings)


class ImageSource(NamedTuple):
    """Where a remote run's image comes from: the pipeline's :class:`DockerConfig` over the executor's options.

    Every remote orchestrator (docker-built images for Vertex AI, SageMaker,
    Kubernetes) decides the same three things before it submits anything.
    """

    #: The directory an image is built from (also the project the units import the pipeline from).
    build_context: Path
    #: The image to run as given, or None: build one from ``build_context``.
    image: str | None
    #: Extra environment of every unit: the executor's ``env_vars``, then the pipeline's.
    env_vars: dict[str, str]

    @classmethod
    def choose(cls, options: Any, docker_config: DockerConfig | None) -> ImageSource:
        """``options``: an executor config with ``build_context``, ``image`` and ``env_vars``."""
        context = options.build_context
        if docker_config is not None and docker_config.build_context != ".":
            context = docker_config.build_context
        image = (docker_config.image if docker_config is not None else None) or options.image
        env_vars = {**options.env_vars, **(docker_config.env_vars if docker_config is not None else {})}
        return cls(Path(context), image, env_vars)

    @property
    def project_root(self) -> Path:
        """Where the units' working directory comes from: the build context, or for a given image
        (built elsewhere from the project), the directory flowyml runs in."""
        return Path.cwd() if self.image else self.build_context
