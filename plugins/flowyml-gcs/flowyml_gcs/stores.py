"""The ``gcs`` artifact and cache stores: the shared fsspec stores on a gcsfs filesystem.

Everything about formats, the file format, integrity, signatures and layout
lives in :mod:`flowyml_local.fs_artifacts` and :mod:`flowyml_local.fs_cache`
(``docs/reference/stores.md``); this module only builds the filesystem from
the options, adds GCS-specific checks (``validate``) and messages.

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
from flowyml_local.fs_artifacts import FsArtifactStore
from flowyml_local.fs_cache import FsCacheStore
from flowyml_local.fsspecfs import FsspecBackend
from flowyml_local.retries import RetryPolicy
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
            f"{_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _GcsStore:
    """What both GCS stores share: the filesystem from the options, and ``validate``."""

    config: GcsStoreConfig
    backend: StoreBackend
    kind: str

    def _init_gcs(self) -> None:
        self.bucket, self.prefix = parse_gs_url(self.config.url)

    def _make_backend(self) -> StoreBackend:
        fs = make_filesystem(self.config)
        root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        retries = self.config.retries
        retry = RetryPolicy(attempts=None if retries is None else retries + 1, base_delay=self.config.retry_delay,
                            max_delay=self.config.retry_max_delay, deadline=self.config.deadline,
                            owner=f"the {self.kind} (flavor gcs) in stacks.toml")
        return FsspecBackend(fs, root, retry=retry, atomic_put=True)

    def _where(self) -> str:
        endpoint = self.config.endpoint or "storage.googleapis.com"
        return f"bucket {self.bucket!r} ({self.config.url}, endpoint {endpoint})"

    def _probe_endpoint(self, timeout: float = 5.0) -> None:
        """Fail fast when nothing answers at the endpoint (gcsfs would retry for ~30 s first)."""
        import socket
        import urllib.parse

        endpoint = self.config.endpoint or "https://storage.googleapis.com"
        parsed = urllib.parse.urlsplit(endpoint)
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            raise FlowymlError(
                f"{self.kind} gcs: {self._where()}: cannot reach {host}:{port} ({exc.strerror or exc}); "
                "check the endpoint option and the network"
            ) from None

    def check_bucket(self) -> None:
        """A clear FlowymlError for a missing bucket, unusable credentials, no access or no connection."""
        fs = self.backend.fs  # a ConfigError here names the bucket and the credentials problem
        self._probe_endpoint()
        try:
            fs.info(self.bucket)
            probe = f"{self.backend.root}/.flowyml-validate-{os.getpid()}"
            fs.pipe_file(probe, b"ok")
            fs.rm_file(probe)
        except FileNotFoundError:
            raise FlowymlError(
                f"{self.kind} gcs: {self._where()} does not exist; create it "
                f"(gcloud storage buckets create gs://{self.bucket}) or fix the url"
            ) from None
        except Exception as exc:  # classified below into one actionable line
            raise FlowymlError(f"{self.kind} gcs: {self._where()}: {_explain(exc)}") from None

    def validate(self) -> None:
        self.check_bucket()


def _explain(exc: BaseException) -> str:
    name = type(exc).__name__
    text = _first_line(exc)
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
        self._init_gcs()


class GcsCacheStore(_GcsStore, FsCacheStore):
    """Cache entries at ``gs://bucket/prefix/<key>``, one object each."""

    def __init__(self, config: GcsCacheStoreConfig, *, backend: StoreBackend | None = None,
                 materializers: MaterializerSet | None = None) -> None:
        super().__init__(config, backend=backend, materializers=materializers)
        self._init_gcs()
