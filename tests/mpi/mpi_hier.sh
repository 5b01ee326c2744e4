#!/bin/sh
# The hierarchical engine (a shared window per node, a chain between the
# nodes) on pretend nodes (ADADELTA_MPI_NODE_RANKS=<L>: nodes of L
# consecutive ranks of this machine) gives the bytes of the other engines
# (the golden files) on the MPI conformance cases: both modes, nodes of 1
# rank at 2 and 3 ranks (a chain of 2 and 3 nodes), blocking and overlapped
# steps, whole pieces and pieces of 1000 elements, and at 4 ranks nodes of
# 2 (two chains side by side), nodes of 3 + 1 (a short node: the spare
# ranks carry no part) and 4 nodes of 1, against the shared-memory engine
# on one node.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
golden=${GOLDEN_DIR:-$MPI_TEST_SRCDIR/../golden}
hier_run() { # CASE NP MODE NODE_RANKS CHUNK OUT [replay options]
    c=$1 np=$2 mode=$3 L=$4 chunk=$5 out=$6 args=$(case_args "$1")
    shift 6
    # shellcheck disable=SC2086
    run_mpi "$np" -x ADADELTA_MPI_NODE_RANKS="$L" -x ADADELTA_MPI_CHUNK_ELEMENTS="$chunk" \
        "$ADADELTA_MPI_REPLAY" --params "$data/$c/params.safetensors" \
        --grads "$grads" --config "$data/$c/config.json" $args --mode "$mode" \
        --verbose "$@" --out "$out" </dev/null >"$tmp/run.log" 2>&1 ||
        { cat "$tmp/run.log"; fail "$c np=$np $mode nodes of $L chunk=$chunk $*: the driver failed"; }
    grep -q "engine $want," "$tmp/run.log" ||
        fail "$c np=$np nodes of $L: engine $want expected, got: $(grep "engine " "$tmp/run.log" | head -1)"
}
for np in 2 3; do
    for c in mpi${np}_defaults mpi${np}_accumulation mpi${np}_global_clipnorm mpi${np}_kitchen_sink; do
        grads="$data/$c/grads_rank{rank}.safetensors"
        for mode in replicated sharded; do
            want=hier
            hier_run $c $np $mode 1 0 "$tmp/h.st"
            same_state "$tmp/h.st" "$golden/$c.safetensors" "$c $mode hier, $np nodes == golden"
            hier_run $c $np $mode 1 1000 "$tmp/h.st" --overlap --bucket-bytes 4096 --order shuffle
            same_state "$tmp/h.st" "$golden/$c.safetensors" \
                "$c $mode hier overlapped, pieces of 1000 == golden"
            rm -f "$tmp/h.st"
        done
    done
done
for c in mpi2_defaults mpi2_global_clipnorm mpi2_kitchen_sink; do
    mkdir -p "$tmp/g4_$c"
    for r in 0 1 2 3; do
        ln -sf "$(cd "$data/$c" && pwd)/grads_rank$((r % 2)).safetensors" \
            "$tmp/g4_$c/grads_rank$r.safetensors"
    done
    grads="$tmp/g4_$c/grads_rank{rank}.safetensors"
    for mode in replicated sharded; do
        want=shm
        hier_run $c 4 $mode 4 0 "$tmp/shm.st"
        want=hier
        hier_run $c 4 $mode 2 0 "$tmp/h2.st"
        same_state "$tmp/h2.st" "$tmp/shm.st" "$c $mode 4 ranks: hier, 2 nodes of 2 == shm"
        hier_run $c 4 $mode 3 1000 "$tmp/h3.st" --overlap --bucket-bytes 1 --order reverse
        same_state "$tmp/h3.st" "$tmp/shm.st" "$c $mode 4 ranks: hier, nodes of 3 + 1 == shm"
        hier_run $c 4 $mode 1 1000 "$tmp/h1.st" --overlap --order forward
        same_state "$tmp/h1.st" "$tmp/shm.st" "$c $mode 4 ranks: hier, 4 nodes of 1 == shm"
        rm -f "$tmp/shm.st" "$tmp/h1.st" "$tmp/h2.st" "$tmp/h3.st"
    done
done
finish
