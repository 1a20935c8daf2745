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
