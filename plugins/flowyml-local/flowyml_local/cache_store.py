"""The ``local`` cache store: step results by cache key on a filesystem path or any fsspec URL.

One file per key, written to a temp file and renamed into place, so two
processes writing one key leave one complete entry and readers never see a torn
one. A damaged or untrusted entry is a miss with a warning. Implementation:
:class:`flowyml_local.fs_cache.FsCacheStore`.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from flowyml_local.backends import StoreBackend, backend_for
from flowyml_local.fs_cache import FsCacheStore
from flowyml_local.fsstore import StoreTrustOptions
from flowyml_local.materializers import MaterializerSet
from flowyml_local.portable import absolute_path_option


@attrs.define(kw_only=True)
class LocalCacheStoreConfig(StoreTrustOptions):
    """Options of ``cache_store = { flavor = "local", ... }``."""

    #: Directory (or fsspec URL) of the cache entries.
    path: str = ".flowyml/cache"
    #: Extra fsspec options for URL roots (ignored for local paths).
    storage_options: dict[str, Any] = attrs.field(factory=dict)


class LocalCacheStore(FsCacheStore):
    """Entries at ``<path>/<key>``; ``stats()`` adds this instance's hits and misses."""

    def __init__(self, config: LocalCacheStoreConfig | None = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        config = config if config is not None else LocalCacheStoreConfig()
        super().__init__(config, backend=backend, materializers=materializers)
        if self._backend is None and "://" not in config.path:
            self._backend = self._make_backend()

    def _make_backend(self) -> StoreBackend:
        return backend_for(self.config.path, self.config.storage_options)

    def portable_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The declared options for a unit elsewhere: a local path made absolute (see ``portable.py``)."""
        return absolute_path_option(options, self.root)
