"""Run a local S3 API (moto) for the ``s3-local`` stack.

    .venv/bin/python scripts/s3_server.py             # then, in another shell, the lines it prints:
    export AWS_ENDPOINT_URL=http://127.0.0.1:5005 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack s3-local

It serves moto's S3 (in memory, 127.0.0.1 only) with the bucket the example
stack uses, until interrupted. moto accepts any credentials. The test suite
starts its own.
"""

from __future__ import annotations

import sys

from _serve import serve


def main() -> int:
    from tests.servers.moto_s3 import KEY, SECRET, MotoS3

    return serve(__doc__.splitlines()[0], 5005, lambda port: MotoS3(port=port), lambda server, bucket: [
        f"S3 API (moto) on {server.url} with bucket s3://{bucket}",
        f"export AWS_ENDPOINT_URL={server.url} AWS_ACCESS_KEY_ID={KEY} AWS_SECRET_ACCESS_KEY={SECRET}",
    ])


if __name__ == "__main__":
    sys.exit(main())
