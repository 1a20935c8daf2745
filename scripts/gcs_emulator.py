"""Run a local GCS emulator for the ``gcs-local`` and ``vertex-local`` stacks.

    .venv/bin/python scripts/gcs_emulator.py            # then, in another shell:
    export STORAGE_EMULATOR_HOST=http://127.0.0.1:4443
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack gcs-local

It serves fake-gcs-server (in memory, 127.0.0.1 only) with the bucket the
example stacks use, until interrupted. The test suite starts its own.
"""

from __future__ import annotations

import sys

from _serve import serve


def main() -> int:
    from tests.servers.gcs_emulator import GcsEmulator

    return serve(__doc__.splitlines()[0], 4443, lambda port: GcsEmulator(port=port), lambda server, bucket: [
        f"GCS emulator on {server.url} with bucket gs://{bucket}",
        f"export STORAGE_EMULATOR_HOST={server.url}",
    ])


if __name__ == "__main__":
    sys.exit(main())
