"""The one file format of the stores: an *entry* is a magic line, a JSON header line, then the payload.

::

    FLOWYML-ARTIFACT/3\\n            (cache entries: FLOWYML-CACHE/3\\n)
    {"materializer":"npy",...,"digest":"xxh3-128:…"}\\n
    <payload: exactly header["size"] bytes>

Artifacts and cache entries are both one such file (one object on object
stores), published all at once (:meth:`~flowyml_local.backends.StoreBackend.publish`):
the header travels with the data, so there is no second file to keep in step
with the first, no directory per artifact, and a reader that opened an entry
reads one version of it even while a writer replaces it.

The digest is the header's last field and has a fixed length for its
algorithm (and so does a signature), so the header can be written before the
payload has been hashed and completed in place afterwards: large payloads
are hashed while they are written.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from flowyml_core.errors import IntegrityError

from flowyml_local.backends import EntryReader

ARTIFACT_MAGIC = b"FLOWYML-ARTIFACT/3\n"
CACHE_MAGIC = b"FLOWYML-CACHE/3\n"
ARTIFACT_FAMILY = b"FLOWYML-ARTIFACT/"
CACHE_FAMILY = b"FLOWYML-CACHE/"

#: Headers are small; one larger than this is refused rather than read.
MAX_HEADER = 16 * 1024 * 1024

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=True).encode


class OtherFormatError(IntegrityError):
    """An entry of this family written by another flowyml version (its magic line differs)."""


def head_encoder(magic: bytes, fields: Mapping[str, Any],
                 sign: Callable[[str], str] | None = None) -> Callable[[str], bytes]:
    """``head(digest)``: the entry's first bytes for a payload with that digest.

    ``sign(digest)``, when given, adds the ``signature`` field. Every digest
    of one algorithm (and its signature) has one length, so the header's
    length does not depend on the payload (see the module docstring).
    """
    text = _encode(dict(fields))
    if not text.startswith("{") or text == "{}":
        raise ValueError("an entry header needs at least one field")
    prefix = magic + text[:-1].encode("ascii")

    def head(digest: str) -> bytes:
        signature = f',"signature":"{sign(digest)}"' if sign is not None else ""
        return b"".join((prefix, signature.encode("ascii"), b',"digest":"', digest.encode("ascii"), b'"}\n'))

    return head


def read_header(reader: EntryReader, magic: bytes, family: bytes) -> tuple[dict[str, Any], int]:
    """The header of an opened entry and where its payload starts.

    Raises OtherFormatError for an entry of the same family but another
    version, IntegrityError for anything that is not an entry.
    """
    raw = reader.head
    if not raw.startswith(magic):
        if raw.startswith(family):
            version = raw[len(family):raw.find(b"\n")].decode("ascii", "replace")[:20]
            raise OtherFormatError(f"it is in format {(family.decode() + version)!r}, this flowyml reads "
                                   f"{magic.decode().strip()!r} (written by another version)")
        raise IntegrityError("not a flowyml entry (bad magic)")
    end = raw.find(b"\n", len(magic))
    if end < 0:
        size = reader.size
        if size is not None and size <= len(raw):
            raise IntegrityError("truncated header")
        raw = reader.more_head(MAX_HEADER)
        end = raw.find(b"\n", len(magic))
        if end < 0:
            raise IntegrityError("truncated header")
    try:
        header = json.loads(raw[len(magic):end])
    except ValueError as exc:
        raise IntegrityError(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise IntegrityError("the header is not a JSON object")
    return header, end + 1
