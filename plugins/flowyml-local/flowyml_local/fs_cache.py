"""The cache store on any :class:`~flowyml_local.backends.StoreBackend` (local disk, GCS, any fsspec URL).

Layout (``docs/reference/stores.md``)::

    <root>/<key>       one entry per key (see flowyml_local.entries): header + payload

Flat, so a cold run creates no directory. The header records the key (an
entry moved to another key is refused), the step, code hash and output
fingerprint, the materializer, size, digest and, for pickles, a signature
bound to the key. A torn, altered, moved or untrusted entry is a miss, never
a crash; untrusted ones (a signing key that changed) are counted and
reported once per run (:func:`flowyml_local.fsstore.report_untrusted`).

**References.** A large value (≥ 1 MiB) that an artifact store of this
process has just written on the local disk, with the same bytes (same
format, size and digest), is not written a second time: the entry's header
names the artifact (``ref``, relative to the cache root) and its payload is
read from there, checked against the entry's own digest. If the artifact is
deleted or rewritten the entry is a quiet miss, and :meth:`FsCacheStore.prune`
removes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Iterator

from flowyml_core.components import CacheEntry, CacheStore
from flowyml_core.errors import IntegrityError

from flowyml_local import digests
from flowyml_local.backends import EntryReader, StoreBackend, is_temp_name, retry_replaced
from flowyml_local.buffers import nbytes
from flowyml_local.entries import (ARTIFACT_FAMILY, ARTIFACT_MAGIC, CACHE_FAMILY, CACHE_MAGIC, OtherFormatError,
                                   head_encoder, read_header)
from flowyml_local.fsstore import (REFERENCE_MIN, TEMP_SAFE_AGE, FsStore, UntrustedPickleError, file_name,
                                   note_untrusted, recent_large, type_name)
from flowyml_local.materializers import Materializer, MaterializerSet

logger = logging.getLogger("flowyml.stores")


def _safe_key(key: str) -> str:
    if 8 <= len(key) <= 128 and key.isascii() and key.replace("-", "").replace("_", "").isalnum():
        return key
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class _Gone(Exception):
    """The artifact a reference entry names was deleted or rewritten: a quiet miss."""


class FsCacheStore(FsStore, CacheStore):
    """Cache store on a :class:`StoreBackend`: one entry per key (see the module docstring)."""

    kind = "cache_store"

    def __init__(self, config: Any = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._hits = 0
        self._misses = 0
        self._corrupt = 0

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_hits"] = state["_misses"] = state["_corrupt"] = 0
        return state

    def _entry_path(self, key: str) -> str:
        b = self.backend
        return b.join(b.root, _safe_key(key))

    # -- writing ---------------------------------------------------------------
    def set_value(self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None) -> None:
        m, buffers, info = self._encode(value, None)
        size = sum(nbytes(x) for x in buffers)
        safe = _safe_key(key)
        b = self.backend
        fields: dict[str, Any] = {"key": safe, "materializer": m.name, "type": type_name(value), "size": size,
                                  "step_name": step_name, "code_hash": code_hash, "fingerprint": fingerprint,
                                  "created": time.time()}
        if info:
            fields["info"] = info
        algorithm = digests.algorithm_for(m.unsafe)
        digest = None
        if size >= REFERENCE_MIN and b.fs is None:
            candidates = recent_large(m.name, size)
            if candidates:
                digest = digests.of(algorithm, *buffers)
                target = candidates.get(digest)
                if target is not None and os.path.isfile(target):
                    fields["ref"] = os.path.relpath(target, b.root).replace(os.sep, "/")
                    buffers = []
        path = b.join(b.root, safe)
        b.publish(path, head_encoder(CACHE_MAGIC, fields, self._signer_for(m, size, context=safe)), buffers,
                  algorithm, digest)

    # -- reading ---------------------------------------------------------------
    def get(self, key: str) -> CacheEntry | None:
        safe = _safe_key(key)
        b = self.backend
        path = b.join(b.root, safe)
        try:
            entry = self._read(path, safe)
        except FileNotFoundError:
            self._misses += 1
            return None
        except OSError as exc:
            self._miss_with_warning(path, f"cannot be read ({exc})")
            return None
        except OtherFormatError:
            logger.info("cache entry %s was written by another flowyml version; it will be recomputed", b.to_uri(path))
            self._misses += 1
            return None
        except UntrustedPickleError as exc:
            logger.debug("cache entry %s: %s", b.to_uri(path), exc)
            note_untrusted(exc)
            self._misses += 1
            return None
        except _Gone as exc:
            logger.info("cache entry %s: %s; it will be recomputed", b.to_uri(path), exc)
            self._misses += 1
            return None
        except Exception as exc:  # any damage to an entry is a miss, never a crash
            self._miss_with_warning(path, f"is corrupt ({type(exc).__name__}: {exc}); it will be recomputed")
            return None
        self._hits += 1
        return entry

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry's metadata, from its header alone: the value is neither read nor trusted yet.

        Planning a remote run needs only whether an entry exists and its
        fingerprint. Its signature is checked by whoever loads the value (the
        unit that consumes it): a planted header can make a unit fail, never
        run code. ``value`` of the returned entry is None.
        """
        safe = _safe_key(key)
        path = self._entry_path(key)
        try:
            header = self._header_of(path)
        except FileNotFoundError:
            return None
        if header is None:
            logger.info("cache entry %s: unreadable header; treated as a miss", self.backend.to_uri(path))
            return None
        if header.get("key") != safe:
            return None
        return CacheEntry(value=None, step_name=header.get("step_name", ""), code_hash=header.get("code_hash", ""),
                          fingerprint=header.get("fingerprint"), created=float(header.get("created", 0.0)))

    def _read(self, path: str, key: str) -> CacheEntry:
        def attempt() -> CacheEntry:
            with self.backend.open_entry(path) as reader:
                return self._decode(reader, path, key)

        return retry_replaced(attempt)

    def _miss_with_warning(self, path: str, message: str) -> None:
        self._misses += 1
        self._corrupt += 1
        logger.warning("cache entry %s %s", self.backend.to_uri(path), message)

    def _decode(self, reader: EntryReader, path: str, key: str) -> CacheEntry:
        header, offset = read_header(reader, CACHE_MAGIC, CACHE_FAMILY)
        if header.get("key") != key:
            raise IntegrityError(f"the entry was written for key {header.get('key')!r} (moved or copied here?)")
        size, digest = header["size"], header["digest"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IntegrityError("the header is malformed")
        m = self.materializers.by_name(header["materializer"])
        digests.parse(digest, unsafe=m.unsafe)
        self._check_trust(m, header, f"cache entry {self.backend.to_uri(path)}", context=key)
        ref = header.get("ref")
        if ref is not None:
            if reader.size is not None and reader.size != offset:
                raise IntegrityError("a reference entry carries a payload")
            data = self._referenced(ref, m, size, digest)
        else:
            data = reader.payload(offset, size, digest, m.allocate)
        value = m.load(data, header.get("info"))
        return CacheEntry(
            value=value,
            step_name=header.get("step_name", ""),
            code_hash=header.get("code_hash", ""),
            fingerprint=header.get("fingerprint"),
            created=float(header.get("created", 0.0)),
        )

    def _ref_path(self, ref: Any) -> str:
        b = self.backend
        if not isinstance(ref, str) or not ref or b.fs is not None:
            raise IntegrityError("the entry's reference is malformed")
        return os.path.normpath(os.path.join(b.root, ref))

    def _referenced(self, ref: Any, m: Materializer, size: int, digest: str) -> Any:
        """The payload of the artifact a reference entry names, checked against the entry's digest."""
        path = self._ref_path(ref)
        try:
            reader = self.backend.open_entry(path)
        except OSError:
            raise _Gone(f"its data was in artifact {path}, which is gone") from None
        with reader:
            try:
                header, offset = read_header(reader, ARTIFACT_MAGIC, ARTIFACT_FAMILY)
            except IntegrityError:
                raise _Gone(f"its data was in artifact {path}, which was rewritten") from None
            if (header.get("materializer"), header.get("size"), header.get("digest")) != (m.name, size, digest):
                raise _Gone(f"its data was in artifact {path}, which was rewritten")
            return reader.payload(offset, size, digest, m.allocate)

    def _entries(self) -> Iterator[tuple[str, int, float | None]]:
        """Every entry file (not temp files, not hidden probes): (path, size, age)."""
        b = self.backend
        for path, size, age in b.walk(b.root):
            if not file_name(path).startswith("."):
                yield path, size, age

    def _header_of(self, path: str) -> dict[str, Any] | None:
        """An entry's header (None when it cannot be read as an entry of this version)."""
        try:
            with self.backend.open_entry(path) as reader:
                return read_header(reader, CACHE_MAGIC, CACHE_FAMILY)[0]
        except FileNotFoundError:
            raise
        except (OSError, ValueError, IntegrityError):
            return None

    # -- housekeeping ----------------------------------------------------------
    def invalidate(self, key: str | None = None, step_name: str | None = None) -> int:
        """Drop one key, or every entry of ``step_name`` (both: that key if it is that step's)."""
        if key is None and step_name is None:
            raise ValueError("invalidate() needs key= or step_name=; use clear() to drop everything")
        b = self.backend
        if key is not None:
            path = self._entry_path(key)
            if step_name is not None:
                try:
                    header = self._header_of(path)
                except FileNotFoundError:
                    return 0
                if header is not None and header.get("step_name") != step_name:
                    return 0
            return 1 if b.delete(path) else 0
        dropped = 0
        for path, _, _ in self._entries():
            try:
                header = self._header_of(path)
            except FileNotFoundError:
                continue
            if header is not None and header.get("step_name") == step_name and b.delete(path):
                dropped += 1
        return dropped

    def clear(self) -> None:
        """Remove every entry, and the temp files of interrupted writes; nothing else (see ``_is_entry``)."""
        b = self.backend
        for path, _, _ in list(b.walk(b.root)):
            if is_temp_name(file_name(path)) or self._is_entry(path):
                b.delete(path)

    def stats(self) -> dict[str, Any]:
        """``entries``, ``bytes`` on storage; ``temp_files``/``temp_bytes`` left by interrupted writes
        (``prune()`` removes those older than an hour); ``hits``/``misses``/``corrupt`` of this instance."""
        b = self.backend
        entries = total = temps = temp_bytes = 0
        for path, size, _ in b.walk(b.root):
            name = file_name(path)
            if is_temp_name(name):
                temps += 1
                temp_bytes += size
            elif not name.startswith("."):
                entries += 1
                total += size
        return {"entries": entries, "bytes": total, "temp_files": temps, "temp_bytes": temp_bytes,
                "hits": self._hits, "misses": self._misses, "corrupt": self._corrupt, "root": self.root}

    def prune(self, older_than: float | None = None, *, dry_run: bool = False) -> dict[str, Any]:
        """Free storage; returns what was (``dry_run``: would be) removed and how many bytes.

        Always: temp files of interrupted writes older than
        :data:`~flowyml_local.fsstore.TEMP_SAFE_AGE` (younger ones may be writes
        in progress), and entries that refer to an artifact that is gone.
        ``older_than`` (seconds): also every entry written longer ago.
        """
        b = self.backend
        removed = {"temp files": 0, "entries": 0, "dangling references": 0}
        freed = 0
        for path, size in self._temp_leftovers(TEMP_SAFE_AGE):
            if dry_run or b.delete(path):
                removed["temp files"] += 1
                freed += size
        for path, size, age in list(self._entries()):
            what = None
            if older_than is not None and age is not None and age >= older_than and self._is_entry(path):
                what = "entries"
            elif b.fs is None and size < 65536 and self._dangling(path):
                what = "dangling references"
            if what is not None and (dry_run or b.delete(path)):
                removed[what] += 1
                freed += size
        return {"removed": {k: v for k, v in removed.items() if v}, "bytes": freed, "dry_run": dry_run}

    def _is_entry(self, path: str) -> bool:
        """Whether a file is a cache entry (of this or another format version), read from its magic line.

        A cache store's directory may be one a person also keeps other files in
        (``path = "cache"``): ``prune(older_than=...)`` removes old entries, never
        whatever else has grown old there.
        """
        try:
            with self.backend.open_entry(path) as reader:
                return reader.head.startswith(CACHE_FAMILY)
        except OSError:  # gone meanwhile, or unreadable: not ours to remove
            return False

    def _dangling(self, path: str) -> bool:
        try:
            header = self._header_of(path)
        except FileNotFoundError:
            return False
        if header is None or header.get("ref") is None:
            return False
        try:
            target = self._ref_path(header["ref"])
            with self.backend.open_entry(target) as reader:
                art = read_header(reader, ARTIFACT_MAGIC, ARTIFACT_FAMILY)[0]
        except (OSError, IntegrityError):
            return True
        return (art.get("materializer"), art.get("size"), art.get("digest")) != (
            header.get("materializer"), header.get("size"), header.get("digest"))
