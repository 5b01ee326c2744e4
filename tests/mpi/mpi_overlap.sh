#!/bin/sh
# adadelta-mpi-replay --overlap (begin_step, grad_ready per variable,
# end_step) gives the bytes of the blocking step (the golden files) on the
# MPI conformance cases: both modes, both engines (shared memory and MPI
# collectives, the latter also in chunks of 1000 elements), bucket sizes
# from one variable per bucket to one bucket, backward, forward and
# per-rank shuffled orders.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
golden=${GOLDEN_DIR:-$MPI_TEST_SRCDIR/../golden}
overlap_case() { # CASE NP MODE SHM CHUNK BUCKET ORDER
    c=$1 args=$(case_args "$1")
    # shellcheck disable=SC2086
    run_mpi "$2" -x ADADELTA_MPI_SHM="$4" -x ADADELTA_MPI_CHUNK_ELEMENTS="$5" \
        "$ADADELTA_MPI_REPLAY" --params "$data/$c/params.safetensors" \
        --grads "$data/$c/grads_rank{rank}.safetensors" --config "$data/$c/config.json" \
        $args --mode "$3" --overlap --bucket-bytes "$6" --order "$7" --out "$tmp/ov.st" \
        </dev/null || fail "$c $3 shm=$4 chunk=$5 bucket=$6 $7: the driver failed"
    same_state "$tmp/ov.st" "$golden/$c.safetensors" "$c $3 shm=$4 chunk=$5 bucket=$6 $7 == apply"
    rm -f "$tmp/ov.st"
}
for c in mpi2_defaults mpi2_accumulation mpi2_global_clipnorm mpi2_kitchen_sink; do
    for mode in replicated sharded; do
        overlap_case $c 2 $mode 1 0 1 shuffle
        overlap_case $c 2 $mode 0 0 4096 reverse
    done
done
for c in mpi3_defaults mpi3_accumulation mpi3_global_clipnorm mpi3_kitchen_sink; do
    for mode in replicated sharded; do
        overlap_case $c 3 $mode 1 0 100000000 forward
        overlap_case $c 3 $mode 0 1000 1 shuffle
    done
done
finish
