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

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers (the moto helper)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table, store_vs_filesystem  # noqa: E402

TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np

    from tests.servers.moto_s3 import MotoS3

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="flowyml-bench-xdg-"))
    from flowyml_s3.config import S3ArtifactStoreConfig
    from flowyml_s3.stores import S3ArtifactStore

    size = args.size_mb * 1024 * 1024
    data = os.urandom(size)
    array = np.frombuffer(os.urandom(size), dtype="float64").copy()
    with MotoS3() as moto:
        bucket = moto.make_bucket("flowyml-bench")
        store = S3ArtifactStore(S3ArtifactStoreConfig(url=f"s3://{bucket}/store", **moto.store_options))
        rows = store_vs_filesystem(store, moto.filesystem(), f"{bucket}/raw", data, array, args.repeat,
                                   bytes_only=True)
        moto.delete_bucket(bucket)

    print_table(f"flowyml S3 artifact store vs raw s3fs on moto, {args.size_mb} MB payloads "
                f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, best of {args.repeat}; median in brackets)",
                "raw s3fs", rows, TARGET, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
