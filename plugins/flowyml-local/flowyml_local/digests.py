"""The content digest that artifact sidecars and cache headers record.

Every payload a store writes is recorded as ``"blake3:<64 hex digits>"`` and
checked before it is decoded. Why BLAKE3 rather than SHA-256:

- It must be *cryptographic*. Signatures of pickle-format objects
  (:mod:`flowyml_local.signing`) sign this digest, not the payload; with a
  non-cryptographic checksum (CRC32C, xxHash) anyone could craft a different
  pickle with the digest of a signed one and have it unpickled. BLAKE3 is a
  cryptographic hash with a 256-bit output and a 128-bit security target:
  the collision resistance of SHA-256.
- It must cost less than the I/O it guards. SHA-256 runs at ~1.4 GB/s here,
  while a 100 MB file is written to the page cache in ~20 ms (~5 GB/s): the
  hash alone tripled the time of a write. BLAKE3 runs at ~5 GB/s on one core
  and releases the GIL, so the stores hash in a helper thread while the bytes
  move, and the check nearly vanishes (``bench/bench_artifacts.py``).

The algorithm is part of the recorded text so that a future change can read
what was written before it; this version writes and checks BLAKE3 only.
"""

from __future__ import annotations

import string
from typing import Any, Protocol

import blake3

from flowyml_core.errors import IntegrityError

ALGORITHM = "blake3"
_PREFIX = ALGORITHM + ":"
_HEX_LENGTH = 64
_HEX = frozenset(string.hexdigits.lower())


class Hasher(Protocol):
    def update(self, data: Any, /) -> Any: ...

    def hexdigest(self) -> str: ...


def new_hasher() -> Hasher:
    """An incremental hasher; ``text(h)`` turns it into the recorded form."""
    return blake3.blake3()


def text(hasher: Hasher) -> str:
    """The recorded form of a finished hasher: ``"blake3:<hex>"``."""
    return _PREFIX + hasher.hexdigest()


def of(*buffers: Any) -> str:
    """The recorded digest of the concatenation of ``buffers`` (any C-contiguous buffers)."""
    h = blake3.blake3()
    for buf in buffers:
        h.update(buf if isinstance(buf, (bytes, bytearray)) else _bytes_view(buf))
    return _PREFIX + h.hexdigest()


def _bytes_view(buf: Any) -> memoryview:
    # blake3 takes only byte-typed buffers; a materializer may hand over e.g. a
    # float64 memoryview, whose bytes are what lands in the file.
    view = memoryview(buf)
    return view if view.format in ("B", "b", "c") and view.ndim == 1 else view.cast("B")


def check_recorded(recorded: object) -> str:
    """``recorded`` if this version can check it, else an IntegrityError that says why."""
    if isinstance(recorded, str) and recorded.startswith(_PREFIX):
        hex_part = recorded[len(_PREFIX):]
        if len(hex_part) == _HEX_LENGTH and _HEX.issuperset(hex_part):
            return recorded
    if isinstance(recorded, str) and ":" in recorded and not recorded.startswith(_PREFIX):
        raise IntegrityError(
            f"records a {recorded.split(':', 1)[0]!r} digest; this version checks {ALGORITHM!r} digests only"
        )
    raise IntegrityError(f"records no valid digest ({ALGORITHM}:<{_HEX_LENGTH} hex digits> expected)")
