"""Container settings: how to get the image a remote step runs in."""

from __future__ import annotations

from typing import Any

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
