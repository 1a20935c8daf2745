"""Registration of the S3 stores. Imports nothing but flowyml_core's hook marker."""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_artifact_stores(register):
    register(
        "s3",
        "flowyml_s3.stores:S3ArtifactStore",
        config="flowyml_s3.config:S3ArtifactStoreConfig",
        summary="Step outputs on s3://bucket/prefix (s3fs), one object each with its digest, signed pickles",
    )


@hookimpl
def register_cache_stores(register):
    register(
        "s3",
        "flowyml_s3.stores:S3CacheStore",
        config="flowyml_s3.config:S3CacheStoreConfig",
        summary="Step results on s3://bucket/prefix (s3fs), one atomic object per key",
    )
