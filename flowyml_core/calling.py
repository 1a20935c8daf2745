"""Calling plugin methods by keyword, so that the contracts can grow.

A contract method may gain keyword arguments (``router``,
``input_fingerprints``) long after plugins were written against it: flowyml
passes each implementation only the arguments it declares.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

_ACCEPTED: dict[Any, frozenset[str] | None] = {}


def _accepted(func: Any) -> frozenset[str] | None:
    """Keyword names ``func`` declares, or None when it takes ``**kwargs`` (cached)."""
    try:
        return _ACCEPTED[func]
    except KeyError:
        pass
    try:
        params = inspect.signature(func).parameters
        names = None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else frozenset(params)
    except (TypeError, ValueError):
        names = None
    _ACCEPTED[func] = names
    return names


def keyword_caller(method: Callable[..., Any], names: frozenset[str] | None = None) -> Callable[..., Any]:
    """Call ``method`` by keyword, dropping arguments it does not declare.

    The executor contract can grow new keyword arguments (``router``,
    ``input_fingerprints``) without breaking plugins written before them.
    ``names`` (what the caller will pass) lets the common case skip the filter.
    """
    accepted = _accepted(getattr(method, "__func__", method))
    if accepted is None or (names is not None and names <= accepted):
        return method

    def call(**kwargs: Any) -> Any:
        return method(**{k: v for k, v in kwargs.items() if k in accepted})

    return call
