"""100 MB artifacts through the local artifact store vs a raw file write/read, same run.

Run:  .venv/bin/python bench/bench_artifacts.py [--size-mb 100] [--repeat 15] [--dir PATH]

Cases (each the best of ``--repeat`` runs, store and raw alternating; the median
is shown too):

* bytes write: ``store.materialize(data)`` vs ``open(p, "wb").write(data)`` on a new file
* bytes read:  ``store.load(uri)``       vs ``open(p, "rb").read()``
* npy write:   ``store.materialize(arr)`` vs ``numpy.save(p, arr)``
* npy read:    ``store.load(uri)``        vs ``numpy.load(p)``

The store also computes the payload's digest on write and checks it on read
(the sidecar's integrity record; see ``flowyml_local/digests.py``): XXH3-128
for these safe formats, BLAKE3 for pickles, in a helper thread while the bytes
move. The ``alone`` rows time each hash on the same bytes; ``sha256 alone``
shows why it is not SHA-256: on a machine whose page-cache writes are faster
than SHA-256, a store that checks SHA-256 cannot come near a raw write.
Target: 1.2x.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path
import tempfile
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import FreshArtifacts, compare, print_table, timed  # noqa: E402

TARGET = 1.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)

    import numpy as np

    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="flowyml-bench-xdg-"))
    from flowyml_local.artifact_store import LocalArtifactStore, LocalArtifactStoreConfig

    size = args.size_mb * 1024 * 1024
    base = tempfile.mkdtemp(prefix="flowyml-bench-art-", dir=args.dir)
    try:
        store = LocalArtifactStore(LocalArtifactStoreConfig(path=os.path.join(base, "store")))
        raw_dir = os.path.join(base, "raw")
        os.makedirs(raw_dir)
        data = os.urandom(size)
        array = np.frombuffer(os.urandom(size), dtype="float64").copy()
        raw_path = os.path.join(raw_dir, "data.bin")
        npy_path = os.path.join(raw_dir, "data.npy")

        def fresh(path: str) -> Callable[[], None]:
            def remove() -> None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            return remove

        def raw_write() -> None:
            with open(raw_path, "wb") as fh:
                fh.write(data)

        def raw_read() -> bytes:
            with open(raw_path, "rb") as fh:
                return fh.read()

        uri_bytes = store.materialize(data, "payload", "bench", "bytes")
        uri_npy = store.materialize(array, "array", "bench", "npy")
        raw_write()
        np.save(npy_path, array)
        assert store.load(uri_bytes) == data and np.array_equal(store.load(uri_npy), array, equal_nan=True)

        writes = FreshArtifacts(store)
        rows = [
            ("bytes write", *compare(writes.write(data, "bytes"), raw_write, args.repeat, writes.drop("bytes"),
                                     fresh(raw_path))),
            ("bytes read", *compare(lambda: store.load(uri_bytes), raw_read, args.repeat)),
            ("npy write", *compare(writes.write(array, "npy"), lambda: np.save(npy_path, array), args.repeat,
                                   writes.drop("npy"), fresh(npy_path))),
            ("npy read", *compare(lambda: store.load(uri_npy), lambda: np.load(npy_path), args.repeat)),
        ]
        writes.drop_all()
        import blake3
        import xxhash

        hashes = [("xxh3-128 alone", timed(lambda: xxhash.xxh3_128(data).digest(), args.repeat), "safe formats' digest"),
                  ("blake3 alone", timed(lambda: blake3.blake3(data).digest(), args.repeat), "pickles' digest"),
                  ("sha256 alone", timed(lambda: hashlib.sha256(data).digest(), args.repeat), "for comparison")]

        print_table(f"flowyml local artifact store, {args.size_mb} MB payloads (python {sys.version.split()[0]}, "
                    f"{os.cpu_count()} cpus, best of {args.repeat}; median in brackets)", "raw", rows, TARGET)
        for name, (best, median), what in hashes:
            print(f"{name:<14}{best:>8.4f}s [{median:.3f}]  ({what}, {size / best / 1e9:.2f} GB/s on one core)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
