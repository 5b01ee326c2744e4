#!/bin/sh
# test_mpi_api, test_mpi_overlap and test_mpi_compression (cmocka) under
# mpirun with 2, 3 and 4
# ranks, and with 4 ranks on two pretend nodes (ADADELTA_MPI_NODE_RANKS=2:
# every case through the engine for several nodes).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for prog in "$TEST_MPI_API" "$TEST_MPI_OVERLAP" "$TEST_MPI_COMPRESSION"; do
    for np in 2 3 4; do
        start=$(date +%s)
        if run_mpi "$np" "$prog"; then
            ok "$(basename "$prog") with $np ranks ($(($(date +%s) - start)) s)"
        else
            fail "$(basename "$prog") with $np ranks"
        fi
    done
    if run_mpi 4 -x ADADELTA_MPI_NODE_RANKS=2 "$prog"; then
        ok "$(basename "$prog") with 4 ranks on 2 pretend nodes"
    else
        fail "$(basename "$prog") with 4 ranks on 2 pretend nodes"
    fi
done
finish
