"""The ``s3`` artifact and cache stores: the shared fsspec stores on an s3fs filesystem.

Everything about formats, the file format, integrity, signatures and layout
lives in :mod:`flowyml_local.fs_artifacts` and :mod:`flowyml_local.fs_cache`
(``docs/reference/stores.md``); the backend, the retry budget and
``validate`` in :mod:`flowyml_local.bucket_stores` (shared with the gcs
stores). This module only builds the s3fs filesystem from the options and
explains botocore's errors.

Atomic publication on S3: an object appears whole or not at all (a PUT, or a
multipart upload for 100 MB and more, which becomes visible only when it
completes). Each artifact and cache entry is one object, so a reader never
sees a half-written artifact and concurrent writers of one key end with the
last complete write. No rename (copy + delete on S3) is ever needed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_local.backends import StoreBackend
from flowyml_local.bucket_stores import BucketStore, first_line
from flowyml_local.fs_artifacts import FsArtifactStore
from flowyml_local.fs_cache import FsCacheStore
from flowyml_local.materializers import MaterializerSet

from flowyml_s3.config import S3ArtifactStoreConfig, S3CacheStoreConfig, S3StoreConfig, parse_s3_url

logger = logging.getLogger("flowyml.stores.s3")

#: botocore's credential and configuration errors, by class name (botocore is not imported to check).
_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound",
                                "CredentialRetrievalError", "InvalidConfigError", "NoRegionError"})


def make_filesystem(config: S3StoreConfig) -> Any:
    """An s3fs filesystem for the options (imports s3fs). Never puts a credential in a message."""
    bucket, _ = parse_s3_url(config.url)
    for name in ("key", "secret", "token"):
        value = getattr(config, name)
        if value is not None and not value.strip():
            raise ConfigError(f"s3 store for bucket {bucket!r}: {name} is empty (an unset environment variable?)")
    try:
        from flowyml_s3._s3fs import SINGLE_ATTEMPT_RETRIES, SingleAttemptS3FileSystem
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise FlowymlError(f"the s3 stores need s3fs ({exc}): pip install flowyml-s3 --find-links dist "
                           "(in a flowyml checkout, after bash scripts/build-wheels.sh)") from None
    config_kwargs: dict[str, Any] = {"retries": dict(SINGLE_ATTEMPT_RETRIES)}
    if config.request_timeout:
        config_kwargs["connect_timeout"] = config_kwargs["read_timeout"] = config.request_timeout
    kwargs: dict[str, Any] = {
        "config_kwargs": config_kwargs,
        "use_listings_cache": False,  # we list and then read: a stale listing would hide new objects
        "skip_instance_cache": True,  # options (credentials) differ per store
    }
    if config.key is not None:
        kwargs.update(key=config.key.strip(), secret=config.secret.strip())
    if config.token is not None:
        kwargs["token"] = config.token.strip()
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url.rstrip("/")
    if config.region:
        kwargs["client_kwargs"] = {"region_name": config.region}
    if config.profile:
        kwargs["profile"] = config.profile
    return SingleAttemptS3FileSystem(**kwargs)


class _S3Store(BucketStore):
    """What both S3 stores share: the s3fs filesystem from the options, and botocore's errors explained."""

    flavor = "s3"
    config: S3StoreConfig

    parse_url = staticmethod(parse_s3_url)

    def make_filesystem(self) -> Any:
        return make_filesystem(self.config)

    def endpoint(self) -> str:
        # botocore also reads the endpoint from these variables (an endpoint_url option wins).
        configured = (self.config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                      or os.environ.get("AWS_ENDPOINT_URL"))
        if configured:
            return configured.rstrip("/")
        region = self.config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"

    def missing_bucket_hint(self) -> str:
        region = f" --region {self.config.region}" if self.config.region else ""
        return f"aws s3 mb s3://{self.bucket}{region}"

    def explain(self, exc: BaseException) -> str:
        name = type(exc).__name__
        text = first_line(exc)
        module = type(exc).__module__ or ""
        if isinstance(exc, PermissionError):
            return (f"no access with the configured credentials ({text}); check key and secret (or profile) "
                    "and that they may read and write the bucket")
        if name in _CREDENTIAL_ERRORS:
            return (f"no usable credentials ({name}: {text}); set key and secret as ${{env:…}} references, "
                    "a profile, or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables")
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or module.startswith(("aiohttp", "botocore")):
            return f"cannot reach the storage service ({name}: {text}); check endpoint_url, region and network"
        return f"{name}: {text}"


class S3ArtifactStore(_S3Store, FsArtifactStore):
    """Artifacts at ``s3://bucket/prefix/<project>/<run_id>/<step>.<name>``, one object each."""

    def __init__(self, config: S3ArtifactStoreConfig, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._init_bucket()


class S3CacheStore(_S3Store, FsCacheStore):
    """Cache entries at ``s3://bucket/prefix/<key>``, one object each."""

    def __init__(self, config: S3CacheStoreConfig, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._init_bucket()
