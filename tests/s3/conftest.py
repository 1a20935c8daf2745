"""S3 store tests run against a real S3 API: moto's server (tests/servers/moto_s3.py)."""

from __future__ import annotations

import pytest

from flowyml_local.fsspecfs import forget_unavailable
from flowyml_s3.config import S3ArtifactStoreConfig, S3CacheStoreConfig
from flowyml_s3.stores import S3ArtifactStore, S3CacheStore

from tests.stores.conftest import no_untrusted_report_left_over  # noqa: F401  (autouse: one fixture for all)


@pytest.fixture(autouse=True)
def no_inherited_aws_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's AWS credentials, profiles or endpoint, or asks an instance-metadata service."""
    monkeypatch.delenv("FLOWYML_SIGNING_KEY", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def no_outage_from_earlier_tests() -> None:
    """Stores of later tests have the same options: an outage one test caused must not shorten the next's retries."""
    forget_unavailable()


@pytest.fixture
def s3_artifacts(moto_s3, s3_bucket) -> S3ArtifactStore:
    return S3ArtifactStore(S3ArtifactStoreConfig(url=f"s3://{s3_bucket}/artifacts", **moto_s3.store_options))


@pytest.fixture
def s3_cache(moto_s3, s3_bucket) -> S3CacheStore:
    return S3CacheStore(S3CacheStoreConfig(url=f"s3://{s3_bucket}/cache", **moto_s3.store_options))
