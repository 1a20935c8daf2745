"""100 MB through the S3 artifact store vs raw s3fs, on the same moto server, same run.

Run:  .venv/bin/python bench/bench_s3.py [--size-mb 100] [--repeat 5]

Starts moto's S3 server (as the tests do) on 127.0.0.1, makes a bucket, and
times (best of ``--repeat``, median in brackets) the rows of
``_timing.store_vs_filesystem``: bytes and npy writes and reads through
``S3ArtifactStore`` against ``s3fs`` doing the same transfers. The store also
hashes the payload into the object's header (overlapped with the upload) and
checks the digest on read. Target: 1.3x, as for GCS (``bench_gcs.py``).

moto runs in a thread of this process, so the server's own work shares the
interpreter with both sides alike; absolute figures are not S3's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers (the moto helper)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import bucket_bench, store_vs_filesystem  # noqa: E402


def rows_on_moto(data: bytes, array: Any, repeat: int) -> list:
    from flowyml_s3.config import S3ArtifactStoreConfig
    from flowyml_s3.stores import S3ArtifactStore
    from tests.servers.moto_s3 import MotoS3

    with MotoS3() as moto:
        bucket = moto.make_bucket("flowyml-bench")
        store = S3ArtifactStore(S3ArtifactStoreConfig(url=f"s3://{bucket}/store", **moto.store_options))
        try:  # s3fs takes no memoryview: the raw npy write pays for a copy
            return store_vs_filesystem(store, moto.filesystem(), f"{bucket}/raw", data, array, repeat,
                                       bytes_only=True)
        finally:
            moto.delete_bucket(bucket)


def main(argv: list[str] | None = None) -> int:
    return bucket_bench(__doc__, argv, "S3", "raw s3fs on moto", rows_on_moto)


if __name__ == "__main__":
    raise SystemExit(main())
