"""What the object-store flavors share (``gcs``, ``s3``): retry options, the backend, checking the bucket.

A flavor is the shared fsspec stores (:mod:`flowyml_local.fs_artifacts`,
:mod:`flowyml_local.fs_cache`) plus :class:`BucketStore`, which builds the
:class:`~flowyml_local.fsspecfs.FsspecBackend` from the options and checks the
bucket in ``validate()``. The flavor gives only what differs: how its URL
parses, how its filesystem is built from the options, and how its SDK's errors
read (:meth:`BucketStore.explain`). Nothing here imports an SDK.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import attrs

from flowyml_core.errors import FlowymlError
from flowyml_local.backends import StoreBackend
from flowyml_local.fsstore import StoreTrustOptions

logger = logging.getLogger("flowyml.stores")


def non_negative(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def above_zero(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, not {value!r}")


@attrs.define(kw_only=True)
class BucketStoreOptions(StoreTrustOptions):
    """The retry budget of every request to the service (each flavor adds its URL and credentials)."""

    #: Attempts after the first for a request that fails transiently (drops, timeouts, 429,
    #: 5xx). Unset: as many as fit in ``deadline``. These are the only retries: the SDK's
    #: own are turned off, so that they cannot multiply with these.
    retries: int | None = attrs.field(default=None, validator=non_negative)
    #: First backoff delay of those attempts, in seconds (doubles each time, with jitter).
    retry_delay: float = attrs.field(default=0.5, validator=non_negative)
    #: Longest backoff delay, in seconds.
    retry_max_delay: float = attrs.field(default=8.0, validator=non_negative)
    #: Seconds one store request (a read, write, listing or delete) may take in all, its
    #: retries and their waits included; the attempt in flight is abandoned when they are
    #: spent. It bounds how long a step waits for the service in an outage (60 s: the cloud
    #: SDKs' own retries last up to 120 s, and bursts of 503/429 last tens of seconds, so
    #: less would fail runs that a short blip should only slow down). A transfer must fit in
    #: it too: raise it for artifacts that take longer to upload or download (1 GB at
    #: 10 MB/s needs ~100 s).
    deadline: float = attrs.field(default=60.0, validator=above_zero)
    #: Seconds before one HTTP request is abandoned (and retried); unset: the SDK's default.
    request_timeout: float | None = attrs.field(default=None, validator=non_negative)


def parse_bucket_url(url: str, schemes: tuple[str, ...]) -> tuple[str, str]:
    """``scheme://bucket/prefix`` → ("bucket", "prefix"); ValueError that shows the expected form (first scheme)."""
    text = str(url).strip()
    for scheme in schemes:
        if text.startswith(scheme):
            rest = text[len(scheme):].strip("/")
            bucket, _, prefix = rest.partition("/")
            if bucket:
                return bucket, prefix.strip("/")
    raise ValueError(f"url must look like {schemes[0]}BUCKET/PREFIX, not {url!r}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BucketStore:
    """Mixin before ``FsArtifactStore``/``FsCacheStore``: the backend from the options, and ``validate``.

    A flavor sets :attr:`flavor` and implements :meth:`parse_url`,
    :meth:`make_filesystem`, :meth:`endpoint`, :meth:`missing_bucket_hint`
    and :meth:`explain`.
    """

    #: The flavor's name in messages ("gcs", "s3").
    flavor: ClassVar[str] = ""
    config: Any
    backend: StoreBackend
    kind: str

    # -- what a flavor provides ---------------------------------------------------------
    @staticmethod
    def parse_url(url: str) -> tuple[str, str]:
        """``scheme://bucket/prefix`` → (bucket, prefix)."""
        raise NotImplementedError

    def make_filesystem(self) -> Any:
        """The fsspec filesystem for the options, its SDK's own retries off (imports the SDK)."""
        raise NotImplementedError

    def endpoint(self) -> str:
        """The service's URL (the configured endpoint, or the public one), for messages and the probe."""
        raise NotImplementedError

    def missing_bucket_hint(self) -> str:
        """How to create the bucket, e.g. a command."""
        raise NotImplementedError

    def explain(self, exc: BaseException) -> str:
        """One actionable phrase for an error of the bucket check."""
        return f"{type(exc).__name__}: {first_line(exc)}"

    # -- shared ---------------------------------------------------------------------------
    def _init_bucket(self) -> None:
        self.bucket, self.prefix = self.parse_url(self.config.url)

    def _make_backend(self) -> StoreBackend:
        from flowyml_local.fsspecfs import FsspecBackend
        from flowyml_local.retries import RetryPolicy

        fs = self.make_filesystem()
        root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        retries = self.config.retries
        retry = RetryPolicy(attempts=None if retries is None else retries + 1, base_delay=self.config.retry_delay,
                            max_delay=self.config.retry_max_delay, deadline=self.config.deadline,
                            owner=f"the {self.kind} (flavor {self.flavor}) in stacks.toml")
        return FsspecBackend(fs, root, retry=retry, atomic_put=True)

    def _where(self) -> str:
        return f"bucket {self.bucket!r} ({self.config.url}, endpoint {self.endpoint()})"

    def _probe_endpoint(self, timeout: float = 5.0) -> None:
        """Fail fast when nothing answers at the endpoint (the SDKs would retry for tens of seconds first)."""
        import socket
        import urllib.parse

        parsed = urllib.parse.urlsplit(self.endpoint())
        host = parsed.hostname or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            raise FlowymlError(
                f"{self.kind} {self.flavor}: {self._where()}: cannot reach {host}:{port} ({exc.strerror or exc}); "
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
                f"{self.kind} {self.flavor}: {self._where()} does not exist; create it "
                f"({self.missing_bucket_hint()}) or fix the url"
            ) from None
        except Exception as exc:  # classified by the flavor into one actionable line
            raise FlowymlError(f"{self.kind} {self.flavor}: {self._where()}: {self.explain(exc)}") from None

    def validate(self) -> None:
        self.check_bucket()
