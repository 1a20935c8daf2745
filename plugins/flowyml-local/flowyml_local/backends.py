"""Byte-level access to the storage under a store's root: the OS, or any fsspec filesystem.

The artifact and cache stores (:mod:`flowyml_local.fsstore`) are written
against :class:`StoreBackend`:

- :class:`LocalBackend` talks to the OS directly (``open``/``os.replace``): no
  fsspec import and no per-call objects, because a cached 1000-step pipeline
  does 1000 cache reads and must finish in a tenth of a second.
- :class:`FsspecBackend` serves any fsspec URL (``memory://``, ``gs://``,
  ``s3://``…), each request under a :class:`~flowyml_local.retries.RetryPolicy`.

Both write new data files while a helper thread computes their digest
(:mod:`flowyml_local.digests`), and read them back checking size and digest,
so that the integrity check costs little more than the I/O.
"""

from __future__ import annotations

import errno
import inspect
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from flowyml_core.errors import IntegrityError

from flowyml_local import digests
from flowyml_local.buffers import byte_view, nbytes
from flowyml_local.retries import RetryPolicy, StoreUnavailableError, error_line, is_transient

logger = logging.getLogger("flowyml.stores")

T = TypeVar("T")

#: Payloads at least this large are hashed in a helper thread while the I/O runs.
PARALLEL_HASH_MIN = 4 * 1024 * 1024
_IO_CHUNK = 1 << 30  # os.write/os.read move at most ~2 GiB per call on Linux
_HASH_CHUNK = 1 << 20
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


# -- hashing ---------------------------------------------------------------------
class _BackgroundDigest:
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
    view = byte_view(buf)
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
        total = sum(nbytes(b) for b in buffers)
        fd = self._create(path)
        try:
            try:
                digest = _BackgroundDigest(buffers, total, algorithm)
                for buf in buffers:
                    _write_all(fd, buf)
            finally:
                os.close(fd)
            return total, digest.result()
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
                data, got = buf, _read_into_hashing(fd, size, byte_view(buf), algorithm)
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
                        f"{ago:.1f} s ago, after its whole retry budget; last error: {error_line(exc)}); "
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
        data = buffers[0] if len(buffers) == 1 else b"".join(byte_view(b) for b in buffers)
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
        total = sum(nbytes(b) for b in buffers)
        digest = _BackgroundDigest(buffers, total, algorithm)  # hashes while the upload runs
        if len(buffers) == 1:
            data = buffers[0]
            data = data if isinstance(data, (bytes, bytearray)) else byte_view(data)
        else:
            data = b"".join(byte_view(b) for b in buffers)
        self._pipe(path, data)
        return total, digest.result()

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

        out = byte_view(buf)
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
