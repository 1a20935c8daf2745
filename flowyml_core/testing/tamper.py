"""Finding and altering a store's bytes, so the kit can check that altered bytes are refused.

The kit does not know a store's layout. It lists the store's files before and
after a write, and alters the largest file the write created or changed (the
kit writes a large, incompressible value, so that file holds the value). The
store's files are found from ``store.fs`` (an fsspec filesystem) and a root
(``store.root``, or the config's ``path``/``url``/``root``); a store laid out
otherwise overrides :meth:`StoreContractBase.stored_files`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any


class StoredFiles:
    """The files under a store's root, on the local disk or any fsspec filesystem."""

    def __init__(self, root: str, fs: Any | None = None) -> None:
        self.fs = fs
        if fs is not None:
            strip = getattr(fs, "_strip_protocol", None)
            self.root = strip(root) if callable(strip) else root
        else:
            self.root = os.path.abspath(root)

    def __repr__(self) -> str:
        return f"StoredFiles({self.root!r}, fs={type(self.fs).__name__ if self.fs else 'local'})"

    def list(self) -> list[str]:
        if self.fs is None:
            found = []
            for dirpath, _, files in os.walk(self.root):
                found.extend(os.path.join(dirpath, f) for f in files)
            return sorted(found)
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()
        try:
            return sorted(self.fs.find(self.root))
        except FileNotFoundError:
            return []

    def read(self, path: str) -> bytes:
        if self.fs is None:
            return Path(path).read_bytes()
        return self.fs.cat_file(path)

    def write(self, path: str, data: bytes) -> None:
        if self.fs is None:
            Path(path).write_bytes(data)
            return
        self.fs.pipe_file(path, data)
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()

    def snapshot(self) -> dict[str, str]:
        """Digest of every file, to find what a write changed."""
        return {path: hashlib.sha256(self.read(path)).hexdigest() for path in self.list()}

    def changed_since(self, before: dict[str, str]) -> list[str]:
        """Files created or changed since ``before``, largest first."""
        after = self.snapshot()
        changed = [p for p, digest in after.items() if before.get(p) != digest]
        return sorted(changed, key=lambda p: -len(self.read(p)))


def locate(store: Any) -> StoredFiles | None:
    """Where a store keeps its files, when it says so in a conventional way."""
    config = getattr(store, "config", None)
    root = getattr(store, "root", None)
    for attr in ("path", "url", "root"):
        if root is None and config is not None:
            root = getattr(config, attr, None)
    if root is None:
        return None
    root = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
    fs = getattr(store, "fs", None)
    if fs is None and "://" in root and not root.startswith("file://"):
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            return None
        fs, _ = url_to_fs(root)
    if root.startswith("file://"):
        root = root[len("file://"):]
    return StoredFiles(root, fs)


class _MakesDirectory:
    """Unpickling this creates a directory: proof that untrusted bytes were executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def flip_middle_byte(data: bytes) -> bytes:
    if not data:
        return b"\x00"
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def truncate_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def malicious_pickle(marker: str) -> bytes:
    """A pickle that creates ``marker`` when loaded."""
    return pickle.dumps(_MakesDirectory(marker), protocol=2)
