#!/bin/sh
# run.sh - the Quick start's test command: installs what the build and the
# tests need (tools/install-deps.sh), builds and runs the whole suite in
# this tree (make check: cmocka, mpirun, pytest). Each test's log is in
# tests/**/*.log afterwards.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --quiet
exec make -j2 check
