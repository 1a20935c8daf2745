"""Options of the ``s3`` artifact and cache stores (no s3fs or botocore import here).

::

    [stacks.aws-prod]
    artifact_store = { flavor = "s3", url = "s3://acme-ml-artifacts/flowyml", region = "eu-west-1",
                       signing_key = "${env:FLOWYML_SIGNING_KEY}" }
    cache_store = { flavor = "s3", url = "s3://acme-ml-artifacts/cache", region = "eu-west-1" }
"""

from __future__ import annotations

import re

import attrs

from flowyml_core.config import secret_field
from flowyml_local.bucket_stores import BucketStoreOptions, parse_bucket_url

#: S3's rule for bucket names (general purpose buckets): checked here so that a typo is
#: one clear line when the stack is resolved, not an obscure error from the first request.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ("bucket", "prefix"); ValueError that shows the expected form."""
    bucket, prefix = parse_bucket_url(url, ("s3://", "s3a://"))
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(f"url {url!r}: {bucket!r} is not an S3 bucket name "
                         "(3-63 characters: lowercase letters, digits, dots and hyphens)")
    return bucket, prefix


def _check_url(instance: object, attribute: attrs.Attribute, value: str) -> None:
    parse_s3_url(value)


@attrs.define(kw_only=True)
class S3StoreConfig(BucketStoreOptions):
    """What both S3 stores accept (and the retry budget every bucket store has: ``retries``,
    ``retry_delay``, ``retry_max_delay``, ``deadline``, ``request_timeout``)."""

    #: ``s3://bucket/prefix`` under which the store keeps its objects.
    url: str = attrs.field(validator=_check_url)
    #: AWS region of the bucket, e.g. "eu-west-1"; unset: the profile's or ``$AWS_REGION``.
    region: str | None = None
    #: Endpoint of an S3-compatible service (MinIO, moto, Ceph...), e.g. ``"http://127.0.0.1:9000"``.
    endpoint_url: str | None = None
    #: Named profile of ``~/.aws/config`` and ``~/.aws/credentials`` to take credentials from.
    profile: str | None = None
    #: Access key id, e.g. ``"${env:AWS_ACCESS_KEY_ID}"``. Unset: botocore's chain
    #: (environment, profile, instance or task role).
    key: str | None = secret_field()
    #: Secret access key, e.g. ``"${env:AWS_SECRET_ACCESS_KEY}"``; goes with ``key``.
    secret: str | None = secret_field()
    #: Session token of temporary credentials, e.g. ``"${env:AWS_SESSION_TOKEN}"``.
    token: str | None = secret_field()

    def __attrs_post_init__(self) -> None:
        if (self.key is None) != (self.secret is None):
            given, missing = ("key", "secret") if self.secret is None else ("secret", "key")
            raise ValueError(f"{given} is set but {missing} is not: give both (as ${{env:…}} references) or neither")
        if self.token is not None and self.key is None:
            raise ValueError("token (a session token) needs key and secret too")


@attrs.define(kw_only=True)
class S3ArtifactStoreConfig(S3StoreConfig):
    """Options of ``artifact_store = { flavor = "s3", ... }``."""


@attrs.define(kw_only=True)
class S3CacheStoreConfig(S3StoreConfig):
    """Options of ``cache_store = { flavor = "s3", ... }``."""
