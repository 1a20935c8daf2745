"""The ``local`` artifact store: step outputs on a filesystem path or any fsspec URL.

``LocalArtifactStore(LocalArtifactStoreConfig(path=...))`` takes a local path
(relative paths are resolved against the current directory when the store is
created) or any fsspec URL (``memory://…``, ``s3://…``); the implementation is
:class:`flowyml_local.fs_artifacts.FsArtifactStore` — layout, atomicity and
trust rules are described there and in ``docs/reference/stores.md``.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from flowyml_local.backends import StoreBackend, backend_for
from flowyml_local.fs_artifacts import FsArtifactStore
from flowyml_local.fsstore import StoreTrustOptions
from flowyml_local.materializers import MaterializerSet
from flowyml_local.portable import absolute_path_option


@attrs.define(kw_only=True)
class LocalArtifactStoreConfig(StoreTrustOptions):
    """Options of ``artifact_store = { flavor = "local", ... }``."""

    #: Root directory (or fsspec URL) of the artifacts.
    path: str = ".flowyml/artifacts"
    #: Extra fsspec options for URL roots (ignored for local paths).
    storage_options: dict[str, Any] = attrs.field(factory=dict)


class LocalArtifactStore(FsArtifactStore):
    """Artifacts at ``<path>/<project>/<run_id>/<step>.<name>``, one file each (header + payload)."""

    def __init__(self, config: LocalArtifactStoreConfig | None = None, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        config = config if config is not None else LocalArtifactStoreConfig()
        super().__init__(config, backend=backend, materializers=materializers)
        if self._backend is None and "://" not in config.path:
            # Resolve a relative path now, against the directory the stack was built in.
            self._backend = self._make_backend()

    def _make_backend(self) -> StoreBackend:
        return backend_for(self.config.path, self.config.storage_options)

    def portable_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The declared options for a unit elsewhere: a local path made absolute (see ``portable.py``)."""
        return absolute_path_option(options, self.root)
