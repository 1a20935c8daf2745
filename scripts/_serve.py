"""What the scripts that serve a local storage emulator share: options, one bucket, wait until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the servers live in tests/servers/


def serve(description: str, default_port: int, make_server: Callable[[int], Any],
          banner: Callable[[Any, str], list[str]]) -> int:
    """Start ``make_server(port)``, make the example stacks' bucket, print ``banner(server, bucket)``, wait."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--bucket", default="flowyml-local")
    args = parser.parse_args()
    with make_server(args.port) as server:
        server.make_bucket(args.bucket)
        for line in banner(server, args.bucket):
            print(line, flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0
