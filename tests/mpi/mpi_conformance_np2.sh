#!/bin/sh
# The 2-rank conformance cases (mpi2_*) through adadelta-mpi-replay, both
# modes: expected state, bit-identity across ranks, sharded == replicated.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for c in mpi2_defaults mpi2_accumulation mpi2_global_clipnorm mpi2_kitchen_sink; do
    conformance_case "$c" 2 "$data/$c/grads_rank{rank}.safetensors" \
        "$data/$c/expected.safetensors"
done
finish
