"""The ``gcs`` artifact and cache stores: the shared fsspec stores on a gcsfs filesystem.

Everything about formats, the file format, integrity, signatures and layout
lives in :mod:`flowyml_local.fs_artifacts` and :mod:`flowyml_local.fs_cache`
(``docs/reference/stores.md``); this module only builds the filesystem from
the options and explains gcsfs's errors; the backend, the retry budget and
``validate`` are :mod:`flowyml_local.bucket_stores`'s, shared with the s3 stores.

Atomic publication on GCS: an object appears whole or not at all, and each
artifact and cache entry is one object (header + payload) uploaded in one
request. A reader never sees a half-written artifact, an interrupted write
leaves nothing, concurrent writers of one artifact or cache key end with the
last complete write. No rename (copy + delete on GCS) is ever needed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_local.backends import StoreBackend
from flowyml_local.bucket_stores import BucketStore, first_line
from flowyml_local.fs_artifacts import FsArtifactStore
from flowyml_local.fs_cache import FsCacheStore
from flowyml_local.materializers import MaterializerSet

from flowyml_gcs.config import GcsArtifactStoreConfig, GcsCacheStoreConfig, GcsStoreConfig, parse_gs_url

logger = logging.getLogger("flowyml.stores.gcs")

#: gcsfs token methods passed through as they are.
TOKEN_METHODS = frozenset({"anon", "google_default", "cloud", "cache", "browser"})


def resolve_token(token: str | None, endpoint: str | None, bucket: str) -> Any:
    """The ``token`` argument for gcsfs. Never puts the token's value in a message."""
    if token is None:
        return "anon" if endpoint else None
    text = token.strip()
    if not text:
        raise ConfigError(f"gcs store for bucket {bucket!r}: token is empty (an unset environment variable?)")
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except ValueError:
            raise ConfigError(
                f"gcs store for bucket {bucket!r}: token looks like JSON credentials but does not parse (value hidden)"
            ) from None
        if not isinstance(info, dict):
            raise ConfigError(f"gcs store for bucket {bucket!r}: token JSON must be an object (value hidden)")
        return info
    if text in TOKEN_METHODS:
        return text
    path = os.path.expanduser(text)
    if not os.path.isfile(path):
        raise ConfigError(
            f"gcs store for bucket {bucket!r}: token is neither JSON credentials, a method "
            f"({', '.join(sorted(TOKEN_METHODS))}) nor an existing credentials file (value hidden)"
        )
    return path


def make_filesystem(config: GcsStoreConfig) -> Any:
    """A gcsfs filesystem for the options (imports gcsfs)."""
    bucket, _ = parse_gs_url(config.url)
    token = resolve_token(config.token, config.endpoint, bucket)
    try:
        from flowyml_gcs._gcsfs import SingleAttemptGCSFileSystem
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise FlowymlError(f"the gcs stores need gcsfs ({exc}): pip install flowyml-gcs --find-links dist "
                           "(in a flowyml checkout, after bash scripts/build-wheels.sh)") from None
    kwargs: dict[str, Any] = {
        "token": token,
        "use_listings_cache": False,  # we list and then read: a stale listing would hide new objects
        "skip_instance_cache": True,  # options (tokens) differ per store
        "project": config.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "flowyml",
    }
    if config.endpoint:
        kwargs["endpoint_url"] = config.endpoint.rstrip("/")
    if config.request_timeout:
        kwargs["requests_timeout"] = config.request_timeout
    try:
        return SingleAttemptGCSFileSystem(**kwargs)
    except Exception as exc:  # google.auth and json errors for unusable credentials
        raise ConfigError(
            f"gcs store for bucket {bucket!r}: credentials could not be loaded: {type(exc).__name__}: "
            f"{first_line(exc)}"
        ) from None


class _GcsStore(BucketStore):
    """What both GCS stores share: the gcsfs filesystem from the options, and gcsfs's errors explained."""

    flavor = "gcs"
    config: GcsStoreConfig

    parse_url = staticmethod(parse_gs_url)

    def make_filesystem(self) -> Any:
        return make_filesystem(self.config)

    def endpoint(self) -> str:
        return self.config.endpoint or "https://storage.googleapis.com"

    def missing_bucket_hint(self) -> str:
        return f"gcloud storage buckets create gs://{self.bucket}"

    def explain(self, exc: BaseException) -> str:
        name = type(exc).__name__
        text = first_line(exc)
        code = getattr(exc, "code", None)
        module = type(exc).__module__ or ""
        if isinstance(exc, PermissionError) or code in (401, 403) or text.startswith("Forbidden") or "403" in text[:20]:
            return f"no access with the configured credentials ({text}); grant them storage access to the bucket or set token"
        if module.startswith("google.auth") or "credential" in text.lower() or code == 401:
            return f"the credentials do not work ({name}: {text}); check the token option or run gcloud auth application-default login"
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or module.startswith("aiohttp"):
            return f"cannot reach the storage service ({name}: {text}); check endpoint and network"
        return f"{name}: {text}"


class GcsArtifactStore(_GcsStore, FsArtifactStore):
    """Artifacts at ``gs://bucket/prefix/<project>/<run_id>/<step>.<name>``, one object each."""

    def __init__(self, config: GcsArtifactStoreConfig, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._init_bucket()


class GcsCacheStore(_GcsStore, FsCacheStore):
    """Cache entries at ``gs://bucket/prefix/<key>``, one object each."""

    def __init__(self, config: GcsCacheStoreConfig, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._init_bucket()
