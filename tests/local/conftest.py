"""Fixtures for the local plugin's tests.

``MemoryCacheStore`` is a small, real implementation of the core ``CacheStore``
contract (values are pickled, so a hit returns a copy, as from disk); tests use
it where the storage medium is beside the point. Caching behaviour end to end
is tested with the real ``local`` stores.
"""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any, Mapping

import pytest

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore
from flowyml_local.executor import LocalExecutor, LocalExecutorConfig


class MemoryCacheStore(CacheStore):
    def __init__(self) -> None:
        super().__init__(None)
        self.entries: dict[str, bytes] = {}
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            raw = self.entries.get(key)
            if raw is None:
                self.misses += 1
                return None
            self.hits += 1
        return pickle.loads(raw)

    def set_value(self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None) -> None:
        entry = CacheEntry(value=value, step_name=step_name, code_hash=code_hash, fingerprint=fingerprint, created=time.time())
        raw = pickle.dumps(entry)
        with self._lock:
            self.entries[key] = raw
            self.writes += 1

    def invalidate(self, key: str | None = None, step_name: str | None = None) -> int:
        with self._lock:
            drop = [k for k, raw in self.entries.items() if k == key or (step_name and pickle.loads(raw).step_name == step_name)]
            for k in drop:
                del self.entries[k]
            return len(drop)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def stats(self) -> Mapping[str, Any]:
        return {"entries": len(self.entries), "bytes": sum(map(len, self.entries.values())), "hits": self.hits, "misses": self.misses}


class BrokenArtifactStore(ArtifactStore):
    """An artifact store whose disk is full: every write fails."""

    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default") -> str:
        raise OSError(28, "No space left on device")

    def load(self, uri: str) -> Any:
        raise FileNotFoundError(uri)

    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        return f"broken://{project_name}/{run_id}/{step_name}/{name}"


@pytest.fixture
def executor() -> LocalExecutor:
    return LocalExecutor()


@pytest.fixture
def threaded_executor() -> LocalExecutor:
    return LocalExecutor(LocalExecutorConfig(max_workers=2))


@pytest.fixture
def memory_cache() -> MemoryCacheStore:
    return MemoryCacheStore()
