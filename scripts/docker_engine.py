"""Run a Docker engine for the ``docker`` stack on a machine that cannot pull images.

    sudo .venv/bin/python scripts/docker_engine.py      # then, in another shell:
    export DOCKER_HOST=unix:///tmp/fdk-…/docker.sock  # the line it prints
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack docker

It starts a private ``dockerd`` (root only; from ``.ci/system-packages.sh``)
with the flags this machine needs (``--bridge=none --iptables=false
--ip-forward=false --ip-masq=false``: no bridge network, nothing routed), and
builds ``flowyml-dev/python:latest``, the base image the repository's
``docker`` stack names: busybox, this machine's Python and flowyml-core with
flowyml-local copied in (nothing is pulled; see tests/servers/python_image.py).
It serves until interrupted, then stops the engine and removes its data.

On a machine with Docker and network access you need none of this: set
``base_image`` and ``requirements`` in your stack instead (see
plugins/flowyml-docker/README.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers.docker_engine import DockerEngine, EngineUnavailable  # noqa: E402
from tests.servers.python_image import PYTHON_BASE_TAG, build_python_base_image  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=PYTHON_BASE_TAG, help="tag of the base image (the docker stack names this one)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the engine on `kill` too, not only on Ctrl-C
    try:
        engine = DockerEngine().start()
    except EngineUnavailable as exc:
        print(f"cannot start dockerd: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"docker engine on {engine.base_url}; building {args.tag} (about a minute)...", flush=True)
        build_python_base_image(engine.client(timeout=600), args.tag)
        print(f"ready: base image {args.tag}", flush=True)
        print(f"export DOCKER_HOST={engine.base_url}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
