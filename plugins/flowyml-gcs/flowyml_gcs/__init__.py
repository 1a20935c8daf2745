"""flowyml-gcs: artifact and cache stores on Google Cloud Storage.

The stores are the shared fsspec implementation of flowyml-local
(:mod:`flowyml_local.fsstore`) on a gcsfs filesystem: same materializers,
sidecars, layout, integrity and trust rules. Nothing here imports gcsfs until a
store is used.
"""

__version__ = "0.1.0"
