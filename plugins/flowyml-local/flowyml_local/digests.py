"""The content digests that artifact and cache entry headers record.

Every payload a store writes is recorded as ``"<algorithm>:<hex>"`` and checked
before it is decoded. Two algorithms, chosen by what the digest has to resist:

- ``xxh3-128`` for safe formats (JSON, bytes, npy, parquet). There the digest
  guards against accidents only — torn writes, bit rot, a file edited by
  mistake: an unkeyed digest next to the data cannot stop someone who can
  write both, and loading a safe format runs no code anyway. XXH3 runs at
  ~10 GB/s on one core, so checking 100 MB costs ~10 ms, less than the write
  or read it guards (SHA-256, ~1.4 GB/s here, cost three times the write).
- ``blake3`` for formats whose loading runs code (pickle). Their signature
  (:mod:`flowyml_local.signing`) signs this digest rather than the payload, so
  it must be cryptographic: with a 128-bit checksum anyone could craft a
  different pickle with the digest of a signed one. BLAKE3 (~5 GB/s, 128-bit
  security target, SHA-256's collision resistance) keeps that cheap too. A
  payload of an unsafe format with any other digest is refused.

Large payloads are hashed while the bytes move (see :mod:`flowyml_local.localfs`,
``bench/bench_artifacts.py``). The algorithm is part of the recorded text, so a
later version can still read what this one wrote.
"""

from __future__ import annotations

import string
from typing import Any

import blake3
import xxhash

from flowyml_core.errors import IntegrityError

from flowyml_local.buffers import byte_view

FAST = "xxh3-128"
SECURE = "blake3"
_CONSTRUCTORS = {FAST: xxhash.xxh3_128, SECURE: blake3.blake3}
_HEX_LENGTH = {FAST: 32, SECURE: 64}
_HEX = frozenset(string.hexdigits.lower())

#: Payloads at least this large are hashed while they are written or read (see flowyml_local.localfs).
CHUNKED_MIN = 4 * 1024 * 1024


def algorithm_for(unsafe: bool) -> str:
    """The digest a payload gets: cryptographic when loading it runs code (its signature covers the digest)."""
    return SECURE if unsafe else FAST


class Hasher:
    """An incremental digest that knows its algorithm, so that :meth:`text` is the recorded form."""

    __slots__ = ("algorithm", "_h")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._h = _CONSTRUCTORS[algorithm]()

    def update(self, buf: Any) -> None:
        # Both libraries take byte-typed buffers only; a materializer may hand
        # over e.g. a float64 memoryview, whose bytes are what lands in the file.
        self._h.update(buf if isinstance(buf, (bytes, bytearray)) else byte_view(buf))

    def text(self) -> str:
        return f"{self.algorithm}:{self._h.hexdigest()}"


def of(algorithm: str, *buffers: Any) -> str:
    """The recorded digest of the concatenation of ``buffers`` (any C-contiguous buffers)."""
    h = Hasher(algorithm)
    for buf in buffers:
        h.update(buf)
    return h.text()


def parse(recorded: object, *, unsafe: bool) -> str:
    """The algorithm of a recorded digest this version can check, else an IntegrityError saying why.

    ``unsafe``: the payload's format runs code when loaded, so only a
    cryptographic digest will do.
    """
    if not isinstance(recorded, str) or ":" not in recorded:
        raise IntegrityError("records no valid digest (<algorithm>:<hex digits> expected)")
    algorithm, hex_part = recorded.split(":", 1)
    if algorithm not in _CONSTRUCTORS:
        known = " and ".join(repr(a) for a in _CONSTRUCTORS)
        raise IntegrityError(f"records a {algorithm!r} digest; this version checks {known} digests")
    if len(hex_part) != _HEX_LENGTH[algorithm] or not _HEX.issuperset(hex_part):
        raise IntegrityError(f"records no valid {algorithm} digest ({_HEX_LENGTH[algorithm]} hex digits expected)")
    if unsafe and algorithm != SECURE:
        raise IntegrityError(
            f"records a {algorithm!r} digest for a format that runs code when loaded; such payloads must carry "
            f"a {SECURE!r} digest (their signature covers it), so this one was not written by flowyml"
        )
    return algorithm


def placeholder(algorithm: str) -> str:
    """A recorded digest of the right length, for a header written before its payload has been hashed."""
    return f"{algorithm}:{'0' * _HEX_LENGTH[algorithm]}"
