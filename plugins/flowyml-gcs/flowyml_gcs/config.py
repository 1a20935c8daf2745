"""Options of the ``gcs`` artifact and cache stores (no gcsfs import here).

::

    [stacks.gcp-prod]
    artifact_store = { flavor = "gcs", url = "gs://acme-ml-artifacts/flowyml", project = "acme-ml",
                       token = "${env:GOOGLE_APPLICATION_CREDENTIALS}", signing_key = "${env:FLOWYML_SIGNING_KEY}" }
    cache_store = { flavor = "gcs", url = "gs://acme-ml-artifacts/cache" }
"""

from __future__ import annotations

import attrs

from flowyml_core.config import secret_field
from flowyml_local.fsstore import StoreTrustOptions


def parse_gs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/prefix`` → ("bucket", "prefix"); ValueError that shows the expected form."""
    text = str(url).strip()
    for scheme in ("gs://", "gcs://"):
        if text.startswith(scheme):
            rest = text[len(scheme):].strip("/")
            bucket, _, prefix = rest.partition("/")
            if bucket:
                return bucket, prefix.strip("/")
    raise ValueError(f"url must look like gs://BUCKET/PREFIX, not {url!r}")


def _check_url(instance: object, attribute: attrs.Attribute, value: str) -> None:
    parse_gs_url(value)


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def _above_zero(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, not {value!r}")


@attrs.define(kw_only=True)
class GcsStoreConfig(StoreTrustOptions):
    """What both GCS stores accept."""

    #: ``gs://bucket/prefix`` under which the store keeps its objects.
    url: str = attrs.field(validator=_check_url)
    #: Google Cloud project (billing/quota); default: the credentials' project.
    project: str | None = None
    #: Credentials: a service-account JSON file path, the JSON itself (e.g. from
    #: ``"${env:GCS_CREDENTIALS_JSON}"``), or a gcsfs method ("google_default",
    #: "cloud", "anon"). Unset: application-default credentials, or anonymous
    #: when ``endpoint`` is set (emulators).
    token: str | None = secret_field()
    #: API endpoint for emulators and private endpoints, e.g. ``"http://127.0.0.1:4443"``.
    endpoint: str | None = None
    #: Attempts after the first for a request to GCS that fails transiently (drops, timeouts,
    #: 429, 5xx). Unset: as many as fit in ``deadline``. These are the only retries: gcsfs's
    #: own (6 tries per request, which used to multiply with these) are turned off.
    retries: int | None = attrs.field(default=None, validator=_positive)
    #: First backoff delay of those attempts, in seconds (doubles each time, with jitter).
    retry_delay: float = attrs.field(default=0.5, validator=_positive)
    #: Longest backoff delay, in seconds.
    retry_max_delay: float = attrs.field(default=8.0, validator=_positive)
    #: Seconds one store request (a read, write, listing or delete) may take in all, its
    #: retries and their waits included; the attempt in flight is abandoned when they are
    #: spent. It bounds how long a step waits for GCS in an outage (60 s: Google's own
    #: clients retry for up to 120 s, and bursts of 503/429 last tens of seconds, so less
    #: would fail runs that a short blip should only slow down). A transfer must fit in it
    #: too: raise it for artifacts that take longer to upload or download (1 GB at 10 MB/s
    #: needs ~100 s).
    deadline: float = attrs.field(default=60.0, validator=_above_zero)
    #: Seconds before one HTTP request is abandoned (and retried); unset: gcsfs's default.
    request_timeout: float | None = attrs.field(default=None, validator=_positive)


@attrs.define(kw_only=True)
class GcsArtifactStoreConfig(GcsStoreConfig):
    """Options of ``artifact_store = { flavor = "gcs", ... }``."""


@attrs.define(kw_only=True)
class GcsCacheStoreConfig(GcsStoreConfig):
    """Options of ``cache_store = { flavor = "gcs", ... }``."""
