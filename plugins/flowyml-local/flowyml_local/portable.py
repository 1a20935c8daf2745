"""Store options as a process elsewhere must see them (``portable_options``).

A remote unit receives the stack as declared (see :mod:`flowyml_core.shipping`).
A relative path there would be resolved against the unit's own working
directory, not the client's: the local stores and the router send the
absolute path they resolved it to instead, so a container that mounts the
store at the same path finds the same files. ``${env:…}`` references and URLs
are left exactly as written.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from flowyml_core.config import has_env_ref


def is_local_path(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and "://" not in value and not has_env_ref(value)


def absolute_path_option(options: Mapping[str, Any], resolved: str, key: str = "path") -> dict[str, Any]:
    """``options`` with ``key`` set to ``resolved`` when it is (or defaults to) a local path."""
    declared = options.get(key)
    if declared is not None and not is_local_path(declared):
        return dict(options)
    return {**options, key: resolved}


def absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if is_local_path(path) else path
