#!/bin/sh
# The Quick start's first command: install what is needed (Debian 12, as
# root), build, and train the digits classifier on 2 MPI ranks.
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --quiet
make -j2 >/dev/null
exec mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
    -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=passive examples/train_digits_mpi "$@"
