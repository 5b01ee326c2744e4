#!/bin/sh
# install-deps.sh - the Debian 12 packages the build, the example and the
# tests need (as root, with apt-get; elsewhere it says what to install).
# Used by the Quick start's two commands, each on its own.
set -eu
pkgs="build-essential autoconf automake libtool pkg-config autoconf-archive \
libcmocka-dev libjansson-dev openmpi-bin libopenmpi-dev zlib1g-dev \
python3 python3-numpy python3-pytest python3-cffi python3-mpi4py python3-torch iproute2"
if [ "${1:-}" = --print ]; then
    echo "$pkgs"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
    echo "install-deps.sh: not root or no apt-get: install these (or their equivalents):" >&2
    echo "  $pkgs" >&2
fi
