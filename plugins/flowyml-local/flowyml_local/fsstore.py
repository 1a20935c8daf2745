"""One implementation of the artifact and cache stores for every filesystem.

The local stores and the GCS stores (``flowyml-gcs``) are the classes here,
configured with a different :class:`~flowyml_local.backends.StoreBackend`
(the OS for local paths, fsspec for every other URL: see
:mod:`flowyml_local.backends`).

Artifacts
---------
``uri_for(run, step, name, project)`` is ``<root>/<project>/<run>/<step>/<name>``,
a directory (a prefix on object stores) holding::

    data-<token><ext>    the payload, written under a fresh unique name
    meta.json            the sidecar: its own location (relative to the root), type,
                         materializer, data file, size, digest, signature (pickle);
                         written last, atomically

The sidecar is the commit point. A reader reads it, then the data file it
names, and checks size and digest (see :mod:`flowyml_local.digests`)
before decoding, so an interrupted write (data without sidecar) reads as absent and altered bytes are refused with an
:class:`~flowyml_core.errors.IntegrityError`. Because every write has its own
data file and the sidecar is one atomic object, two writers of one artifact
end with the complete write of whichever published its sidecar last; the
superseded data file is deleted by the writer that replaced it, and a reader
that lost the race re-reads the sidecar. (Writers racing on one artifact may
each leave an unreferenced data file behind, as does a killed writer: never
read; ``prune()`` deletes them.) A sidecar copied over another artifact's is refused:
it records where it belongs.

Cache entries
-------------
One file (object) per key, ``<root>/<key>`` (flat: no directory to create on
a cold run): a magic line, a JSON header line (key, materializer, type, size,
digest, signature bound to the key, step_name, code_hash, fingerprint,
created) and the payload, published with a temp file and an atomic rename (one
atomic PUT on object stores). A torn, altered, moved or untrusted entry is a
miss with a warning.

Trust
-----
Formats whose loading runs code (pickle) are loaded only with a valid
HMAC-SHA256 from the store's signing key, or when the store's config says
``allow_unsigned_pickle = true`` (see :mod:`flowyml_local.signing`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Iterator, Mapping, Sequence

import attrs

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore
from flowyml_core.config import secret_field
from flowyml_core.errors import FlowymlError, IntegrityError

from flowyml_local import digests
from flowyml_local.backends import StoreBackend
from flowyml_local.buffers import byte_view, nbytes
from flowyml_local.materializers import Materializer, MaterializerSet, default_materializers

logger = logging.getLogger("flowyml.stores")

SIDECAR = "meta.json"
ARTIFACT_FORMAT = "flowyml-artifact/2"  # /2: "digest" (xxh3-128 or blake3) instead of "sha256"
CACHE_MAGIC = b"FLOWYML-CACHE/2\n"
_CACHE_MAGIC_FAMILY = b"FLOWYML-CACHE/"


class ArtifactNotFoundError(FlowymlError, FileNotFoundError):
    """No artifact at that URI (never written, or its write never completed)."""


class UntrustedPickleError(IntegrityError):
    """A pickle-format object without a valid signature from this store's key."""


# -- config ----------------------------------------------------------------------
@attrs.define(kw_only=True)
class StoreTrustOptions:
    """Options every store shares: the signing key and the explicit pickle opt-in."""

    #: Key for the HMAC of pickle-format objects, e.g. ``"${env:FLOWYML_SIGNING_KEY}"``.
    #: Unset: a per-user key at ``$XDG_CONFIG_HOME/flowyml/signing.key``, created on first use.
    signing_key: str | None = secret_field()
    #: Load pickles that carry no valid signature. Only for stores whose every writer you trust.
    allow_unsigned_pickle: bool = False


def _segment(value: str, what: str) -> str:
    """One path segment from a run id, step or asset name: no separators, no dot-dirs."""
    text = str(value)
    if text in ("", ".", "..") or "\0" in text:
        raise ValueError(f"{what} {value!r} cannot be used in a store path")
    return text.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")


def _type_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


# -- shared store logic ------------------------------------------------------------
class _FsStoreMixin:
    """Backend, materializers and trust, built lazily; picklable (executors send stores to workers)."""

    config: Any

    def _init_store(self, backend: StoreBackend | None, materializers: MaterializerSet | None) -> None:
        self._backend = backend
        self._materializers = materializers
        self._signer = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_signer"] = None
        if self._materializers is not None and self._materializers is _shared_default():
            state["_materializers"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # subclasses build their backend from their config
    def _make_backend(self) -> StoreBackend:
        raise NotImplementedError

    @property
    def backend(self) -> StoreBackend:
        backend = self._backend
        if backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = self._make_backend()
                backend = self._backend
        return backend

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (None for the local fast path)."""
        return self.backend.fs

    @property
    def root(self) -> str:
        """The root as a URI (a local absolute path for local stores)."""
        backend = self.backend
        return backend.to_uri(backend.root)

    @property
    def materializers(self) -> MaterializerSet:
        if self._materializers is None:
            self._materializers = default_materializers()
        return self._materializers

    @property
    def allow_unsigned_pickle(self) -> bool:
        return bool(getattr(self.config, "allow_unsigned_pickle", False))

    def _get_signer(self) -> Any:
        signer = self._signer
        if signer is None:
            from flowyml_local.signing import resolve_signer

            signer = self._signer = resolve_signer(getattr(self.config, "signing_key", None))
        return signer

    def _encode(self, obj: Any, materializer: str | None) -> tuple[Materializer, Sequence[Any], dict[str, Any] | None]:
        """Pick a materializer (or use the named one) and turn ``obj`` into buffers."""
        if materializer is not None:
            chosen = self.materializers.by_name(materializer)
            if not chosen.can_save(obj):
                raise FlowymlError(f"materializer {chosen.name!r} cannot store a {_type_name(obj)}")
            return chosen, chosen.save(obj), chosen.info(obj)
        problems = []
        for candidate in self.materializers.choose(obj):
            try:
                return candidate, candidate.save(obj), candidate.info(obj)
            except (TypeError, ValueError, OverflowError, NotImplementedError, AttributeError) as exc:
                logger.debug("materializer %s declined a %s: %r", candidate.name, _type_name(obj), exc)
                problems.append(f"{candidate.name}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # e.g. pickle.PicklingError: report all the tries together
                problems.append(f"{candidate.name}: {type(exc).__name__}: {exc}")
        raise FlowymlError(
            f"cannot store a {_type_name(obj)}: "
            + ("; ".join(problems) if problems else "no materializer accepts this type")
        )

    def _signature_for(self, m: Materializer, digest: str, size: int, context: str = "") -> str | None:
        if not m.unsafe:
            return None
        return self._get_signer().sign(m.name, digest, size, context)

    def _check_trust(self, m: Materializer, meta: Mapping[str, Any], where: str, kind: str, context: str = "") -> None:
        """Refuse unsafe formats without a valid signature, unless the store opted in."""
        if not m.unsafe or self.allow_unsigned_pickle:
            return
        signer = self._get_signer()
        if signer.verify(meta.get("signature"), m.name, meta["digest"], meta["size"], context):
            return
        why = "carries no signature" if not meta.get("signature") else "carries a signature that does not match"
        raise UntrustedPickleError(
            f"refusing to load {where}: it is in {m.name} format, which runs code when loaded, and {why} "
            f"from this store's signing key ({signer.source}) — it may have been planted, or written with another key. "
            f"If you trust every writer of this store, set allow_unsigned_pickle = true on its {kind} in stacks.toml; "
            f"if it was written with another key, set signing_key (e.g. \"${{env:FLOWYML_SIGNING_KEY}}\") to that key"
        )


def _shared_default() -> MaterializerSet | None:
    from flowyml_local import materializers as module

    return module._default[1] if module._default is not None else None


# -- artifact store ----------------------------------------------------------------
class FsArtifactStore(_FsStoreMixin, ArtifactStore):
    """Artifact store on a :class:`StoreBackend`; see the module docstring for the layout."""

    #: Name of the component kind in messages.
    kind = "artifact_store"

    def __init__(self, config: Any = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config)
        self._init_store(backend, materializers)

    # -- paths -----------------------------------------------------------------
    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        b = self.backend
        return b.to_uri(b.join(b.root, _segment(project_name, "project name"), _segment(run_id, "run id"),
                               _segment(step_name, "step name"), _segment(name, "artifact name")))

    def _resolve(self, path_or_uri: str) -> str:
        """A backend path from a URI, or from a path relative to the root."""
        b = self.backend
        if "://" in path_or_uri or os.path.isabs(path_or_uri) or (
                b.fs is not None and path_or_uri.startswith(b.root + "/")):
            return b.from_uri(path_or_uri)
        parts = [p for p in path_or_uri.replace("\\", "/").split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"artifact path {path_or_uri!r} must be relative to the store root, without '.' or '..'")
        return b.join(b.root, *parts)

    # -- writing ---------------------------------------------------------------
    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default",
                    *, materializer: str | None = None) -> str:
        """Write ``obj`` at ``uri_for(run_id, step_name, name, project_name)`` and return that URI.

        ``materializer`` forces a format by name (``"json"``, ``"bytes"``,
        ``"npy"`` — alias ``"numpy"`` —, ``"parquet"``, ``"pickle"`` or one a
        plugin registered) instead of choosing by type; a format that cannot
        hold ``obj`` is an error. The write is atomic and carries a sidecar
        with the payload's digest (and a signature for pickle).
        """
        uri = self.uri_for(run_id, step_name, name, project_name)
        return self._write(obj, self.backend.from_uri(uri), materializer)

    def materialize_at(self, obj: Any, path: str, *, materializer: str | None = None) -> str:
        """Write ``obj`` at ``path`` (relative to the store root, or a URI inside it) and return its URI.

        For routers and path templates; same format choice, atomicity and
        sidecar as :meth:`materialize`.
        """
        return self._write(obj, self._resolve(path), materializer)

    def _write(self, obj: Any, directory: str, materializer: str | None) -> str:
        b = self.backend
        m, buffers, info = self._encode(obj, materializer)
        sidecar = b.join(directory, SIDECAR)
        data_name = f"data-{secrets.token_hex(8)}{m.extension}"
        b.mkdirs(directory)
        size, digest = b.put_new(b.join(directory, data_name), buffers, digests.algorithm_for(m.unsafe))
        meta: dict[str, Any] = {
            "format": ARTIFACT_FORMAT,
            "path": self._relative(directory),
            "type": _type_name(obj),
            "materializer": m.name,
            "data": data_name,
            "size": size,
            "digest": digest,
            "created": time.time(),
        }
        if info:
            meta["info"] = info
        signature = self._signature_for(m, digest, size)
        if signature:
            meta["signature"] = signature
        # The data this write supersedes, read just before publishing. Writers
        # racing on one artifact may each leave an unreferenced data file
        # (never read: only the sidecar's file is); deleting files we did not
        # see referenced could delete a racing writer's data before it publishes.
        previous = self._read_sidecar(sidecar, quiet=True)
        b.put_atomic(sidecar, [json.dumps(meta).encode()])
        old = previous.get("data") if previous else None
        if isinstance(old, str) and old != data_name and _plain_name(old):
            b.delete(b.join(directory, old))
        return b.to_uri(directory)

    def _relative(self, directory: str) -> str | None:
        """``directory`` relative to the root, with "/" separators; None when it lies outside."""
        root = self.backend.root
        sep = "/" if self.backend.fs is not None else os.sep
        if not directory.startswith(root + sep):
            return None
        return directory[len(root) + 1:].replace(os.sep, "/")

    # -- reading ---------------------------------------------------------------
    def _read_sidecar(self, sidecar: str, quiet: bool = False) -> dict[str, Any] | None:
        try:
            raw = self.backend.read_bytes(sidecar)
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if quiet:
                return None
            raise IntegrityError(f"{self.backend.to_uri(sidecar)}: unreadable sidecar ({exc})") from None
        return meta

    def metadata(self, uri: str) -> dict[str, Any]:
        """The sidecar of the artifact at ``uri`` (type, materializer, size, digest, created…)."""
        directory = self._resolve(uri)
        meta = self._read_sidecar(self.backend.join(directory, SIDECAR))
        if meta is None:
            raise ArtifactNotFoundError(f"no artifact at {uri}")
        return meta

    def exists(self, uri: str) -> bool:
        b = self.backend
        return b.exists(b.join(self._resolve(uri), SIDECAR))

    def load(self, uri: str) -> Any:
        """Read back what ``materialize`` wrote at ``uri``.

        Raises ArtifactNotFoundError (a FileNotFoundError) when nothing
        complete is there, IntegrityError when the bytes do not match the
        sidecar, UntrustedPickleError for a pickle without a valid signature.
        """
        b = self.backend
        directory = self._resolve(uri)
        sidecar = b.join(directory, SIDECAR)
        last_meta = None
        for _ in range(5):
            meta = self._read_sidecar(sidecar)
            if meta is None:
                raise ArtifactNotFoundError(f"no artifact at {uri} (nothing written there, or the write did not complete)")
            try:
                return self._load_from(meta, directory, uri)
            except FileNotFoundError:
                # A writer replaced this artifact between our two reads: the new sidecar names the new data.
                if meta == last_meta:
                    break
                last_meta = meta
        raise IntegrityError(f"{uri}: the sidecar names data file {meta.get('data')!r}, which is missing")

    def _load_from(self, meta: Mapping[str, Any], directory: str, uri: str) -> Any:
        try:
            m_name, data_name, size, digest = meta["materializer"], meta["data"], meta["size"], meta["digest"]
        except KeyError as exc:
            raise IntegrityError(f"{uri}: the sidecar lacks {exc.args[0]!r}; it was not written by this flowyml") from None
        if meta.get("format") != ARTIFACT_FORMAT:
            raise IntegrityError(
                f"{uri}: its sidecar is in format {meta.get('format')!r}, this flowyml reads {ARTIFACT_FORMAT!r} "
                "(written by another version?); write the artifact again"
            )
        if not isinstance(data_name, str) or not _plain_name(data_name) or not isinstance(size, int):
            raise IntegrityError(f"{uri}: the sidecar is malformed")
        m = self.materializers.by_name(m_name)
        try:
            digests.parse(digest, unsafe=m.unsafe)
        except IntegrityError as exc:
            raise IntegrityError(f"{uri}: the sidecar {exc}") from None
        self._check_trust(m, meta, uri, self.kind)
        b = self.backend
        try:
            data = b.read_verified(b.join(directory, data_name), size, digest, m.allocate, exact=m.unsafe)
        except IntegrityError as exc:
            raise IntegrityError(f"artifact {uri} failed its integrity check: {exc}") from None
        here, written_for = self._relative(directory), meta.get("path")
        if here is not None and written_for is not None and written_for != here:
            raise IntegrityError(
                f"{uri}: its sidecar was written for {written_for!r}, not for this location "
                "(an artifact copied or moved over another one?); write it again"
            )
        try:
            return m.load(data, meta.get("info"))
        except IntegrityError as exc:
            raise IntegrityError(f"artifact {uri}: {exc}") from None
        except Exception as exc:
            if m.unsafe:  # a trusted pickle that cannot load (a class that moved…) keeps its own error
                raise
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise IntegrityError(
                f"artifact {uri}: its {m.name} payload cannot be decoded ({type(exc).__name__}: {text}); "
                "it was not written by that materializer, or it is damaged"
            ) from exc

    # -- listing & housekeeping ----------------------------------------------------
    def list_artifacts(self, run_id: str | None = None, step_name: str | None = None,
                       project_name: str | None = None) -> list[str]:
        """URIs of the complete artifacts under the root, optionally of one project/run/step."""
        b = self.backend
        base = b.root
        for value, what in ((project_name, "project name"), (run_id, "run id"), (step_name, "step name")):
            if value is None:
                break
            base = b.join(base, _segment(value, what))
        found = []
        for path, _ in b.walk(base):
            head, _, tail = path.rpartition("/" if b.fs is not None else os.sep)
            if tail != SIDECAR:
                continue
            rel = head[len(b.root):].strip("/" + os.sep).replace(os.sep, "/").split("/")
            if len(rel) != 4:
                continue
            if (project_name is None or rel[0] == _segment(project_name, "")) and \
                    (run_id is None or rel[1] == _segment(run_id, "")) and \
                    (step_name is None or rel[2] == _segment(step_name, "")):
                found.append(b.to_uri(head))
        return sorted(found)

    def prune(self, older_than: float = 3600.0) -> int:
        """Delete data files no sidecar references (killed or racing writers), older than ``older_than`` s.

        The age guard keeps the data of a write still in progress: it is not
        referenced until its sidecar is published. Returns how many were deleted.
        """
        b = self.backend
        sep = "/" if b.fs is not None else os.sep
        by_dir: dict[str, list[tuple[str, float | None]]] = {}
        for path, age in b.walk_ages(b.root):
            directory, _, name = path.rpartition(sep)
            if name.startswith("data-") or name == SIDECAR or (name.startswith(SIDECAR + ".") and name.endswith(".tmp")):
                by_dir.setdefault(directory, []).append((name, age))
        deleted = 0
        for directory, files in by_dir.items():
            meta = self._read_sidecar(b.join(directory, SIDECAR), quiet=True)
            keep = meta.get("data") if meta else None
            for name, age in files:
                if name in (SIDECAR, keep) or age is None or age < older_than:
                    continue
                if b.delete(b.join(directory, name)):
                    deleted += 1
        return deleted

    def delete(self, uri: str) -> bool:
        """Remove an artifact (sidecar first, so it stops reading as valid at once)."""
        b = self.backend
        directory = self._resolve(uri)
        existed = b.delete(b.join(directory, SIDECAR))
        b.delete_tree(directory)
        return existed

    def validate(self) -> None:
        """Check that the root can be written and read back."""
        probe = f".flowyml-validate-{secrets.token_hex(4)}"
        b = self.backend
        path = b.join(b.root, probe)
        try:
            b.put_atomic(path, [b"ok"])
            if b.read_bytes(path) != b"ok":
                raise FlowymlError(f"artifact store {self.root}: a test file did not read back as written")
        except OSError as exc:
            raise FlowymlError(f"artifact store {self.root} is not usable: {exc}") from None
        finally:
            try:
                b.delete(path)
            except OSError:
                pass


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name


# -- cache store -----------------------------------------------------------------
def _safe_key(key: str) -> str:
    if 8 <= len(key) <= 128 and key.isascii() and key.replace("-", "").replace("_", "").isalnum():
        return key
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class FsCacheStore(_FsStoreMixin, CacheStore):
    """Cache store on a :class:`StoreBackend`: one atomic file per key (see the module docstring)."""

    kind = "cache_store"

    def __init__(self, config: Any = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config)
        self._init_store(backend, materializers)
        self._hits = 0
        self._misses = 0
        self._corrupt = 0

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_hits"] = state["_misses"] = state["_corrupt"] = 0
        return state

    def _entry_path(self, key: str) -> str:
        safe = _safe_key(key)
        b = self.backend
        return b.join(b.root, safe)

    # -- writing ---------------------------------------------------------------
    def set_value(self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None) -> None:
        m, buffers, info = self._encode(value, None)
        total = sum(nbytes(x) for x in buffers)
        digest = digests.of(digests.algorithm_for(m.unsafe), *buffers)
        safe = _safe_key(key)
        header: dict[str, Any] = {
            "key": safe,
            "materializer": m.name,
            "type": _type_name(value),
            "size": total,
            "digest": digest,
            "step_name": step_name,
            "code_hash": code_hash,
            "fingerprint": fingerprint,
            "created": time.time(),
        }
        if info:
            header["info"] = info
        signature = self._signature_for(m, digest, total, context=safe)
        if signature:
            header["signature"] = signature
        head = CACHE_MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n"
        b = self.backend
        b.put_atomic(b.join(b.root, safe), [head, *buffers])

    # -- reading ---------------------------------------------------------------
    def get(self, key: str) -> CacheEntry | None:
        safe = _safe_key(key)
        b = self.backend
        path = b.join(b.root, safe)
        try:
            raw = self.backend.read_bytes(path)
        except FileNotFoundError:
            self._misses += 1
            return None
        except OSError as exc:
            self._miss_with_warning(path, f"cannot be read ({exc})")
            return None
        if raw.startswith(_CACHE_MAGIC_FAMILY) and not raw.startswith(CACHE_MAGIC):
            logger.info("cache entry %s was written by another flowyml version; it will be recomputed",
                        self.backend.to_uri(path))
            self._misses += 1
            return None
        try:
            return self._decode(raw, path, safe)
        except UntrustedPickleError as exc:
            self._miss_with_warning(path, str(exc), corrupt=False)
        except Exception as exc:  # any damage to an entry is a miss, never a crash
            self._miss_with_warning(path, f"is corrupt ({type(exc).__name__}: {exc}); it will be recomputed")
        return None

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
            header = self._read_header(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, IntegrityError) as exc:
            logger.info("cache entry %s: unreadable header (%s); treated as a miss", self.backend.to_uri(path), exc)
            return None
        if header.get("key") != safe:
            return None
        return CacheEntry(value=None, step_name=header.get("step_name", ""), code_hash=header.get("code_hash", ""),
                          fingerprint=header.get("fingerprint"), created=float(header.get("created", 0.0)))

    def _miss_with_warning(self, path: str, message: str, corrupt: bool = True) -> None:
        self._misses += 1
        if corrupt:
            self._corrupt += 1
        logger.warning("cache entry %s %s", self.backend.to_uri(path), message)

    def _read_header(self, path: str) -> dict[str, Any]:
        """An entry's header without reading its whole payload."""
        b = self.backend
        raw = b.read_head(path, 65536)
        if raw.find(b"\n", len(CACHE_MAGIC)) < 0 and len(raw) == 65536:
            raw = b.read_bytes(path)
        return self._split(raw, path)[0]

    @staticmethod
    def _split(raw: bytes, path: str) -> tuple[dict[str, Any], memoryview]:
        if not raw.startswith(CACHE_MAGIC):
            raise IntegrityError("not a flowyml cache entry (bad magic)")
        end = raw.find(b"\n", len(CACHE_MAGIC))
        if end < 0:
            raise IntegrityError("truncated header")
        header = json.loads(raw[len(CACHE_MAGIC):end])
        if not isinstance(header, dict):
            raise IntegrityError("header is not a JSON object")
        return header, memoryview(raw)[end + 1:]

    def _decode(self, raw: bytes, path: str, key: str) -> CacheEntry:
        header, payload = self._split(raw, path)
        if header.get("key") != key:
            raise IntegrityError(f"the entry was written for key {header.get('key')!r} (moved or copied here?)")
        size, digest = header["size"], header["digest"]
        if len(payload) != size:
            raise IntegrityError(f"payload is {len(payload)} bytes, the header says {size}")
        m = self.materializers.by_name(header["materializer"])
        algorithm = digests.parse(digest, unsafe=m.unsafe)
        self._check_trust(m, header, f"cache entry {self.backend.to_uri(path)}", self.kind, context=key)
        if digests.of(algorithm, payload) != digest:
            raise IntegrityError("payload does not match its recorded digest")
        buf = m.allocate(size) if size >= 65536 else None
        if buf is not None:
            byte_view(buf)[:] = payload
            data: Any = buf
        else:
            data = payload.tobytes()
        value = m.load(data, header.get("info"))
        self._hits += 1
        return CacheEntry(
            value=value,
            step_name=header.get("step_name", ""),
            code_hash=header.get("code_hash", ""),
            fingerprint=header.get("fingerprint"),
            created=float(header.get("created", 0.0)),
        )

    def _headers(self) -> Iterator[tuple[str, int, dict[str, Any] | None]]:
        b = self.backend
        for path, size in b.walk(b.root):
            name = path.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
            if name.endswith(".tmp") or name.startswith("."):
                continue
            try:
                header = self._read_header(path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, IntegrityError):
                header = None
            yield path, size, header

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
                    header = self._read_header(path)
                except FileNotFoundError:
                    return 0
                except (ValueError, IntegrityError):
                    header = None
                if header is not None and header.get("step_name") != step_name:
                    return 0
            return 1 if b.delete(path) else 0
        dropped = 0
        for path, _, header in self._headers():
            if header is not None and header.get("step_name") == step_name and b.delete(path):
                dropped += 1
        return dropped

    def clear(self) -> None:
        b = self.backend
        for path, _ in list(b.walk(b.root)):
            b.delete(path)

    def stats(self) -> dict[str, Any]:
        """``entries``, ``bytes`` on storage; ``hits``/``misses``/``corrupt`` of this instance."""
        b = self.backend
        entries = total = 0
        for path, size in b.walk(b.root):
            name = path.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
            if name.endswith(".tmp") or name.startswith("."):
                continue
            entries += 1
            total += size
        return {"entries": entries, "bytes": total, "hits": self._hits, "misses": self._misses,
                "corrupt": self._corrupt, "root": self.root}

    def validate(self) -> None:
        b = self.backend
        path = b.join(b.root, f".flowyml-validate-{secrets.token_hex(4)}")
        try:
            b.put_atomic(path, [b"ok"])
            b.read_bytes(path)
        except OSError as exc:
            raise FlowymlError(f"cache store {self.root} is not usable: {exc}") from None
        finally:
            try:
                b.delete(path)
            except OSError:
                pass
