"""What the command modules of :mod:`flowyml_core.cli` share."""

from __future__ import annotations

import json
from typing import Any, Callable


def out(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    """``data`` as JSON with ``--json``, else ``text()``."""
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text())


def stack_registry() -> Any:
    from flowyml_core.stacks import StackRegistry

    return StackRegistry.load()
