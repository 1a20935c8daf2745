"""Fixtures for the store tests: stores on fresh temp directories."""

from __future__ import annotations

import pytest

from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
from flowyml_local.cache_store import LocalCacheStore, LocalCacheStoreConfig


@pytest.fixture(autouse=True)
def no_inherited_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWYML_SIGNING_KEY", raising=False)


@pytest.fixture
def artifacts(tmp_path) -> LocalArtifactStore:
    return LocalArtifactStore(LocalArtifactStoreConfig(path=str(tmp_path / "artifacts")))


@pytest.fixture
def cache(tmp_path) -> LocalCacheStore:
    return LocalCacheStore(LocalCacheStoreConfig(path=str(tmp_path / "cache")))


@pytest.fixture(autouse=True)
def no_untrusted_report_left_over():
    """Tests that make the cache refuse signed entries leave a count behind: start and end each test without one."""
    from flowyml_local import fsstore

    fsstore.report_untrusted()
    yield
    with fsstore._untrusted_lock:
        fsstore._untrusted.clear()
