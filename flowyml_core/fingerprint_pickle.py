"""Fingerprints of containers and objects: a pickle without memo, made canonical where it has to be.

Kept apart from :mod:`flowyml_core.fingerprint` so that ``pickle`` is imported
when a value first needs it, not by ``from flowyml_core import Pipeline, step``
(bench/bench_startup.py).
"""

from __future__ import annotations

import io
import pickle
import re
import types
from typing import Any

from flowyml_core.errors import UnfingerprintableError
from flowyml_core.fingerprint import _digest, _feed_payload, _is_array, _sorted_digests, _type_name, qualified_name


class _Canonical(pickle.Pickler):
    """A pickler used only for digests, never loaded: it may write what it likes.

    ``persistent_id`` is consulted for every object, the built-in containers included
    (``reducer_override`` is not), so sets inside any object are written in a stable
    order, arrays and memoryviews by content whatever their layout, and names from
    ``__main__`` under the name a step runner imports.
    """

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _ATOMS:  # most objects: the cheapest possible answer
            return None
        if kind is set or kind is frozenset:
            return (kind.__name__, tuple(_sorted_digests(obj)))
        if kind is memoryview or kind is types.CodeType or _is_array(kind):
            return ("value", _digest(obj))
        if (isinstance(obj, type) or kind is types.FunctionType) and getattr(obj, "__module__", None) == "__main__":
            return ("global", qualified_name(obj))
        return None


_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict})


class _Culprit(_Canonical):
    """Finds which object a failed pickle was at: the last one it was asked about."""

    last: Any = None

    def persistent_id(self, obj: Any) -> Any:
        self.last = obj
        return super().persistent_id(obj)


def _culprit_type(value: Any) -> str:
    """The type of the object inside ``value`` that cannot be pickled (only after a failure)."""
    pickler = _Culprit(io.BytesIO(), protocol=5)
    pickler.fast = True
    try:
        pickler.dump(value)
    except Exception:  # the failure being explained: what matters is where it happened
        last = pickler.last
    else:  # it pickles after all: nothing inside to blame
        last = None
    if last is None:
        return _type_name(value)
    return qualified_name(last) if isinstance(last, type) else _type_name(last)


#: What a plain pickle may hold that would make it differ between equal values: sets (written
#: in hash order; protocol 3 names them as globals, text that data rarely holds), numpy arrays
#: (written by layout), ``__main__`` (named by its file elsewhere). Bytes that merely look like
#: one only cost the slower, canonical pickle.
_NOT_CANONICAL = (b"cbuiltins\nset\n", b"cbuiltins\nfrozenset\n", b"numpy", b"__main__")


def _pickle(value: Any, pickler: type[pickle.Pickler], file: Any, protocol: int = 5) -> None:
    p = pickler(file, protocol=protocol)
    p.fast = True  # no memo: equal values pickle alike however their parts are shared
    p.dump(value)


def feed_pickle(h: Any, value: Any) -> None:
    """Containers and objects: a plain pickle when it is canonical (pickle's C speed), else
    one through :class:`_Canonical` (a Python call per object)."""
    buffer = io.BytesIO()
    try:
        _pickle(value, pickle.Pickler, buffer, protocol=3)
    except RecursionError:
        raise
    except Exception:  # something only the canonical pickler handles, or nothing does
        data = None
    else:
        data = buffer.getvalue()
        if any(marker in data for marker in _NOT_CANONICAL):
            data = None
    if data is not None:
        h.update(b"p%d:" % len(data))
        _feed_payload(h, data, len(data))
        return
    h.update(b"q")
    try:
        _pickle(value, _Canonical, _Sink(h))
    except RecursionError:
        raise
    except UnfingerprintableError:
        raise
    except Exception as exc:  # pickle raises many kinds (PicklingError, TypeError, AttributeError...)
        reason = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
        if "cyclic" in reason:
            raise UnfingerprintableError(_type_name(value), "it contains itself") from None
        raise UnfingerprintableError(_culprit_type(value), reason) from None
    h.update(b".")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs in pickle's messages: not for people, nor stable


class _Sink:
    """The canonical pickle goes straight into the hash: no copy of a large pickle in memory."""

    __slots__ = ("write",)

    def __init__(self, h: Any) -> None:
        self.write = h.update
