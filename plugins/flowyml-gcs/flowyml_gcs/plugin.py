"""Registration of the GCS stores. Imports nothing but flowyml_core's hook marker."""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_artifact_stores(register):
    register(
        "gcs",
        "flowyml_gcs.stores:GcsArtifactStore",
        config="flowyml_gcs.config:GcsArtifactStoreConfig",
        summary="Step outputs on gs://bucket/prefix (gcsfs), one object each with its digest, signed pickles",
    )


@hookimpl
def register_cache_stores(register):
    register(
        "gcs",
        "flowyml_gcs.stores:GcsCacheStore",
        config="flowyml_gcs.config:GcsCacheStoreConfig",
        summary="Step results on gs://bucket/prefix (gcsfs), one atomic object per key",
    )
