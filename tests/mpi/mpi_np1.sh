#!/bin/sh
# mpirun -np 1 adadelta-mpi-replay gives the same bytes as adadelta-replay
# (both modes, with --finalize and with --resume), and a resumed 2-rank run
# at 2 or 3 ranks gives the same bytes in both modes (sharded mode keeps the
# loaded state).
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
for c in mpi2_kitchen_sink mpi2_accumulation mpi3_global_clipnorm; do
    args=$(case_args "$c")
    case "$c" in mpi3_*) np=3 ;; *) np=2 ;; esac
    for fin in "" --finalize; do
        common="--params $data/$c/params.safetensors --grads $data/$c/grads_rank0.safetensors --config $data/$c/config.json $args $fin"
        # shellcheck disable=SC2086
        "$ADADELTA_REPLAY" $common --out "$tmp/single.st" || fail "$c: adadelta-replay failed"
        for mode in replicated sharded; do
            # shellcheck disable=SC2086
            run_mpi 1 "$ADADELTA_MPI_REPLAY" $common --mode "$mode" --out "$tmp/np1.st" ||
                fail "$c: adadelta-mpi-replay -np 1 --mode $mode failed"
            same_bytes "$tmp/single.st" "$tmp/np1.st" \
                "$c ${fin:+(--finalize) }-np 1 $mode == adadelta-replay"
            rm -f "$tmp/np1.st"
        done
    done
    # --resume from that state, the same gradients again.
    # shellcheck disable=SC2086
    "$ADADELTA_REPLAY" --resume "$tmp/single.st" --grads "$data/$c/grads_rank0.safetensors" \
        $args --out "$tmp/single2.st" || fail "$c: adadelta-replay --resume failed"
    for mode in replicated sharded; do
        # shellcheck disable=SC2086
        run_mpi 1 "$ADADELTA_MPI_REPLAY" --resume "$tmp/single.st" \
            --grads "$data/$c/grads_rank0.safetensors" $args --mode "$mode" \
            --out "$tmp/np1r.st" || fail "$c: -np 1 --resume $mode failed"
        same_bytes "$tmp/single2.st" "$tmp/np1r.st" "$c --resume -np 1 $mode == adadelta-replay"
        # shellcheck disable=SC2086
        run_mpi "$np" -x ADADELTA_MPI_CHECK=1 "$ADADELTA_MPI_REPLAY" --resume "$tmp/single.st" \
            --grads "$data/$c/grads_rank{rank}.safetensors" $args \
            --mode "$mode" --out "$tmp/npr.$mode.st" 2>"$tmp/err" || {
            cat "$tmp/err"
            fail "$c: -np $np --resume $mode failed"
        }
    done
    same_bytes "$tmp/npr.replicated.st" "$tmp/npr.sharded.st" \
        "$c --resume at $np ranks: sharded == replicated"
    rm -f "$tmp"/npr.*
done
finish
