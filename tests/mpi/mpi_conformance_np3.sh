#!/bin/sh
# The 3-rank conformance cases (mpi3_*), as mpi_conformance_np2.sh.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for c in mpi3_defaults mpi3_accumulation mpi3_global_clipnorm mpi3_kitchen_sink; do
    conformance_case "$c" 3 "$data/$c/grads_rank{rank}.safetensors" \
        "$data/$c/expected.safetensors"
done
finish
