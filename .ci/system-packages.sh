#!/usr/bin/env bash
# Install the Debian packages the test suite's real servers need:
#   docker.io        -> dockerd (a real engine, started by tests/servers/docker_engine.py)
#   docker-registry  -> a local OCI registry (docker-registry serve cfg.yml)
#   busybox-static   -> /bin/busybox, a static binary used to build a base image FROM scratch
#   graphviz         -> dot, which renders the DOT output of `flowyml show` in its tests
# Run as root (CI runs it as root). Idempotent: does nothing when all are installed.
set -euo pipefail

PACKAGES=(docker.io docker-registry busybox-static graphviz)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-packages: all present (${PACKAGES[*]})"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-packages: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
