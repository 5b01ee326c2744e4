#!/bin/sh
# test_mpi_api (cmocka) under mpirun with 2, 3 and 4 ranks.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for np in 2 3 4; do
    start=$(date +%s)
    if run_mpi "$np" "$TEST_MPI_API"; then
        ok "test_mpi_api with $np ranks ($(($(date +%s) - start)) s)"
    else
        fail "test_mpi_api with $np ranks"
    fi
done
finish
