"""The stack a remote unit runs with: sent with the job, not looked up by name.

A container cannot see the client's ``stacks.toml`` files: the project's may not
be in the image, and the user's (``$XDG_CONFIG_HOME``) or ``FLOWYML_STACKS_FILE``
never are. So the client sends the stack itself, as ``FLOWYML_STACK_CONFIG``: the
stores and the router as they were *declared*, with every ``${env:NAME}``
reference still a reference. Its values are read inside the container when the
step runner resolves the stack, so a secret never enters a job spec.

Only the stores and the router travel: a unit needs them to read its inputs
and write its outputs, not the executor that started it (nor its SDKs).

A component may adjust its declared options for a process elsewhere by
defining ``portable_options(options) -> options``: the local stores turn a
relative path into the absolute path they resolved it to, so that a container
that mounts the store at the same path finds the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from flowyml_core.errors import ConfigError

STACK_CONFIG_ENV = "FLOWYML_STACK_CONFIG"
#: ``NAME__PARTS`` / ``NAME__PART1``…: a variable split for a platform that caps the length of one value.
PARTS_SUFFIX, PART_SUFFIX = "__PARTS", "__PART"
PAYLOAD_FORMAT = "flowyml-stack/1"
#: What a unit needs of its stack.
UNIT_KINDS = ("artifact_store", "cache_store", "router")
ORIGIN = STACK_CONFIG_ENV


def stack_payload(stack: Any, kinds: tuple[str, ...] = UNIT_KINDS) -> str:
    """``stack`` (a resolved stack) as the JSON text of ``FLOWYML_STACK_CONFIG``."""
    components: dict[str, Any] = {}
    for kind in kinds:
        spec = stack.spec.components.get(kind)
        if spec is None:
            continue
        options = dict(spec.options)
        portable = getattr(stack.components.get(kind), "portable_options", None)
        if portable is not None:
            options = dict(portable(options))
        components[kind] = {"flavor": spec.flavor, **options}
    return json.dumps({"format": PAYLOAD_FORMAT, "name": stack.name, "components": components}, sort_keys=True)


def stack_from_payload(text: str, environ: Mapping[str, str], kinds: tuple[str, ...] | None = UNIT_KINDS) -> Any:
    """Resolve a stack sent as ``FLOWYML_STACK_CONFIG``, its references read from ``environ``."""
    from flowyml_core.stacks import StackRegistry, parse_stack

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{STACK_CONFIG_ENV} is not JSON ({exc}); it is set by the orchestrator that started "
                          "this unit") from None
    if not isinstance(data, dict) or data.get("format") != PAYLOAD_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{STACK_CONFIG_ENV} is not a flowyml stack ({PAYLOAD_FORMAT}), found {found!r}: the "
                          "client and this container run different flowyml versions")
    name = str(data.get("name") or "shipped")
    components = dict(data.get("components") or {})
    # A unit never uses the executor; the parser still wants one to call it a stack.
    problems: list[str] = []
    spec = parse_stack(name, {"executor": "unit-runner", **components}, ORIGIN, problems)
    if spec is None:
        raise ConfigError(f"{STACK_CONFIG_ENV}: " + "; ".join(problems))
    del spec.components["executor"]
    registry = StackRegistry([], dict(environ), project_dir=Path.cwd())
    registry.stacks = {name: spec}  # this stack only: no file is read inside a unit
    return registry.resolve(name, kinds=kinds)


def split_long_values(env: Mapping[str, str], limit: int) -> dict[str, str]:
    """``env`` with every value longer than ``limit`` characters split into numbered parts.

    Some platforms cap one environment value (a SageMaker processing job:
    256 characters), and the stack the unit needs is longer. ``NAME`` becomes
    ``NAME__PARTS`` (how many) and ``NAME__PART1``, ``NAME__PART2``…; the step
    runner joins them back (:func:`join_split_values`) before it reads anything.
    """
    out: dict[str, str] = {}
    for name, value in env.items():
        if len(value) <= limit:
            out[name] = value
            continue
        parts = [value[i:i + limit] for i in range(0, len(value), limit)]
        out[f"{name}{PARTS_SUFFIX}"] = str(len(parts))
        out.update({f"{name}{PART_SUFFIX}{i}": part for i, part in enumerate(parts, 1)})
    return out


def join_split_values(environ: Mapping[str, str]) -> Mapping[str, str]:
    """``environ`` with the variables :func:`split_long_values` split joined again (also set in ``os.environ``)."""
    import os

    joined: dict[str, str] = {}
    for key, count in environ.items():
        if not key.endswith(PARTS_SUFFIX):
            continue
        name = key[:-len(PARTS_SUFFIX)]
        if name in environ:
            continue
        if not count.isdigit():
            raise ConfigError(f"{key} is {count!r}, not a number of parts; it is set by the orchestrator that "
                              "started this unit")
        parts = [environ.get(f"{name}{PART_SUFFIX}{i}") for i in range(1, int(count) + 1)]
        missing = [f"{name}{PART_SUFFIX}{i}" for i, part in enumerate(parts, 1) if part is None]
        if missing:
            raise ConfigError(f"{name} was sent in {count} parts but {', '.join(missing)} is not set; it is set by "
                              "the orchestrator that started this unit")
        joined[name] = "".join(p for p in parts if p is not None)
    if not joined:
        return environ
    os.environ.update(joined)
    return {**environ, **joined}
