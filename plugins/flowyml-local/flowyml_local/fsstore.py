"""What the artifact store and the cache store share, on every filesystem.

The stores themselves are :class:`flowyml_local.fs_artifacts.FsArtifactStore`
and :class:`flowyml_local.fs_cache.FsCacheStore`; the local stores and the GCS
stores (``flowyml-gcs``) are those classes with a different
:class:`~flowyml_local.backends.StoreBackend`. Their layout on storage is
described in ``docs/reference/stores.md`` and :mod:`flowyml_local.entries`.

Shared here: the backend and materializers (built lazily, so stores pickle to
workers cheaply), the choice of a format for a value, and trust: formats whose
loading runs code (pickle) are loaded only with a valid HMAC-SHA256 from the
store's signing key, or when the store's config says
``allow_unsigned_pickle = true`` (see :mod:`flowyml_local.signing`).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import attrs

from flowyml_core.config import secret_field
from flowyml_core.errors import FlowymlError, IntegrityError

from flowyml_local.backends import StoreBackend, is_temp_name
from flowyml_local.digests import FAST
from flowyml_local.materializers import Materializer, MaterializerSet, default_materializers

logger = logging.getLogger("flowyml.stores")

#: Temp files younger than this may belong to a write in progress: prune() leaves them.
TEMP_SAFE_AGE = 3600.0


class ArtifactNotFoundError(FlowymlError, FileNotFoundError):
    """No artifact at that URI (never written, or its write never completed)."""


class UntrustedPickleError(IntegrityError):
    """A pickle-format object without a valid signature from this store's key.

    ``signed``: it carries a signature, made with another key (a store shared
    with other machines, or a signing key that changed); otherwise it carries
    none (written by something other than flowyml, or planted).
    """

    def __init__(self, message: str, *, signed: bool = False, key_source: str = "") -> None:
        super().__init__(message)
        self.signed = signed
        self.key_source = key_source


# -- config ----------------------------------------------------------------------
@attrs.define(kw_only=True)
class StoreTrustOptions:
    """Options every store shares: the signing key and the explicit pickle opt-in."""

    #: Key for the HMAC of pickle-format objects, e.g. ``"${env:FLOWYML_SIGNING_KEY}"``.
    #: Unset: a per-user key at ``$XDG_CONFIG_HOME/flowyml/signing.key``, created on first use.
    signing_key: str | None = secret_field()
    #: Load pickles that carry no valid signature. Only for stores whose every writer you trust.
    allow_unsigned_pickle: bool = False


def segment(value: str, what: str, escape_dots: bool = False) -> str:
    """One path segment from a run id, step or asset name: no separators, no dot-dirs.

    ``escape_dots``: also escape ``.``, for the part of a file name before the
    first dot (the step of ``<step>.<name>``), so that the split is unambiguous.
    """
    text = str(value)
    if text in ("", ".", "..") or "\0" in text:
        raise ValueError(f"{what} {value!r} cannot be used in a store path")
    text = text.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    return text.replace(".", "%2E") if escape_dots else text


def type_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]


# -- shared store logic ------------------------------------------------------------
class FsStore:
    """Backend, materializers and trust, built lazily; picklable (executors send stores to workers)."""

    config: Any
    #: Name of the component kind in messages.
    kind = "store"

    def __init__(self, config: Any = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config)  # the component contract's (ArtifactStore, CacheStore)
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
                raise FlowymlError(f"materializer {chosen.name!r} cannot store a {type_name(obj)}")
            return chosen, chosen.save(obj), chosen.info(obj)
        problems = []
        for candidate in self.materializers.choose(obj):
            try:
                return candidate, candidate.save(obj), candidate.info(obj)
            except (TypeError, ValueError, OverflowError, NotImplementedError, AttributeError) as exc:
                logger.debug("materializer %s declined a %s: %r", candidate.name, type_name(obj), exc)
                problems.append(f"{candidate.name}: {type(exc).__name__}: {exc}")
            except Exception as exc:  # e.g. pickle.PicklingError: report all the tries together
                problems.append(f"{candidate.name}: {type(exc).__name__}: {exc}")
        raise FlowymlError(
            f"cannot store a {type_name(obj)}: "
            + ("; ".join(problems) if problems else "no materializer accepts this type")
        )

    def _signer_for(self, m: Materializer, size: int, context: str = "") -> Any:
        """``sign(digest)`` for an entry's header when the format runs code when loaded, else None."""
        if not m.unsafe:
            return None
        signer = self._get_signer()
        return lambda digest: signer.sign(m.name, digest, size, context)

    def _check_trust(self, m: Materializer, meta: Mapping[str, Any], where: str, context: str = "") -> None:
        """Refuse unsafe formats without a valid signature, unless the store opted in."""
        if not m.unsafe or self.allow_unsigned_pickle:
            return
        signer = self._get_signer()
        if signer.verify(meta.get("signature"), m.name, meta["digest"], meta["size"], context):
            return
        signed = bool(meta.get("signature"))
        why = ("carries a signature made with another key than this store's signing key" if signed
               else "carries no signature from this store's signing key")
        raise UntrustedPickleError(
            f"refusing to load {where}: it is in {m.name} format, which runs code when loaded, and {why} "
            f"({signer.source}); it may have been planted, or written with another key. "
            f"If it was written with another key, set signing_key (e.g. \"${{env:FLOWYML_SIGNING_KEY}}\") "
            f"on the {self.kind} in stacks.toml to that key; if you trust every writer of this store, "
            f"set allow_unsigned_pickle = true there",
            signed=signed, key_source=signer.source,
        )

    def validate(self) -> None:
        """Check that the root can be written and read back."""
        b = self.backend
        path = b.join(b.root, f".flowyml-validate-{secrets.token_hex(4)}")
        try:
            b.publish(path, lambda _: b"", [b"ok"], FAST)
            if b.read_bytes(path) != b"ok":
                raise FlowymlError(f"{self.kind.replace('_', ' ')} {self.root}: a test file did not read back as written")
        except OSError as exc:
            raise FlowymlError(f"{self.kind.replace('_', ' ')} {self.root} is not usable: {exc}") from None
        finally:
            try:
                b.delete(path)
            except OSError:
                pass

    def _temp_leftovers(self, older_than: float) -> list[tuple[str, int]]:
        """Temp files of interrupted writes older than ``older_than`` seconds: (path, size)."""
        found = []
        for path, size, age in self.backend.walk(self.backend.root):
            if is_temp_name(file_name(path)) and age is not None and age >= older_than:
                found.append((path, size))
        return found


def _shared_default() -> MaterializerSet | None:
    from flowyml_local import materializers as module

    return module._default[1] if module._default is not None else None


# -- large payloads written by an artifact store, for cache entries that refer to them ------------
#: (materializer, size) -> {digest: path} of the last large artifacts written in this process.
_recent_large: OrderedDict[tuple[str, int], dict[str, str]] = OrderedDict()
_recent_lock = threading.Lock()
_RECENT_MAX = 32
#: Payloads at least this large are referred to by the cache instead of written twice.
REFERENCE_MIN = 1024 * 1024


def remember_large(materializer: str, size: int, digest: str, path: str) -> None:
    """An artifact store published ``path`` (a local entry) with that payload."""
    with _recent_lock:
        same_size = _recent_large.setdefault((materializer, size), {})
        same_size.pop(digest, None)
        same_size[digest] = path
        while len(same_size) > _RECENT_MAX:  # many outputs of one size (a loop of steps): keep the last ones
            del same_size[next(iter(same_size))]
        _recent_large.move_to_end((materializer, size))
        while len(_recent_large) > _RECENT_MAX:
            _recent_large.popitem(last=False)


def recent_large(materializer: str, size: int) -> dict[str, str]:
    """Digest -> path of recent local artifacts with a payload of that format and size."""
    with _recent_lock:
        return dict(_recent_large.get((materializer, size), {}))


# -- cache entries refused for their signature: one line per run ------------------------------------
_untrusted: dict[tuple[str, bool], int] = {}
_untrusted_lock = threading.Lock()
_atexit_registered = False


def note_untrusted(exc: UntrustedPickleError) -> None:
    """Count a cache entry refused for its signature; :func:`report_untrusted` says it once."""
    global _atexit_registered
    with _untrusted_lock:
        key = (exc.key_source, exc.signed)
        _untrusted[key] = _untrusted.get(key, 0) + 1
        if not _atexit_registered:  # processes that never see a run end (step runners) report at exit
            atexit.register(report_untrusted)
            _atexit_registered = True


def report_untrusted() -> str | None:
    """Log (once) how many cache entries were recomputed because of their signature, and reset the count.

    Called at the end of each run (the local plugin's ``on_run_end`` hook).
    After a signing key changes (``XDG_CONFIG_HOME`` moved, another machine),
    every earlier pickled entry is refused: one line with the count says what
    happened and what to do, instead of one warning per entry.
    """
    with _untrusted_lock:
        counts = dict(_untrusted)
        _untrusted.clear()
    if not counts:
        return None
    other = sum(n for (_, signed), n in counts.items() if signed)
    unsigned = sum(n for (_, signed), n in counts.items() if not signed)
    sources = sorted({source for source, _ in counts})
    parts = []
    if other:
        parts.append(f"{other} signed with another key")
    if unsigned:
        parts.append(f"{unsigned} unsigned")
    line = (f"recomputed {other + unsigned} pickled cache entr{'y' if other + unsigned == 1 else 'ies'} whose "
            f"signature does not match this store's signing key ({'; '.join(sources)}): {', '.join(parts)}. "
            "If they were written with another key, set signing_key on the cache_store in stacks.toml to that key"
            + ("; if you trust every writer of this cache, set allow_unsigned_pickle = true there" if unsigned else ""))
    logger.warning("%s", line)
    return line
