"""One implementation of the artifact and cache stores for every filesystem.

The local stores and the GCS stores (``flowyml-gcs``) are the classes here,
configured with a different :class:`StoreBackend`:

- :class:`LocalBackend` talks to the OS directly (``open``/``os.replace``): no
  fsspec import and no per-call objects, because a cached 1000-step pipeline
  does 1000 cache reads and must finish in a tenth of a second.
- :class:`FsspecBackend` serves any fsspec URL (``memory://``, ``gs://``,
  ``s3://``…), with bounded retries around each operation for object stores.

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

import errno
import hashlib
import itertools
import json
import logging
import os
import queue
import random
import secrets
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import attrs

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore
from flowyml_core.config import secret_field
from flowyml_core.errors import FlowymlError, IntegrityError

from flowyml_local import digests
from flowyml_local.materializers import Materializer, MaterializerSet, default_materializers

logger = logging.getLogger("flowyml.stores")

T = TypeVar("T")

#: Payloads at least this large are hashed in a helper thread while the I/O runs.
PARALLEL_HASH_MIN = 4 * 1024 * 1024
_IO_CHUNK = 1 << 30  # os.write/os.read move at most ~2 GiB per call on Linux
_HASH_CHUNK = 1 << 20
SIDECAR = "meta.json"
ARTIFACT_FORMAT = "flowyml-artifact/2"  # /2: "digest" (xxh3-128 or blake3) instead of "sha256"
CACHE_MAGIC = b"FLOWYML-CACHE/2\n"
_CACHE_MAGIC_FAMILY = b"FLOWYML-CACHE/"
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


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


# -- retries ---------------------------------------------------------------------
_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT, errno.EAGAIN}
_TRANSIENT_CODES = {408, 429, 500, 502, 503, 504}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request may succeed (timeouts, drops, 5xx, 429)."""
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                        NotADirectoryError, IntegrityError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    try:
        if code is not None and int(code) in _TRANSIENT_CODES:
            return True
        if code is not None and int(code) == 401 and "Invalid Credentials" in str(exc):
            return True  # an access token that expired in flight: the next attempt refreshes it
    except (TypeError, ValueError):
        pass
    module = type(exc).__module__ or ""
    if module.startswith(("aiohttp", "requests", "urllib3")):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return False


class StoreUnavailableError(FlowymlError, OSError):
    """A store kept failing transiently (drops, timeouts, 5xx) until its retry budget was spent.

    An ``OSError`` as well, so that code which treats an unreadable store as
    I/O trouble (a cache read becomes a miss with a warning) keeps doing so.
    The last transient error is its ``__cause__``.
    """


@attrs.define(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter, around each request to a store.

    Two bounds, whichever is reached first: ``attempts`` tries in all (None: no
    count limit) and ``deadline`` seconds for the whole call, attempts and waits
    included (None: no time limit). A deadline is what makes an outage fail in
    a known time: no new attempt starts when its backoff would end past the
    deadline, and a backend that can (fsspec's async filesystems, see
    :meth:`FsspecBackend._call`) abandons the attempt in flight when the time is
    spent. Non-transient errors (missing objects, no access) are raised at once.
    """

    attempts: int | None = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline: float | None = None
    #: Whose options set these bounds, for the final error, e.g. "the gcs artifact store";
    #: empty when the bounds are not configurable (the message then names none).
    owner: str = ""

    def __attrs_post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("RetryPolicy needs attempts or a deadline: without either it would retry forever")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"RetryPolicy attempts must be >= 1, not {self.attempts!r}")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"RetryPolicy deadline must be > 0 seconds, not {self.deadline!r}")

    def run(self, what: str, attempt: Callable[[float | None], T], where: str = "") -> T:
        """``attempt(remaining)`` until it succeeds, fails for good, or the budget is spent.

        ``remaining`` is the time left before the deadline (None without one);
        the attempt should not wait longer than that. ``what`` names the
        operation ("write") and ``where`` its target (a URI) in the messages.
        Out of budget, raises :class:`StoreUnavailableError` (the last error
        as its cause): one line with the target, the time, the attempts, the
        last error and the option to change.
        """
        started = time.monotonic()
        label = f"{what} {where}".strip()
        tries = 0
        while True:
            tries += 1
            remaining = None if self.deadline is None else max(self.deadline - (time.monotonic() - started), 1e-3)
            try:
                return attempt(remaining)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                elapsed = time.monotonic() - started
                delay = min(self.max_delay, self.base_delay * (2 ** (tries - 1))) * (0.5 + random.random() / 2)
                out_of_tries = self.attempts is not None and tries >= self.attempts
                out_of_time = self.deadline is not None and elapsed + delay >= self.deadline
                if out_of_tries or out_of_time:
                    raise StoreUnavailableError(self._gave_up(what, where, exc, tries, elapsed, out_of_time)) from exc
                # Blips are routine on object stores: one warning per request, once it persists
                # (an outage would otherwise print a line per attempt); each retry at INFO.
                logger.log(logging.WARNING if tries == 3 else logging.INFO,
                           "%s failed (%s); retry %d in %.2fs%s", label, _last_error(exc), tries, delay,
                           "" if self.deadline is None else f" ({self.deadline - elapsed:.1f}s of {self.deadline:g}s left)")
                time.sleep(delay)

    def _gave_up(self, what: str, where: str, exc: BaseException, tries: int, elapsed: float,
                 out_of_time: bool) -> str:
        """The one-line message of :class:`StoreUnavailableError`."""
        target = f"the store at {where}" if where else "the store"
        attempts = f"{tries} attempt{'s' if tries != 1 else ''}"
        if out_of_time:
            head = (f"{target} did not answer a {what} within {self.deadline:g} s "
                    f"(gave up after {attempts} in {elapsed:.1f} s; last error: {_last_error(exc)})")
            fix = (f"; if it is only slow or the transfer is large, raise the deadline option of {self.owner} "
                   f"(now {self.deadline:g} s)" if self.owner else "")
        else:
            head = (f"{target} did not answer a {what} after {attempts} in {elapsed:.1f} s "
                    f"(last error: {_last_error(exc)})")
            fix = (f"; to keep trying longer, raise the retries option of {self.owner} (now {tries - 1})"
                   if self.owner else "")
        return f"{head}; check that the service is up and reachable{fix}"


def _last_error(exc: BaseException) -> str:
    """``Type: first line`` of an error, for one-line messages (a timeout of ours says what it was)."""
    text = str(exc).strip()
    if not text and isinstance(exc, TimeoutError):
        return f"{type(exc).__name__}: no answer before the deadline"
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# -- hashing ---------------------------------------------------------------------
def _nbytes(buf: Any) -> int:
    n = getattr(buf, "nbytes", None)
    return n if n is not None else len(buf)


def _byte_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _Hasher:
    """The digest of a sequence of buffers, in a helper thread when they are large."""

    def __init__(self, buffers: Sequence[Any], total: int, algorithm: str) -> None:
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if total < PARALLEL_HASH_MIN:
            self._digest = digests.of(algorithm, *buffers)
        else:
            self._thread = threading.Thread(target=self._background, args=(buffers, algorithm), daemon=True,
                                            name="flowyml-hash")
            self._thread.start()

    def _background(self, buffers: Sequence[Any], algorithm: str) -> None:
        try:
            self._digest = digests.of(algorithm, *buffers)
        except BaseException as exc:  # handed to the caller in result()
            self._error = exc

    def result(self) -> str:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest


# -- backends --------------------------------------------------------------------
class StoreBackend:
    """Byte-level access to the storage under one root. Paths are backend paths."""

    #: Protocol shown in messages ("file", "gs", "memory"...).
    protocol: str = "file"
    #: The fsspec filesystem, when there is one (the conformance kit looks for ``fs``).
    fs: Any = None

    root: str

    def join(self, *parts: str) -> str:
        raise NotImplementedError

    def to_uri(self, path: str) -> str:
        raise NotImplementedError

    def from_uri(self, uri: str) -> str:
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def read_head(self, path: str, n: int) -> bytes:
        """The first ``n`` bytes (or fewer)."""
        raise NotImplementedError

    def put_atomic(self, path: str, buffers: Sequence[Any]) -> None:
        """Publish ``buffers`` at ``path`` all at once: readers see the old content, the new, or nothing."""
        raise NotImplementedError

    def put_new(self, path: str, buffers: Sequence[Any], algorithm: str) -> tuple[int, str]:
        """Write a new file (a unique name nobody reads yet); returns its size and digest (of ``algorithm``)."""
        raise NotImplementedError

    def read_verified(self, path: str, size: int, expected: str, allocate: Callable[[int], Any] | None,
                      exact: bool) -> Any:
        """The payload, after checking its size and digest (IntegrityError if they differ).

        ``expected`` is a recorded digest that :func:`digests.parse` accepted.

        ``exact``: hash the very bytes returned (for formats that execute code);
        otherwise the local backend may hash the file while reading it.
        """
        raise NotImplementedError

    def delete(self, path: str) -> bool:
        raise NotImplementedError

    def delete_tree(self, path: str) -> bool:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def walk(self, path: str) -> Iterator[tuple[str, int]]:
        """Every file under ``path``, recursively, with its size."""
        raise NotImplementedError

    def mkdirs(self, path: str) -> None:
        """Make a directory (a no-op on object stores)."""

    def walk_ages(self, path: str) -> Iterator[tuple[str, float | None]]:
        """Every file under ``path`` with its age in seconds (None when unknown)."""
        raise NotImplementedError


def _write_all(fd: int, buf: Any) -> None:
    view = _byte_view(buf)
    total = len(view)
    done = 0
    while done < total:
        done += os.write(fd, view[done:done + _IO_CHUNK])


_tmp_counter = itertools.count()


def _tmp_name(path: str) -> str:
    return f"{path}.{os.getpid()}-{threading.get_ident()}-{next(_tmp_counter)}.tmp"


class LocalBackend(StoreBackend):
    """The local filesystem through ``os``: atomic renames, no fsspec on the hot path."""

    protocol = "file"

    def __init__(self, root: str) -> None:
        if root.startswith("file://"):
            root = root[len("file://"):]
        self.root = os.path.abspath(os.path.expanduser(root))

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def to_uri(self, path: str) -> str:
        return path

    def from_uri(self, uri: str) -> str:
        if uri.startswith("file://"):
            uri = uri[len("file://"):]
        return os.path.abspath(uri)

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    def read_head(self, path: str, n: int) -> bytes:
        with open(path, "rb") as fh:
            return fh.read(n)

    def _create(self, path: str) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY
        try:
            return os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return os.open(path, flags, 0o644)

    def put_atomic(self, path: str, buffers: Sequence[Any]) -> None:
        tmp = _tmp_name(path)
        fd = self._create(tmp)
        try:
            try:
                for buf in buffers:
                    _write_all(fd, buf)
            finally:
                os.close(fd)
            # No fsync: rename atomicity is what protects readers against a killed
            # writer; surviving power loss would cost milliseconds per entry.
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def put_new(self, path: str, buffers: Sequence[Any], algorithm: str) -> tuple[int, str]:
        total = sum(_nbytes(b) for b in buffers)
        fd = self._create(path)
        try:
            try:
                hasher = _Hasher(buffers, total, algorithm)
                for buf in buffers:
                    _write_all(fd, buf)
            finally:
                os.close(fd)
            return total, hasher.result()
        except BaseException:
            _unlink_quietly(path)
            raise

    def read_verified(self, path: str, size: int, expected: str, allocate: Callable[[int], Any] | None,
                      exact: bool) -> Any:
        algorithm = expected.partition(":")[0]
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC | _O_BINARY)
        try:
            before = os.fstat(fd)
            if before.st_size != size:
                raise IntegrityError(f"{path}: {before.st_size} bytes on disk, the sidecar says {size}")
            buf = allocate(size) if allocate is not None else None
            if buf is not None:
                data, got = buf, _read_into_hashing(fd, size, _byte_view(buf), algorithm)
            elif exact or size < PARALLEL_HASH_MIN:
                data = _read_fd(fd, size)
                got = digests.of(algorithm, data)
            else:
                # A bytes object cannot be filled piece by piece, so a helper
                # thread hashes the file (pread: its own offset) while this
                # thread reads it; then make sure nobody changed the file in
                # between (inode, size, mtime, ctime).
                box: dict[str, Any] = {}
                worker = threading.Thread(target=_hash_fd_into, args=(fd, size, box, algorithm), daemon=True,
                                          name="flowyml-verify")
                worker.start()
                try:
                    data = _read_fd(fd, size)
                finally:
                    worker.join()
                if "error" in box:
                    raise box["error"]
                got = box["digest"]
                after = os.fstat(fd)
                if (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
                        before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns):
                    return self.read_verified(path, size, expected, allocate, True)
        finally:
            os.close(fd)
        if got != expected:
            raise IntegrityError(f"{path}: content does not match its recorded digest (the bytes were altered or corrupted)")
        return data

    def delete(self, path: str) -> bool:
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False

    def delete_tree(self, path: str) -> bool:
        import shutil

        if not os.path.isdir(path):
            return self.delete(path)
        shutil.rmtree(path, ignore_errors=True)
        return True

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def walk(self, path: str) -> Iterator[tuple[str, int]]:
        for dirpath, _, files in os.walk(path):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    yield full, os.stat(full).st_size
                except FileNotFoundError:  # removed while listing
                    continue

    def mkdirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def walk_ages(self, path: str) -> Iterator[tuple[str, float | None]]:
        now = time.time()
        for dirpath, _, files in os.walk(path):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    yield full, now - os.stat(full).st_mtime
                except FileNotFoundError:
                    continue


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            logger.warning("could not remove temporary file %s: %s", path, exc)


def _fill(fd: int, view: memoryview, start: int, end: int) -> None:
    """Read bytes ``start:end`` of the file into ``view[start:end]``."""
    done = start
    while done < end:
        n = os.preadv(fd, [view[done:min(end, done + _IO_CHUNK)]], done)
        if n == 0:
            raise IntegrityError(f"file ended after {done} of {len(view)} bytes")
        done += n


def _read_fd(fd: int, size: int) -> bytes:
    data = os.pread(fd, size, 0) if size else b""
    if len(data) < size:
        parts = [data]
        done = len(data)
        while done < size:
            part = os.pread(fd, size - done, done)
            if not part:
                raise IntegrityError(f"file ended after {done} of {size} bytes")
            parts.append(part)
            done += len(part)
        data = b"".join(parts)
    return data


def _read_into_hashing(fd: int, size: int, view: memoryview, algorithm: str) -> str:
    """Fill ``view`` from the file and return the digest of exactly those bytes.

    Large files are read in chunks; a helper thread hashes each chunk while
    this one reads the next, so the check costs little more than the read.
    """
    if size < PARALLEL_HASH_MIN:
        _fill(fd, view, 0, size)
        return digests.of(algorithm, view)
    hasher = digests.Hasher(algorithm)
    ready: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def hash_chunks() -> None:
        try:
            while (chunk := ready.get()) is not None:
                hasher.update(chunk)
        except BaseException as exc:  # handed to the reading thread
            failure.append(exc)

    worker = threading.Thread(target=hash_chunks, daemon=True, name="flowyml-verify")
    worker.start()
    try:
        for start in range(0, size, _HASH_CHUNK):
            end = min(start + _HASH_CHUNK, size)
            _fill(fd, view, start, end)
            ready.put(view[start:end])
    finally:
        ready.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return hasher.text()


def _hash_fd_into(fd: int, size: int, box: dict[str, Any], algorithm: str) -> None:
    try:
        h = digests.Hasher(algorithm)
        buf = bytearray(_HASH_CHUNK)
        view = memoryview(buf)
        offset = 0
        while offset < size:
            n = os.preadv(fd, [view], offset)
            if n == 0:
                break
            h.update(view[:n])
            offset += n
        box["digest"] = h.text()
    except BaseException as exc:  # handed to the reading thread
        box["error"] = exc


#: Protocols whose single-object writes are atomic (a PUT replaces the whole object).
ATOMIC_OBJECT_PROTOCOLS = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "memory", "adl"})


#: Services whose last request gave up (by filesystem options: stores built with the same
#: options share the entry), with when (monotonic) and for how long to try the next
#: requests only once (see :meth:`FsspecBackend._run`).
_gave_up: dict[str, tuple[float, float]] = {}
_DOWN_WINDOW = 60.0  # seconds, for policies without a deadline


def forget_unavailable() -> None:
    """Forget which services gave up (for tests, and processes that know the service is back)."""
    _gave_up.clear()


class FsspecBackend(StoreBackend):
    """Any fsspec filesystem. Object stores publish with one PUT; others with a temp file and a move."""

    def __init__(self, fs: Any, root: str, retry: RetryPolicy | None = None, atomic_put: bool | None = None) -> None:
        self.fs = fs
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        self.protocol = protocols[0]
        self.root = fs._strip_protocol(root).rstrip("/")
        self.retry = retry or RetryPolicy()
        self.atomic_put = bool(set(protocols) & ATOMIC_OBJECT_PROTOCOLS) if atomic_put is None else atomic_put
        # fsspec's token for the filesystem's class and options (the same for two stores
        # built with the same options, even when each has its own instance).
        self._service = str(getattr(fs, "_fs_token", None) or id(fs))

    def __repr__(self) -> str:
        return f"FsspecBackend({self.to_uri(self.root)!r})"

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` (a method of ``self.fs``, the path first) under the retry policy."""
        where = self.to_uri(args[0]) if args and isinstance(args[0], str) else ""
        return self._run(what, self._bounded(func, *args, **kwargs), where)

    def _run(self, what: str, attempt: Callable[[float | None], T], where: str) -> T:
        """``attempt`` under the retry policy, or only once while the service is known to be down.

        In an outage every request would spend a whole deadline: a step that
        looks up the cache and then writes an output would wait twice, and each
        other branch of the pipeline as long again. So once a request to this
        filesystem has given up, the requests that follow within one deadline
        (from any store on it) are tried once, and fail at once if the service
        is still not answering; the first answer ends that.
        """
        since = _gave_up.get(self._service)
        if since is not None and time.monotonic() - since[0] < since[1]:
            try:
                result = attempt(self.retry.deadline)
            except Exception as exc:
                if is_transient(exc):
                    ago = time.monotonic() - since[0]
                    target = f"the store at {where}" if where else "the store"
                    budget = (f"; a request gives up after {self.retry.deadline:g} s "
                              f"(the deadline option of {self.retry.owner})"
                              if self.retry.deadline and self.retry.owner else "")
                    raise StoreUnavailableError(
                        f"{target} did not answer a {what} (tried once: another request to this service gave up "
                        f"{ago:.1f} s ago, after its whole retry budget; last error: {_last_error(exc)}); "
                        f"check that the service is up and reachable{budget}"
                    ) from exc
                _gave_up.pop(self._service, None)  # an answer, if not the one hoped for: the service is up
                raise
            _gave_up.pop(self._service, None)
            logger.info("%s answers again", self.to_uri(self.root))
            return result
        try:
            return self.retry.run(what, attempt, where=where)
        except StoreUnavailableError:
            _gave_up[self._service] = (time.monotonic(), self.retry.deadline or _DOWN_WINDOW)
            raise

    def _bounded(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> Callable[[float | None], T]:
        """One attempt of ``func`` that gives up when the policy's remaining time is spent.

        The blocking methods of fsspec's async filesystems (gcsfs, s3fs...) are
        wrappers that run a coroutine on the filesystem's event loop through
        ``fsspec.asyn.sync``, which takes a ``timeout``: the coroutine (and the
        HTTP request in it) is cancelled and ``FSTimeoutError`` (a
        ``TimeoutError``) raised. Without that, one hung request would outlast
        any deadline. Other filesystems cannot be interrupted; their attempts
        run to the end and only the retries are bounded.
        """
        import inspect

        inner = getattr(func, "__wrapped__", None)
        if getattr(self.fs, "async_impl", False) and inspect.iscoroutinefunction(inner):
            def attempt(remaining: float | None) -> T:
                return func(*args, timeout=remaining, **kwargs) if remaining is not None else func(*args, **kwargs)
        else:
            def attempt(remaining: float | None) -> T:
                return func(*args, **kwargs)
        return attempt

    def _range(self, first: Any, path: str, start: int, end: int) -> bytes:
        """One range of :meth:`_read_ranges` under the retry policy; the request already in flight is attempt 1."""
        again = self._bounded(self.fs.cat_file, path, start=start, end=end)
        box = [first]

        def attempt(remaining: float | None) -> bytes:
            if not box:
                return again(remaining)
            future = box.pop()
            try:
                return future.result(timeout=remaining)
            except TimeoutError:
                future.cancel()  # a concurrent.futures timeout: stop the request on the loop too
                raise

        return self._run("read", attempt, self.to_uri(path))

    def join(self, *parts: str) -> str:
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))

    def to_uri(self, path: str) -> str:
        return self.fs.unstrip_protocol(path)

    def from_uri(self, uri: str) -> str:
        return self.fs._strip_protocol(uri).rstrip("/")

    def read_bytes(self, path: str) -> bytes:
        return self._call("read", self.fs.cat_file, path)

    def read_head(self, path: str, n: int) -> bytes:
        return self._call("read", self.fs.cat_file, path, start=0, end=n)

    def _pipe(self, path: str, data: Any) -> None:
        self._call("write", self.fs.pipe_file, path, data)

    def put_atomic(self, path: str, buffers: Sequence[Any]) -> None:
        data = buffers[0] if len(buffers) == 1 else b"".join(_byte_view(b) for b in buffers)
        data = bytes(data) if not isinstance(data, bytes) else data
        if self.atomic_put:
            self._pipe(path, data)
            return
        tmp = _tmp_name(path)
        self._pipe(tmp, data)
        try:
            self._call("rename", self.fs.mv, tmp, path)
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except OSError as exc:
                logger.warning("could not remove temporary file %s: %s", tmp, exc)
            raise

    def put_new(self, path: str, buffers: Sequence[Any], algorithm: str) -> tuple[int, str]:
        total = sum(_nbytes(b) for b in buffers)
        hasher = _Hasher(buffers, total, algorithm)  # hashes while the upload runs
        if len(buffers) == 1:
            data = buffers[0]
            data = data if isinstance(data, (bytes, bytearray)) else _byte_view(data)
        else:
            data = b"".join(_byte_view(b) for b in buffers)
        self._pipe(path, data)
        return total, hasher.result()

    #: Large objects are fetched as ranges of this size, a few at a time.
    range_size = 8 * 1024 * 1024
    ranges_in_flight = 4

    def _read_ranges(self, path: str, size: int, buf: Any, algorithm: str) -> tuple[Any, str]:
        """Fetch ``path`` as concurrent range requests and hash each range as it arrives, in order.

        The hash of range i overlaps the downloads of the next ones, and the
        bytes land straight in the materializer's buffer (no extra copy for
        numpy). Each range is retried on its own.
        """
        import asyncio

        out = _byte_view(buf)
        h = digests.Hasher(algorithm)
        starts = list(range(0, size, self.range_size))
        pending: dict[int, Any] = {}

        def submit(i: int) -> None:
            start = starts[i]
            end = min(start + self.range_size, size)
            pending[i] = asyncio.run_coroutine_threadsafe(self.fs._cat_file(path, start=start, end=end), self.fs.loop)

        for i in range(min(self.ranges_in_flight, len(starts))):
            submit(i)
        try:
            for i, start in enumerate(starts):
                end = min(start + self.range_size, size)
                chunk = self._range(pending.pop(i), path, start, end)
                if i + self.ranges_in_flight < len(starts):
                    submit(i + self.ranges_in_flight)
                if len(chunk) != end - start:
                    raise IntegrityError(f"{self.to_uri(path)}: object is shorter than the {size} bytes the sidecar says")
                h.update(chunk)
                out[start:end] = chunk
        finally:
            for future in pending.values():
                future.cancel()
        return buf, h.text()

    def read_verified(self, path: str, size: int, expected: str, allocate: Callable[[int], Any] | None,
                      exact: bool) -> Any:
        buf = allocate(size) if allocate is not None and size >= PARALLEL_HASH_MIN else None
        if buf is not None and getattr(self.fs, "async_impl", False) and hasattr(self.fs, "_cat_file"):
            # Straight into the materializer's buffer, range by range. Only the first
            # ``size`` bytes are read, hashed and returned: bytes an attacker appends
            # are never used, and missing ones fail the length check. (Plain bytes
            # come in one GET below: assembling ranges would cost a copy.)
            data, got = self._read_ranges(path, size, buf, expected.partition(":")[0])
        else:
            data = self.read_bytes(path)
            if len(data) != size:
                raise IntegrityError(f"{self.to_uri(path)}: {len(data)} bytes stored, the sidecar says {size}")
            got = digests.of(expected.partition(":")[0], data)
        if got != expected:
            raise IntegrityError(
                f"{self.to_uri(path)}: content does not match its recorded digest (the bytes were altered or corrupted)"
            )
        return data

    def delete(self, path: str) -> bool:
        try:
            self._call("delete", self.fs.rm_file, path)
            return True
        except FileNotFoundError:
            return False

    def delete_tree(self, path: str) -> bool:
        try:
            self._call("delete", self.fs.rm, path, recursive=True)
            return True
        except FileNotFoundError:
            return False

    def exists(self, path: str) -> bool:
        return self._call("stat", self.fs.exists, path)

    def walk(self, path: str) -> Iterator[tuple[str, int]]:
        try:
            found = self._call("list", self.fs.find, path, detail=True)
        except FileNotFoundError:
            return
        for name, info in sorted(found.items()):
            if info.get("type", "file") == "file":
                yield name, int(info.get("size") or 0)

    def mkdirs(self, path: str) -> None:
        if not self.atomic_put:
            self.fs.makedirs(path, exist_ok=True)

    def walk_ages(self, path: str) -> Iterator[tuple[str, float | None]]:
        try:
            found = self._call("list", self.fs.find, path, detail=True)
        except FileNotFoundError:
            return
        now = time.time()
        for name, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            stamp = _timestamp(info.get("mtime") or info.get("updated") or info.get("created"))
            yield name, (now - stamp) if stamp is not None else None


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from what fsspec listings give (numbers, datetimes, ISO strings)."""
    import datetime

    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc).timestamp()
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return _timestamp(parsed)


def backend_for(url: str, storage_options: Mapping[str, Any] | None = None,
                retry: RetryPolicy | None = None) -> StoreBackend:
    """A local backend for plain paths and ``file://``, fsspec for every other URL."""
    if "://" not in url or url.startswith("file://"):
        return LocalBackend(url)
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url, **dict(storage_options or {}))
    return FsspecBackend(fs, path, retry=retry)


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
        total = sum(_nbytes(x) for x in buffers)
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
            _byte_view(buf)[:] = payload
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
