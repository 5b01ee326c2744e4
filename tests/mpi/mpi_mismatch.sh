#!/bin/sh
# Ranks that disagree fail fast, all with the same exit status, and no
# --out file appears: another config (4), other variables (4), a gradient
# file missing on one rank (3), a bad option everywhere (2).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
d=$data/mpi2_defaults
g=$data/mpi2_global_clipnorm
rs="$MPI_TEST_SRCDIR/rank_status.sh"
[ -f "$rs" ] || rs=./rank_status.sh
printf '{"rho": 0.9}\n' >"$tmp/other_config.json"

# expect NAME STATUS NP: every rank's recorded status is STATUS.
expect() {
    n=0
    for f in "$tmp"/status.*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        st=$(cat "$f")
        [ "$st" = "$2" ] || fail "$1: a rank exited with $st, expected $2"
    done
    [ "$n" -eq "$3" ] || fail "$1: $n of $3 ranks recorded a status"
    [ -e "$tmp/out.st" ] && fail "$1: --out was written despite the failure"
    [ "$failures" -eq 0 ] && ok "$1: all $3 ranks exit with $2, no --out"
    rm -f "$tmp"/status.* "$tmp/out.st"
}

# launch MPIRUN_ARGS...: runs mpirun (MPMD lines allowed), shows its output.
launch() {
    start=$(date +%s)
    # orte_abort_on_non_zero_status 0: mpirun lets every rank finish (and
    # record its status) instead of killing the others after the first
    # non-zero exit. (mpirun itself then exits 0: the ranks' own statuses
    # are what is checked.)
    "$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY=passive \
        -x OMP_NUM_THREADS=1 --timeout 60 --mca orte_abort_on_non_zero_status 0 "$@" \
        >"$tmp/log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    [ "$took" -le 20 ] || fail "took $took s: not a fast failure"
    sed 's/^/   | /' "$tmp/log" | head -20
    return $rc
}

launch -np 1 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$d/params.safetensors" \
    --grads "$d/grads_rank0.safetensors" --config "$d/config.json" --out "$tmp/out.st" \
    : -np 1 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$d/params.safetensors" \
    --grads "$d/grads_rank1.safetensors" --config "$tmp/other_config.json" --out "$tmp/out.st"
grep -q "disagree on the config" "$tmp/log" || fail "config mismatch: no clear message"
expect "config differs between ranks" 4 2

for mode in replicated sharded; do
    launch -np 1 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$d/params.safetensors" \
        --grads "$d/grads_rank0.safetensors" --mode $mode --out "$tmp/out.st" \
        : -np 2 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$g/params.safetensors" \
        --grads "$g/grads_rank1.safetensors" --mode $mode --out "$tmp/out.st"
    grep -q "disagree on the variables" "$tmp/log" || fail "variables mismatch: no clear message"
    expect "variables differ between ranks ($mode, 3 ranks)" 4 3
done

mkdir "$tmp/g"
ln -s "$(cd "$d" && pwd)/grads_rank0.safetensors" "$tmp/g/grads_rank0.safetensors"
launch -np 2 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$d/params.safetensors" \
    --grads "$tmp/g/grads_rank{rank}.safetensors" --out "$tmp/out.st"
expect "gradient file missing on rank 1" 3 2

launch -np 3 sh "$rs" "$tmp" "$ADADELTA_MPI_REPLAY" --params "$d/params.safetensors" \
    --grads "$d/grads_rank0.safetensors" --mode mirrored --out "$tmp/out.st"
expect "bad --mode" 2 3
finish
