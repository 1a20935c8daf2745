"""Run a local GCS emulator for the ``gcs-local`` and ``vertex-local`` stacks.

    .venv/bin/python scripts/gcs_emulator.py            # then, in another shell:
    export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack gcs-local

It serves fake-gcs-server (in memory, 127.0.0.1 only) with the bucket the
example stacks use, until interrupted. The test suite starts its own.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.gcs_emulator import GcsEmulator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4443)
    parser.add_argument("--bucket", default="flowyml-local")
    args = parser.parse_args()
    with GcsEmulator(port=args.port) as emulator:
        emulator.make_bucket(args.bucket)
        print(f"GCS emulator on {emulator.url} with bucket gs://{args.bucket}", flush=True)
        print(f"export STORAGE_EMULATOR_HOST={emulator.url}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
