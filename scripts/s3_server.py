"""Run a local S3 API (moto) for the ``s3-local`` stack.

    .venv/bin/python scripts/s3_server.py             # then, in another shell, the lines it prints:
    export AWS_ENDPOINT_URL=http://127.0.0.1:5005 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack s3-local

It serves moto's S3 (in memory, 127.0.0.1 only) with the bucket the example
stack uses, until interrupted. moto accepts any credentials. The test suite
starts its own.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.moto_s3 import KEY, SECRET, MotoS3  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--bucket", default="flowyml-local")
    args = parser.parse_args()
    with MotoS3(port=args.port) as server:
        server.make_bucket(args.bucket)
        print(f"S3 API (moto) on {server.url} with bucket s3://{args.bucket}", flush=True)
        print(f"export AWS_ENDPOINT_URL={server.url} AWS_ACCESS_KEY_ID={KEY} AWS_SECRET_ACCESS_KEY={SECRET}",
              flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
