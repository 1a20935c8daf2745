"""flowyml-s3: artifact and cache stores on Amazon S3 and S3-compatible services (MinIO, moto...).

The stores are the shared fsspec implementation of flowyml-local
(:mod:`flowyml_local.fs_artifacts`, :mod:`flowyml_local.fs_cache`,
:mod:`flowyml_local.bucket_stores`) on an s3fs filesystem: same materializers,
file format, layout, integrity and trust rules as the local and gcs stores.
Nothing here imports s3fs, botocore or boto3 until a store is used.
"""

__version__ = "0.1.0"
