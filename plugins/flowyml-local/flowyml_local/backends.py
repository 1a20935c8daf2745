"""Byte-level access to the storage under a store's root: the OS, or any fsspec filesystem.

The artifact and cache stores (:mod:`flowyml_local.fs_artifacts`,
:mod:`flowyml_local.fs_cache`) are written against :class:`StoreBackend`:

- :class:`~flowyml_local.localfs.LocalBackend` talks to the OS directly
  (``open``/``os.replace``): no fsspec import and no per-call objects, because a
  1000-step pipeline does a thousand writes and reads and must not pay more
  than the system calls.
- :class:`~flowyml_local.fsspecfs.FsspecBackend` serves any fsspec URL
  (``memory://``, ``gs://``, ``s3://``…), each request under a
  :class:`~flowyml_local.retries.RetryPolicy`.

Every stored object is one *entry* (:mod:`flowyml_local.entries`): a small
header, then the payload. A backend publishes an entry all at once
(:meth:`StoreBackend.publish`), hashing the payload while it moves, and reads
it back through an :class:`EntryReader` that checks size and digest while the
bytes arrive, so the integrity check costs little more than the I/O.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import time
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

from flowyml_core.errors import IntegrityError

from flowyml_local.retries import RetryPolicy

T = TypeVar("T")

#: A function that gives an entry's header for its payload's digest (see :func:`flowyml_local.entries.head_encoder`).
HeadFor = Callable[[str], bytes]

#: How much of an entry a reader fetches first: the whole entry when it is small, else its header.
HEAD_READ = 64 * 1024

#: Temporary files are hidden (leading dot) and end with this; no entry name does either.
TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of the stores' temporary files (an unfinished write)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


_tmp_counter = itertools.count()
_tmp_token: tuple[int, str] = (-1, "")


def temp_name(directory_of: str, sep: str = os.sep) -> str:
    """A fresh temporary name next to ``directory_of`` (same directory: the rename stays atomic).

    Short and independent of the target's name, so a long entry name never
    makes its temp name too long for the file system. Unique per process (pid
    and a counter), and a random token per process keeps two hosts sharing a
    file system apart; ``O_EXCL`` catches the rest.
    """
    global _tmp_token
    pid = os.getpid()
    if _tmp_token[0] != pid:  # first use, or a forked child
        _tmp_token = (pid, f"{pid:x}-{secrets.token_hex(3)}")
    head = directory_of[:directory_of.rfind(sep)]
    return f"{head}{sep}.{_tmp_token[1]}-{next(_tmp_counter):x}{TEMP_SUFFIX}"


class EntryReplaced(IntegrityError):
    """The entry was replaced by a writer while it was read in several requests: read it again.

    Only object stores read a large entry in several requests (its first bytes,
    then ranges); a local reader holds the file open and sees one version.
    """


def retry_replaced(read: Callable[[], T], attempts: int = 6) -> T:
    """``read()``, again while it raises :class:`EntryReplaced`, after a short random pause.

    Writers replacing one object again and again (several processes on one
    cache key) could make a reader lose every race without the pause.
    """
    for attempt in range(attempts):
        try:
            return read()
        except EntryReplaced:
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.0, 0.02 * (attempt + 1)))
    raise AssertionError("unreachable")  # pragma: no cover


class EntryReader:
    """An entry opened for reading: its first bytes at once, the payload on demand, verified.

    ``head`` holds the first :data:`HEAD_READ` bytes (all of them for a small
    entry); ``size`` is the entry's total size when the backend knows it.
    """

    head: bytes
    size: int | None

    def more_head(self, n: int) -> bytes:
        """The first ``n`` bytes (for a header longer than :data:`HEAD_READ`)."""
        raise NotImplementedError

    def payload(self, offset: int, size: int, expected: str, allocate: Callable[[int], Any] | None) -> Any:
        """Bytes ``offset:offset+size``, after checking that they are all there and match ``expected``.

        Raises IntegrityError when the entry is shorter or longer than that, or
        the digest differs. ``allocate(size)`` may give the buffer to fill (numpy
        reads straight into the array's memory); otherwise ``bytes`` are returned.
        The digest checked is always that of the very bytes returned (a pickle
        runs what it holds: checking a second read of the file would not do).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what the reader holds (a file descriptor)."""

    def __enter__(self) -> EntryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreBackend:
    """Byte-level access to the storage under one root. Paths are backend paths."""

    #: Protocol shown in messages ("file", "gs", "memory"...).
    protocol: str = "file"
    #: The fsspec filesystem, when there is one (the conformance kit looks for ``fs``).
    fs: Any = None
    #: Path separator of backend paths.
    sep: str = "/"

    root: str

    def join(self, *parts: str) -> str:
        raise NotImplementedError

    def to_uri(self, path: str) -> str:
        raise NotImplementedError

    def from_uri(self, uri: str) -> str:
        raise NotImplementedError

    def publish(self, path: str, head: HeadFor, buffers: Sequence[Any], algorithm: str,
                digest: str | None = None) -> str:
        """Publish ``head(digest) + buffers`` at ``path`` all at once; returns the payload's digest.

        Readers see the previous entry, the new one, or nothing: never a part.
        ``digest`` is the payload's digest when the caller has it already;
        otherwise it is computed while the bytes are written. ``head`` must give
        headers of one length for every digest of ``algorithm``.
        """
        raise NotImplementedError

    def open_entry(self, path: str) -> EntryReader:
        """The entry at ``path``, opened for reading (FileNotFoundError when there is none)."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def delete(self, path: str) -> bool:
        raise NotImplementedError

    def delete_tree(self, path: str) -> bool:
        raise NotImplementedError

    def is_file(self, path: str) -> bool:
        raise NotImplementedError

    def walk(self, path: str) -> Iterator[tuple[str, int, float | None]]:
        """Every file under ``path``, recursively: (path, size, age in seconds or None when unknown)."""
        raise NotImplementedError

    def relative(self, path: str) -> str | None:
        """``path`` relative to the root with "/" separators; None when it lies outside."""
        root = self.root
        if not path.startswith(root + self.sep):
            return None
        return path[len(root) + 1:].replace(self.sep, "/")


def backend_for(url: str, storage_options: Mapping[str, Any] | None = None,
                retry: RetryPolicy | None = None) -> StoreBackend:
    """A local backend for plain paths and ``file://``, fsspec for every other URL."""
    if "://" not in url or url.startswith("file://"):
        from flowyml_local.localfs import LocalBackend

        return LocalBackend(url)
    from fsspec.core import url_to_fs

    from flowyml_local.fsspecfs import FsspecBackend

    fs, path = url_to_fs(url, **dict(storage_options or {}))
    return FsspecBackend(fs, path, retry=retry)
