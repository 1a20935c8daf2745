"""Reference stores of the conformance kit: small, correct, directory-based.

They exist so that an executor can be checked without any store plugin
installed, and so that the store contracts are checked against something known
to be right. Both pickle values: they are for tests, where every writer is
trusted. Each file is ``MAGIC``, one JSON header line holding the SHA-256 of the
payload, then the payload; it is written to a temporary name and renamed, so a
reader sees a whole old file, a whole new file, or none. The digest is checked
before anything is unpickled.

Paths are made absolute when the store is created, so a copy of the store sent
to another process (a Dask worker) writes to the same place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import attrs

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore
from flowyml_core.errors import IntegrityError

logger = logging.getLogger("flowyml.testing.stores")

MAGIC = b"FLOWYML-KIT-1\n"


@attrs.define(frozen=True)
class DirStoreConfig:
    """``path``: the directory that holds the store's files."""

    path: str = ".flowyml/kit"


def _write_atomic(path: Path, header: dict[str, Any], payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**header, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC)
            fh.write(json.dumps(header, sort_keys=True).encode() + b"\n")
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            raise IntegrityError(f"{path}: not a flowyml kit file (bad magic); it was altered or written by something else")
        line = fh.readline()
    try:
        return json.loads(line)
    except ValueError:
        raise IntegrityError(f"{path}: unreadable header; the file was altered") from None


def _read_verified(path: Path) -> tuple[dict[str, Any], bytes]:
    """Header and payload; IntegrityError when the payload is not what was written."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise IntegrityError(f"{path}: not a flowyml kit file (bad magic); it was altered or written by something else")
    newline = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC):newline])
    except ValueError:
        raise IntegrityError(f"{path}: unreadable header; the file was altered") from None
    body = data[newline + 1:]
    if len(body) != header.get("size") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise IntegrityError(f"{path}: contents do not match their SHA-256 record; refusing to load altered bytes")
    return header, body


class DirCacheStore(CacheStore):
    """Cache entries as files ``<path>/<key[:2]>/<key>``."""

    def __init__(self, config: DirStoreConfig | None = None) -> None:
        super().__init__(config or DirStoreConfig())
        self.root = Path(self.config.path).expanduser().resolve()

    def __repr__(self) -> str:
        return f"DirCacheStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid cache key {key!r}")
        return self.root / key[:2] / key

    def get(self, key: str) -> CacheEntry | None:
        path = self._path(key)
        try:
            header, body = _read_verified(path)
        except FileNotFoundError:
            return None
        except IntegrityError as exc:
            logger.warning("cache entry %s ignored: %s", key, exc)
            return None
        return CacheEntry(
            value=pickle.loads(body),
            step_name=header["step_name"],
            code_hash=header["code_hash"],
            fingerprint=header.get("fingerprint"),
            created=header.get("created", 0.0),
        )

    def set_value(self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None) -> None:
        header = {"step_name": step_name, "code_hash": code_hash, "fingerprint": fingerprint, "created": time.time()}
        _write_atomic(self._path(key), header, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def _entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*/*") if p.is_file() and not p.name.startswith(".")]

    def invalidate(self, key: str | None = None, step_name: str | None = None) -> int:
        dropped = 0
        if key is not None:
            try:
                self._path(key).unlink()
                dropped += 1
            except FileNotFoundError:
                pass
        if step_name is not None:
            for path in self._entries():
                try:
                    if _read_header(path).get("step_name") == step_name:
                        path.unlink()
                        dropped += 1
                except (FileNotFoundError, IntegrityError):
                    continue
        return dropped

    def clear(self) -> None:
        for path in self._entries():
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def stats(self) -> Mapping[str, Any]:
        sizes = []
        for path in self._entries():
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                continue
        return {"entries": len(sizes), "bytes": sum(sizes)}


class DirArtifactStore(ArtifactStore):
    """Artifacts as files ``<path>/<project>/<run_id>/<step>/<name>``; URIs are absolute paths."""

    def __init__(self, config: DirStoreConfig | None = None) -> None:
        super().__init__(config or DirStoreConfig())
        self.root = Path(self.config.path).expanduser().resolve()

    def __repr__(self) -> str:
        return f"DirArtifactStore({str(self.root)!r})"

    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        for part in (project_name, run_id, step_name, name):
            if not part or "/" in part or part in (".", ".."):
                raise ValueError(f"invalid artifact path component {part!r}")
        return str(self.root / project_name / run_id / step_name / name)

    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default") -> str:
        uri = self.uri_for(run_id, step_name, name, project_name)
        header = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}", "created": time.time()}
        _write_atomic(Path(uri), header, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        return uri

    def _path(self, uri: str) -> Path:
        path = Path(uri.removeprefix("file://")).resolve()
        if self.root not in path.parents:
            raise IntegrityError(f"{uri} is outside this artifact store ({self.root}); refusing to load it")
        return path

    def load(self, uri: str) -> Any:
        _, body = _read_verified(self._path(uri))
        return pickle.loads(body)

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()
