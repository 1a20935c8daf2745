"""Container settings: how to get the image a remote step runs in."""

from __future__ import annotations

from typing import Any

import attrs


def _str_tuple(value: Any) -> tuple[str, ...]:
    """A sequence of strings; a single string is one item, not its characters."""
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.define(frozen=True)
class DockerConfig:
    """How to get the image a remote step runs in: use ``image`` or build one."""

    image: str | None = None
    dockerfile: str | None = None
    build_context: str = "."
    base_image: str = "python:3.11-slim"
    requirements: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    env_vars: dict[str, str] = attrs.field(factory=dict)
    build_args: dict[str, str] = attrs.field(factory=dict)
    platform: str = "linux/amd64"
    command: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_str_tuple))
    args: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(_str_tuple))
