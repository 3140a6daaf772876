#!/usr/bin/env bash
# Build FD.io VPP from a source tree and install it under PREFIX, as this
# project needs it, on Debian 12 (as root). Usage:
#
#   scripts/vpp-build.sh SRC_DIR [PREFIX]      (PREFIX defaults to /opt/vpp)
#
# SRC_DIR is a VPP source tree (a git checkout, or a `git archive` of one: then
# SRC_DIR/src/scripts/.version must hold `git describe --long --match "v*"`,
# or VPP_VERSION must give it). Safe to run again: packages are installed only
# when missing, the build directory (BUILD_DIR, default SRC_DIR/build) is
# reused, the source change below is made once. ~30 minutes on 2 cores; the
# prefix takes ~480 MB. Then: VPP_PREFIX=PREFIX (or PREFIX/bin on PATH).
# docs/vpp.md, "Getting VPP", says why each choice below.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 SRC_DIR [PREFIX]" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd)
PREFIX=${2:-/opt/vpp}
BUILD_DIR=${BUILD_DIR:-$SRC/build}
if [ "$(id -u)" -ne 0 ]; then
    echo "vpp-build: run as root (it installs Debian packages and writes $PREFIX)" >&2
    exit 2
fi
if [ ! -f "$SRC/src/CMakeLists.txt" ] || [ ! -d "$SRC/src/vlib" ]; then
    echo "vpp-build: $SRC is not a VPP source tree (no src/CMakeLists.txt, src/vlib)" >&2
    exit 2
fi
case "$PREFIX" in
    /*) ;;
    *) echo "vpp-build: PREFIX $PREFIX must be an absolute path" >&2; exit 2 ;;
esac

# Build dependencies. libpcap: the BPF trace filter `contivctl trace` uses.
PKGS=(build-essential cmake ninja-build libssl-dev python3-dev python3-ply libnl-3-dev
      libnl-route-3-dev libmnl-dev libpcap-dev libunwind-dev libiberty-dev pkg-config git)
# shellcheck source=lib/apt.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"
apt_ensure vpp-build "${PKGS[@]}"

# VPP's cmake stops without a version: from git, VPP_VERSION, or the file.
VERSION_FILE="$SRC/src/scripts/.version"
if [ -n "${VPP_VERSION:-}" ]; then
    printf '%s\n' "$VPP_VERSION" > "$VERSION_FILE"
elif [ ! -s "$VERSION_FILE" ]; then
    if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$SRC" describe --long --match "v*" > "$VERSION_FILE"
    else
        echo "vpp-build: $SRC has no .git: write \`git describe --long --match \"v*\"\` of its" \
             "commit to $VERSION_FILE, or set VPP_VERSION" >&2
        exit 2
    fi
fi

# One change to VPP's main loop (docs/vpp.md, "Many af_packet interfaces"):
# vlib_file_poll goes back to epoll_wait for as long as a call fills its 16
# events, but an af_packet socket stays readable until the af-packet-input node
# -- which runs only once the poll returns -- hands its ring block back; with 16
# of them ready at once the main thread never leaves the poll (the API and CLI
# stop answering; seen at 70-85 pods on one node). At most 4 rounds here.
FILE_C="$SRC/src/vlib/file.c"
if grep -q 'contiv: bounded re-poll' "$FILE_C"; then
    :
elif grep -q '^  if (n_fds_ready == ARRAY_LEN (epoll_events))$' "$FILE_C" &&
     [ "$(grep -c '^  u8 slept = 0;$' "$FILE_C")" = 1 ]; then
    sed -i -e 's|^  if (n_fds_ready == ARRAY_LEN (epoll_events))$|  if (n_fds_ready == ARRAY_LEN (epoll_events) \&\& ++n_rounds < 4) /* contiv: bounded re-poll */|' \
           -e 's|^  u8 slept = 0;$|  u8 slept = 0;\n  u8 n_rounds = 0; /* contiv: bounded re-poll */|' "$FILE_C"
    echo "vpp-build: bounded vlib_file_poll's re-poll (src/vlib/file.c)" >&2
else
    echo "vpp-build: warning: src/vlib/file.c is not the one this script knows; its re-poll is" \
         "left as it is (docs/vpp.md, \"Many af_packet interfaces\")" >&2
fi

# Release build, no DPDK (it is skipped by itself without its sources), and
# without the plugins that do not build with GCC 12 (unknown names are
# rejected, so the list is exact). /usr/bin first: vppapigen runs with the
# system Python and its ply.
mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
export PATH=/usr/bin:$PATH
if [ ! -f build.ninja ]; then
    cmake -G Ninja "$SRC/src" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
          -DVPP_EXCLUDED_PLUGINS=http,hs_apps,http_static,quic,vperf,prom,mactime
fi
# `ninja install` alone: a `ninja` and then `ninja install` builds most twice
ninja install
echo "vpp-build: VPP $(cat "$VERSION_FILE") installed under $PREFIX; use VPP_PREFIX=$PREFIX" >&2
