"""Content fingerprints of step inputs, outputs and code.

A fingerprint is computed once, when a value is produced, and travels with it:
downstream cache keys are built from fingerprints, never by re-hashing the
value (re-hashing a 100 MB array for every consumer costs more than storing it).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import pickle
from typing import Any, Callable

logger = logging.getLogger(__name__)

_SCALARS = (type(None), bool, int, float, complex, str)


def fingerprint(value: Any) -> str:
    """A hex digest that changes when ``value`` changes.

    Equal values of supported kinds give equal digests across processes. A value
    that cannot be serialized gets a digest unique to this object, so caching
    it is a miss rather than a wrong hit.
    """
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    kind = type(value)
    if kind in _SCALARS:
        h.update(f"{kind.__name__}:{value!r}".encode())
    elif kind in (bytes, bytearray, memoryview):
        h.update(b"bytes:")
        h.update(value)
    elif kind.__module__ == "numpy" and kind.__name__ == "ndarray" and not value.dtype.hasobject:
        h.update(f"ndarray:{value.dtype.str}:{value.shape}:".encode())
        h.update(memoryview(value if value.flags.c_contiguous else value.copy(order="C")).cast("B"))
    else:
        try:
            h.update(b"pickle:")
            h.update(pickle.dumps(value, protocol=5))
        except Exception as exc:  # unpicklable: make the key unique so it never hits
            logger.debug("cannot fingerprint %s (%s); it will never be a cache hit", kind.__name__, exc)
            h.update(f"unhashable:{kind.__qualname__}:{id(value)}".encode())


def combine(*parts: str) -> str:
    """One digest for an ordered sequence of digests or names."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


_CODE_HASHES: dict[Any, str] = {}


def code_fingerprint(func: Callable[..., Any]) -> str:
    """Digest of a function's source (or bytecode when no source is available).

    Source is preferred so that editing a comment-free line changes the key and
    re-importing the same file in another process gives the same key. Digests
    are remembered per code object: a thousand steps wrapping one function
    read its source once.
    """
    target = inspect.unwrap(func)
    code = getattr(target, "__code__", None)
    name = getattr(target, "__qualname__", repr(target))
    if code is not None and (code, name) in _CODE_HASHES:
        return _CODE_HASHES[(code, name)]
    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        text = repr(target) if code is None else repr((code.co_code, code.co_consts, code.co_names))
    digest = combine(name, text)
    if code is not None:
        _CODE_HASHES[(code, name)] = digest
    return digest
