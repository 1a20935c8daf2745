"""The fsspec backend: any fsspec URL (``gs://``, ``s3://``, ``memory://``…), each request under a retry policy.

Object stores (``ATOMIC_OBJECT_PROTOCOLS``) publish an entry with one PUT: an
object appears whole or not at all, so no rename (a copy on most object
stores) is needed. Other filesystems write a temp file and move it.

Reads fetch the first :data:`~flowyml_local.backends.HEAD_READ` bytes (the
whole entry when it is small: one request); a large payload is then fetched
as concurrent range requests straight into its buffer, each range hashed as
it arrives, in order.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

from flowyml_core.errors import IntegrityError

from flowyml_local import digests
from flowyml_local.backends import HEAD_READ, EntryReader, EntryReplaced, HeadFor, StoreBackend, temp_name
from flowyml_local.buffers import byte_view
from flowyml_local.retries import RetryPolicy, StoreUnavailableError, error_line, is_transient

logger = logging.getLogger("flowyml.stores")

T = TypeVar("T")

#: Entries up to this size are read in one request once their header says they are not small.
WHOLE_READ = 16 * 1024 * 1024


#: Protocols whose single-object writes are atomic (a PUT replaces the whole object).
ATOMIC_OBJECT_PROTOCOLS = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "memory", "adl"})


#: Protocols whose delete of a missing object succeeds (S3 answers 204): :meth:`FsspecBackend.delete`
#: asks first, to say whether something was deleted.
SILENT_DELETE_PROTOCOLS = frozenset({"s3", "s3a"})

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

    @property
    def _ranged(self) -> bool:
        """Whether ranges can be fetched concurrently (fsspec's async filesystems: gcsfs, s3fs...)."""
        return bool(getattr(self.fs, "async_impl", False)) and hasattr(self.fs, "_cat_file")

    # -- writing -------------------------------------------------------------------
    def _pipe(self, path: str, data: Any) -> None:
        try:
            self._call("write", self.fs.pipe_file, path, data)
        except FileNotFoundError as exc:
            if not self.atomic_put:
                raise
            # An object store has no directories: a write finds nothing missing but the bucket.
            raise FileNotFoundError(f"cannot write {self.to_uri(path)}: {error_line(exc)} (does the bucket exist? "
                                    "flowyml stack validate checks it)") from exc

    def publish(self, path: str, head: HeadFor, buffers: Sequence[Any], algorithm: str,
                digest: str | None = None) -> str:
        # One object is one request: the digest must be in the header before the
        # upload starts (hashing costs ~10 ms per 100 MB, the upload far more).
        if digest is None:
            digest = digests.of(algorithm, *buffers)
        data = b"".join([head(digest), *(byte_view(b) for b in buffers)])
        if self.atomic_put:
            self._pipe(path, data)
            return digest
        tmp = temp_name(path, "/")
        parent = path.rpartition("/")[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self._pipe(tmp, data)
        try:
            self._call("rename", self.fs.mv, tmp, path)
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except OSError as exc:
                logger.warning("could not remove temporary file %s: %s", tmp, exc)
            raise
        return digest

    # -- reading -------------------------------------------------------------------
    def open_entry(self, path: str) -> EntryReader:
        return _FsspecEntry(self, path)

    def read_bytes(self, path: str) -> bytes:
        return self._call("read", self.fs.cat_file, path)

    #: Large objects are fetched as ranges of this size, a few at a time.
    range_size = 8 * 1024 * 1024
    ranges_in_flight = 4

    def read_ranges(self, path: str, offset: int, size: int, out: memoryview, algorithm: str) -> str:
        """Fetch bytes ``offset:offset+size`` of ``path`` into ``out`` as concurrent ranges; their digest.

        The hash of range i overlaps the downloads of the next ones, and the
        bytes land straight in the caller's buffer (no extra copy for numpy).
        Each range is retried on its own.
        """
        import asyncio

        h = digests.Hasher(algorithm)
        starts = list(range(0, size, self.range_size))
        pending: dict[int, Any] = {}

        def submit(i: int) -> None:
            start = offset + starts[i]
            end = offset + min(starts[i] + self.range_size, size)
            pending[i] = asyncio.run_coroutine_threadsafe(self.fs._cat_file(path, start=start, end=end), self.fs.loop)

        for i in range(min(self.ranges_in_flight, len(starts))):
            submit(i)
        try:
            for i, start in enumerate(starts):
                end = min(start + self.range_size, size)
                chunk = self._range(pending.pop(i), path, offset + start, offset + end)
                if i + self.ranges_in_flight < len(starts):
                    submit(i + self.ranges_in_flight)
                if len(chunk) != end - start:
                    raise IntegrityError(f"{self.to_uri(path)}: the object is shorter than its header says")
                h.update(chunk)
                out[start:end] = chunk
        finally:
            for future in pending.values():
                future.cancel()
        return h.text()

    # -- housekeeping ----------------------------------------------------------------
    def delete(self, path: str) -> bool:
        if self.protocol in SILENT_DELETE_PROTOCOLS and not self.is_file(path):
            return False
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

    def is_file(self, path: str) -> bool:
        return self._call("stat", self.fs.isfile, path)

    def walk(self, path: str) -> Iterator[tuple[str, int, float | None]]:
        try:
            found = self._call("list", self.fs.find, path, detail=True)
        except FileNotFoundError:
            return
        now = time.time()
        for name, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            stamp = _timestamp(info.get("mtime") or info.get("updated") or info.get("LastModified")
                               or info.get("created"))
            yield name, int(info.get("size") or 0), (now - stamp) if stamp is not None else None


class _FsspecEntry(EntryReader):
    """An object read as its first bytes (one request), then ranges for a large payload.

    Filesystems without concurrent ranges (``memory://``, sftp...) are read
    whole in one request, so the header and the payload are one version.
    """

    def __init__(self, backend: FsspecBackend, path: str) -> None:
        self.backend = backend
        self.path = path
        if backend._ranged:
            self.head = backend._call("read", backend.fs.cat_file, path, start=0, end=HEAD_READ)
            self.size = len(self.head) if len(self.head) < HEAD_READ else None
        else:
            self.head = backend.read_bytes(path)
            self.size = len(self.head)

    def more_head(self, n: int) -> bytes:
        return self.backend._call("read", self.backend.fs.cat_file, self.path, start=0, end=n)

    def payload(self, offset: int, size: int, expected: str, allocate: Callable[[int], Any] | None) -> Any:
        uri = self.backend.to_uri(self.path)
        if self.size is not None and self.size != offset + size:
            raise IntegrityError(f"{uri}: the payload is {self.size - offset} bytes stored, its header says {size}")
        algorithm = expected.partition(":")[0]
        if offset + size <= len(self.head):
            data, got = _copy_out(memoryview(self.head)[offset:offset + size], algorithm, allocate)
        elif offset + size <= WHOLE_READ:
            # Not large: the whole object in one request, so that its header and
            # payload are one version whatever writers do meanwhile.
            whole = self.backend.read_bytes(self.path)
            if whole[:len(self.head)] != self.head:
                raise EntryReplaced(f"{uri} was replaced while it was read")
            if len(whole) != offset + size:
                raise IntegrityError(f"{uri}: the payload is {len(whole) - offset} bytes stored, its header says {size}")
            data, got = _copy_out(memoryview(whole)[offset:], algorithm, allocate)
        else:
            # Only bytes offset:offset+size are read, hashed and returned: bytes an
            # attacker appends are never used, and missing ones fail the length check.
            buf = allocate(size) if allocate is not None else None
            if buf is not None:
                data, got = buf, self.backend.read_ranges(self.path, offset, size, byte_view(buf), algorithm)
            else:  # plain bytes come in one GET: assembling ranges would cost a copy
                data = self.backend._call("read", self.backend.fs.cat_file, self.path, start=offset,
                                          end=offset + size)
                if len(data) != size:
                    if self._replaced():
                        raise EntryReplaced(f"{uri} was replaced while it was read")
                    raise IntegrityError(f"{uri}: the object is shorter than its header says")
                got = digests.of(algorithm, data)
        if got != expected:
            if offset + size > len(self.head) and self._replaced():
                raise EntryReplaced(f"{uri} was replaced while it was read")
            raise IntegrityError(f"{uri}: content does not match its recorded digest (the bytes were altered or corrupted)")
        return data

    def _replaced(self) -> bool:
        """Whether the object's first bytes (its header: digest, created...) changed since they were read."""
        try:
            return self.more_head(len(self.head)) != self.head
        except FileNotFoundError:
            return True


def _copy_out(view: memoryview, algorithm: str, allocate: Callable[[int], Any] | None) -> tuple[Any, str]:
    """The payload from bytes already fetched (into the materializer's buffer if it gives one), and its digest."""
    got = digests.of(algorithm, view)
    buf = allocate(len(view)) if allocate is not None else None
    if buf is None:
        return view.tobytes(), got
    byte_view(buf)[:] = view
    return buf, got


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


