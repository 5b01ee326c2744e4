#!/bin/sh
# float64, float16 and bfloat16 variables through the MPI layer: the core's
# dtype suites (tests/data/f64, f16, bf16: numpy's float64 and float16 and
# torch's bfloat16 runs of Keras's formulas) with the same gradients on
# every rank. The mean of R equal contributions is exact at R = 2 and 4
# (float64 pairs, and the 16-bit dtypes' float32 words), so every case must
# give its expected state bit for bit, on every rank, in both modes and
# every engine (shm, p2p, hier), and sharded == replicated byte for byte.
# test_mpi_dtypes first (below).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
suites=${CORE_TEST_DATA:?CORE_TEST_DATA is not set}

# test_mpi_dtypes (cmocka): rank-dependent gradients against a reference
# in the test, large variables over several ranks' ranges.
for np in 2 3 4; do
    if run_mpi "$np" "${TEST_MPI_DTYPES:?}"; then
        ok "test_mpi_dtypes with $np ranks"
    else
        fail "test_mpi_dtypes with $np ranks"
    fi
done

case_options() {
    case "$1" in
    */kitchen_sink) echo "--exclude-from-weight-decay gamma,bias" ;;
    */weight_decay) echo "--exclude-from-weight-decay bias,gamma" ;;
    */ema_finalize) echo "--finalize" ;;
    *) echo "" ;;
    esac
}

# dtype_case DIR NP LABEL [ENV...]: both modes, exact against expected.
dtype_case() {
    dir=$1 np=$2 label=$3
    shift 3
    name=$(basename "$(dirname "$dir")")/$(basename "$dir")
    out="$tmp/$(echo "$name.$label" | tr '/' '_')"
    opts=$(case_options "$dir")
    for mode in replicated sharded; do
        env_args=""
        for e in "$@"; do env_args="$env_args -x $e"; done
        # shellcheck disable=SC2086
        if ! run_mpi "$np" -x ADADELTA_MPI_CHECK=1 $env_args "$ADADELTA_MPI_REPLAY" \
            --params "$dir/params.safetensors" --grads "$dir/grads.safetensors" \
            --config "$dir/config.json" $opts --mode "$mode" \
            --out "$out.$mode.{rank}.st" >"$out.log" 2>&1; then
            cat "$out.log"
            fail "$name at $np ranks ($label), $mode: the driver failed"
            continue
        fi
        r=1
        while [ "$r" -lt "$np" ]; do
            cmp -s "$out.$mode.0.st" "$out.$mode.$r.st" ||
                fail "$name at $np ranks ($label), $mode: rank $r differs from rank 0"
            r=$((r + 1))
        done
        if "$COMPARE_STATE" "$out.$mode.0.st" "$dir/expected.safetensors" 0 0 \
            >"$out.cmp" 2>&1; then
            ok "$name at $np ranks ($label), $mode: the expected state bit for bit"
        else
            cat "$out.cmp"
            fail "$name at $np ranks ($label), $mode: differs from the expected state"
        fi
    done
    same_bytes "$out.replicated.0.st" "$out.sharded.0.st" \
        "$name at $np ranks ($label): sharded == replicated"
}

for suite in f64 f16 bf16; do
    for dir in "$suites/$suite"/*/; do
        dtype_case "${dir%/}" 2 shm
    done
done
# The other engines and 4 ranks on the cases that mix dtypes and features;
# odd chunks are made even for float64 pairs.
for c in f64/mixed f64/kitchen_sink bf16/mixed_f16_bf16 f16/loss_scale_optimizer_clip_accum \
    bf16/global_clipnorm_mixed bf16/kitchen_sink; do
    dtype_case "$suites/$c" 4 p2p ADADELTA_MPI_SHM=0 ADADELTA_MPI_CHUNK_ELEMENTS=7
    dtype_case "$suites/$c" 4 hier ADADELTA_MPI_NODE_RANKS=2
done
finish
