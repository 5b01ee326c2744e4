#!/bin/sh
# Across hosts: 2 ranks in two network namespaces joined by a veth pair, one
# rank each, Open MPI's daemons started through an rsh agent, all traffic
# over TCP (btl self,tcp: no shared memory between the ranks), so the
# reduction engine for several nodes runs (hier: a window per node, a chain
# of messages between the nodes). Runs a
# conformance case in both modes with the checksum option on and checks the
# expected state, bit-identity across ranks and sharded == replicated.
# Skips (77) where namespaces cannot be made (not root, no ip, no
# CAP_NET_ADMIN). Creates and deletes its own namespaces only.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
netns_dir=$(cd "${MPI_TEST_SRCDIR:-.}" && pwd)
. "$netns_dir/netns_hosts.sh"
cleanup() {
    netns_hosts_down
    rm -rf "$tmp"
}
trap cleanup EXIT
if ! why=$(netns_hosts_up "$tmp" 1); then
    echo "SKIP: $why"
    exit 77
fi

c=mpi2_kitchen_sink
dabs=$(cd "$data/$c" && pwd)
for mode in replicated sharded; do
    start=$(date +%s)
    # shellcheck disable=SC2046
    if ! ip netns exec "$ADADELTA_NS_A" "$MPIRUN" --allow-run-as-root \
        -np 2 --timeout 120 $(netns_mpirun_options "$tmp") \
        -x OMP_NUM_THREADS=1 -x ADADELTA_MPI_CHECK=1 \
        sh -c 'echo "rank $OMPI_COMM_WORLD_RANK in netns $(ip netns identify) on $(hostname)"; exec "$@"' sh \
        "$ADADELTA_MPI_REPLAY" --params "$dabs/params.safetensors" \
        --grads "$dabs/grads_rank{rank}.safetensors" --config "$dabs/config.json" \
        --exclude-from-weight-decay gamma,bias --mode "$mode" --verbose \
        --out "$tmp/$c.$mode.{rank}.st" 2>"$tmp/err.$mode"; then
        cat "$tmp/err.$mode"
        fail "$c across two namespaces, $mode: the run failed"
        continue
    fi
    echo "   ($mode across namespaces over TCP: $(($(date +%s) - start)) s)"
    # Two hosts of one rank each: a window per host, the chain between them.
    if grep -q "engine hier," "$tmp/err.$mode"; then
        ok "$c over TCP between namespaces, $mode: the engine for several nodes ran"
    else
        fail "$c over TCP between namespaces, $mode: engine hier expected: $(cat "$tmp/err.$mode")"
    fi
    every_rank_same 2 "$tmp/$c.$mode" "$c over TCP between namespaces, $mode"
    matches "$tmp/$c.$mode.0.st" "$dabs/expected.safetensors" \
        "$c over TCP between namespaces, $mode: matches the expected state"
done
same_bytes "$tmp/$c.replicated.0.st" "$tmp/$c.sharded.0.st" \
    "$c over TCP between namespaces: sharded == replicated"
finish
