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
from flowyml_local.bucket_stores import BucketStoreOptions, parse_bucket_url


def parse_gs_url(url: str) -> tuple[str, str]:
    """``gs://bucket/prefix`` → ("bucket", "prefix"); ValueError that shows the expected form."""
    return parse_bucket_url(url, ("gs://", "gcs://"))


def _check_url(instance: object, attribute: attrs.Attribute, value: str) -> None:
    parse_gs_url(value)


@attrs.define(kw_only=True)
class GcsStoreConfig(BucketStoreOptions):
    """What both GCS stores accept (and the retry budget every bucket store has: ``retries``,
    ``retry_delay``, ``retry_max_delay``, ``deadline``, ``request_timeout``)."""

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


@attrs.define(kw_only=True)
class GcsArtifactStoreConfig(GcsStoreConfig):
    """Options of ``artifact_store = { flavor = "gcs", ... }``."""


@attrs.define(kw_only=True)
class GcsCacheStoreConfig(GcsStoreConfig):
    """Options of ``cache_store = { flavor = "gcs", ... }``."""
