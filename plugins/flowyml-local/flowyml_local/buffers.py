"""The buffers materializers hand to the stores (bytes, numpy arrays, memoryviews), seen as bytes."""

from __future__ import annotations

from typing import Any


def nbytes(buf: Any) -> int:
    """Size in bytes (``len`` of a float64 memoryview counts items, not bytes)."""
    n = getattr(buf, "nbytes", None)
    return n if n is not None else len(buf)


def byte_view(buf: Any) -> memoryview:
    """A flat view of the bytes of a C-contiguous buffer, without a copy.

    Writes, slicing by byte offset and the hash libraries (which take byte-typed
    buffers only) all need it.
    """
    view = memoryview(buf)
    return view if view.format in ("B", "b", "c") and view.ndim == 1 else view.cast("B")
