#!/usr/bin/env bash
# Set up everything contivctl needs on Debian 12, as root; safe to run again.
#   - Debian packages: python3 + venv, iproute2, nftables, conntrack, iptables,
#     the reference CNI plugins, ping, podman, systemd-analyze (apt-get update only when
#     something is missing)
#   - a virtual environment in .venv with contivctl installed (re-installed only
#     when setup.cfg/pyproject.toml changed)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (network namespaces, links and packages need it)" >&2
    exit 2
fi

PKGS=(python3 python3-venv python3-pip iproute2 nftables conntrack iptables
      containernetworking-plugins iputils-ping ca-certificates procps ethtool
      podman runc busybox-static    # a real container runtime for the CNI tests
      systemd)                      # systemd-analyze: install node's units are verified
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh
apt_ensure setup "${PKGS[@]}"

PY=/usr/bin/python3   # Debian's interpreter: the one the installed CNI plugin will use
stamp=.venv/.contivctl-setup
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing contivctl into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/contivctl --version))" >&2
