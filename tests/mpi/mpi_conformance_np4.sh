#!/bin/sh
# 4 ranks: the mpi2_* cases with ranks 2 and 3 given the gradients of ranks 0
# and 1 again. The mean (a + b + a + b) / 4 is the 2-rank mean up to
# rounding, so the 2-rank expected states hold within tolerance. Sharded mode
# saves through rank 0 alone here (the other scripts write per-rank files).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for c in mpi2_defaults mpi2_accumulation mpi2_global_clipnorm mpi2_kitchen_sink; do
    mkdir -p "$tmp/g4_$c"
    for r in 0 1 2 3; do
        ln -s "$(cd "$data/$c" && pwd)/grads_rank$((r % 2)).safetensors" \
            "$tmp/g4_$c/grads_rank$r.safetensors"
    done
    conformance_case "$c" 4 "$tmp/g4_$c/grads_rank{rank}.safetensors" \
        "$data/$c/expected.safetensors" single
done
finish
