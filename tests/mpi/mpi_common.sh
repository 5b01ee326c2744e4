# mpi_common.sh - sourced by the MPI test wrappers (not a test itself).
# Environment (set by Makefile.am): MPIRUN, MPI_TEST_DATA, ADADELTA_MPI_REPLAY,
# ADADELTA_REPLAY, COMPARE_STATE, TEST_MPI_API.
set -u
: "${MPIRUN:?MPIRUN is not set}"
data=${MPI_TEST_DATA:-data}
failures=0

# run_mpi NP [mpirun options --] PROGRAM ARGS...: the same mpirun line for
# every test (root, oversubscription on 2 cores, OpenMP threads that sleep,
# a timeout so nothing can hang make check).
run_mpi() {
    _run_mpi_np=$1
    shift
    "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none \
        -x OMP_WAIT_POLICY=passive -x OMP_NUM_THREADS=1 --timeout 120 -np "$_run_mpi_np" "$@"
}

tmp=$(mktemp -d "${PWD}/mpi_tmp.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

ok() {
    echo "ok: $*"
}

# Extra options of a conformance case (exclusions; no case uses --finalize).
case_args() {
    case "$1" in
    *kitchen_sink) echo "--exclude-from-weight-decay gamma,bias" ;;
    *) echo "" ;;
    esac
}

# same_bytes A B WHAT
same_bytes() {
    if cmp -s "$1" "$2"; then ok "$3"; else fail "$3 ($1 and $2 differ)"; fi
}

# same_state A B WHAT: the same tensors and metadata bit for bit, the state
# format's version and checksum aside (the golden files are version 1).
same_state() {
    if "$COMPARE_STATE" --exact "$1" "$2" 2>"$tmp/same_state.err"; then
        ok "$3"
    else
        fail "$3 ($1 and $2 differ: $(cat "$tmp/same_state.err"))"
    fi
}

# matches GOT EXPECTED WHAT: the conformance tolerance (rtol 2e-5, atol 1e-6).
matches() {
    if "$COMPARE_STATE" "$1" "$2" 2e-5 1e-6 >"$tmp/cmp.log" 2>&1; then
        ok "$3"
    else
        cat "$tmp/cmp.log"
        fail "$3"
    fi
}

# every_rank_same NP PREFIX WHAT: PREFIX.<r>.st of every rank equal rank 0's.
every_rank_same() {
    r=1
    while [ "$r" -lt "$1" ]; do
        if ! cmp -s "$2.0.st" "$2.$r.st"; then
            fail "$3: rank $r's state differs from rank 0's"
            return
        fi
        r=$((r + 1))
    done
    ok "$3: all $1 ranks bit-identical"
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed"
        exit 1
    fi
    echo "all checks passed"
    exit 0
}

# conformance_case CASE NP GRADS_PATTERN EXPECTED [single]: both modes at NP
# ranks with the checksum option on; per-rank outputs (or, with "single",
# rank 0's only in sharded mode) compared across ranks, with the expected
# state and between modes.
conformance_case() {
    c=$1 np=$2 grads=$3 expected=$4 single=${5:-}
    args=$(case_args "$c")
    for mode in replicated sharded; do
        out="$tmp/$c.np$np.$mode"
        if [ "$mode" = sharded ] && [ "$single" = single ]; then
            outarg="$out.st"
        else
            outarg="$out.{rank}.st"
        fi
        start=$(date +%s)
        # shellcheck disable=SC2086
        if ! run_mpi "$np" -x ADADELTA_MPI_CHECK=1 "$ADADELTA_MPI_REPLAY" \
            --params "$data/$c/params.safetensors" --grads "$grads" \
            --config "$data/$c/config.json" $args --mode "$mode" --out "$outarg"; then
            fail "$c at $np ranks, $mode: the driver failed"
            continue
        fi
        echo "   ($c, $np ranks, $mode: $(($(date +%s) - start)) s)"
        if [ "$outarg" = "$out.st" ]; then
            [ -e "$out.1.st" ] && fail "$c: rank 1 wrote a file without {rank} in --out"
            cp "$out.st" "$out.0.st"
        else
            every_rank_same "$np" "$out" "$c at $np ranks, $mode"
        fi
        matches "$out.0.st" "$expected" "$c at $np ranks, $mode: matches the expected state"
    done
    same_bytes "$tmp/$c.np$np.replicated.0.st" "$tmp/$c.np$np.sharded.0.st" \
        "$c at $np ranks: sharded == replicated, byte for byte"
}
