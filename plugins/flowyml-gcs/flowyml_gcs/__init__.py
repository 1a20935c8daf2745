"""flowyml-gcs: artifact and cache stores on Google Cloud Storage.

The stores are the shared fsspec implementation of flowyml-local
(:mod:`flowyml_local.fs_artifacts`, :mod:`flowyml_local.fs_cache`) on a gcsfs
filesystem: same materializers, file format, layout, integrity and trust rules. Nothing here imports gcsfs until a
store is used.
"""

__version__ = "0.1.0"
