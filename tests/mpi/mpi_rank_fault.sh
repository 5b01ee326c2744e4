#!/bin/sh
# A rank that aborts mid-run makes mpirun fail within 30 s (no hang), and the
# run resumed from the last checkpoint ends with the bytes of the
# uninterrupted run. Both modes, 2 ranks. A rank that stops calling ends the
# job through the stall watchdog.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for mode in replicated sharded; do
    run_mpi 2 "$RANK_FAULT" --calls 10 --mode $mode --out "$tmp/whole.st" ||
        fail "$mode: uninterrupted run"
    start=$(date +%s)
    run_mpi 2 "$RANK_FAULT" --calls 10 --mode $mode --ckpt "$tmp/ckpt.st" \
        --die-at 6 --die-rank 1 >"$tmp/fault.log" 2>&1
    status=$?
    took=$(($(date +%s) - start))
    if [ $status -ne 0 ] && [ $took -le 30 ]; then
        ok "$mode: rank 1 aborted, mpirun exited $status after $took s"
    else
        cat "$tmp/fault.log"
        fail "$mode: mpirun exited $status after $took s"
    fi
    run_mpi 2 "$RANK_FAULT" --calls 10 --mode $mode --resume "$tmp/ckpt.st" \
        --out "$tmp/resumed.st" >"$tmp/resume.log" 2>&1 || fail "$mode: resumed run"
    grep -q "resuming at call 6" "$tmp/resume.log" ||
        fail "$mode: the last checkpoint is not the one of call 6: $(cat "$tmp/resume.log")"
    same_bytes "$tmp/whole.st" "$tmp/resumed.st" "$mode: resumed from the checkpoint of call 6"
    rm -f "$tmp"/*.st
done
# A rank that stops calling: the others' stall watchdog ends the job within
# seconds, naming the rank where the engine can tell (shared memory).
# nodes=1: the engine for several nodes (pretend nodes of 1 rank), whose
# watchdog sees only its own node's ranks.
for shm in 1 0 nodes=1; do
    start=$(date +%s)
    case $shm in nodes=1) env="-x ADADELTA_MPI_NODE_RANKS=1" ;; *) env="-x ADADELTA_MPI_SHM=$shm" ;; esac
    # shellcheck disable=SC2086
    run_mpi 2 -x ADADELTA_MPI_TIMEOUT=2 $env "$RANK_FAULT" --calls 10 \
        --stall-at 4 --stall-rank 1 >"$tmp/stall.log" 2>&1
    status=$?
    took=$(($(date +%s) - start))
    if [ $status -ne 0 ] && [ $took -le 30 ] && grep -q "stalled for" "$tmp/stall.log"; then
        ok "shm=$shm: rank 1 stopped calling, the watchdog ended mpirun ($status) after $took s"
    else
        cat "$tmp/stall.log"
        fail "shm=$shm: mpirun exited $status after $took s"
    fi
    if [ $shm = 1 ] && ! grep -q "not arrived: 1;" "$tmp/stall.log"; then
        cat "$tmp/stall.log"
        fail "shm=1: the watchdog's message does not name rank 1"
    fi
done
finish
