#!/bin/sh
# test_mpi_checkpoint (cmocka) under mpirun with 1, 2, 3 and 4 ranks: the
# file any rank count writes is the single process's, byte for byte; and 4
# ranks on two pretend nodes (the engine for several nodes).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for np in 1 2 3 4; do
    start=$(date +%s)
    if run_mpi "$np" "$TEST_MPI_CHECKPOINT"; then
        ok "test_mpi_checkpoint with $np ranks ($(($(date +%s) - start)) s)"
    else
        fail "test_mpi_checkpoint with $np ranks"
    fi
done
run_mpi 4 -x ADADELTA_MPI_NODE_RANKS=2 "$TEST_MPI_CHECKPOINT" ||
    fail "test_mpi_checkpoint with 4 ranks on 2 pretend nodes"
finish
