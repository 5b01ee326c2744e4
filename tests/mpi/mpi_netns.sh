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
ADADELTA_NS_A=adadelta_a_$$
ADADELTA_NS_B=adadelta_b_$$
export ADADELTA_NS_A ADADELTA_NS_B
va=adva$$
vb=advb$$
cleanup() {
    ip netns del "$ADADELTA_NS_A" 2>/dev/null
    ip netns del "$ADADELTA_NS_B" 2>/dev/null
    ip link del "$va" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: no ip command (iproute2)"
    exit 77
fi
if ! ip netns add "$ADADELTA_NS_A" 2>"$tmp/err" || ! ip netns add "$ADADELTA_NS_B" 2>>"$tmp/err"; then
    echo "SKIP: cannot create network namespaces here: $(cat "$tmp/err")"
    exit 77
fi
if ! { ip link add "$va" type veth peer name "$vb" &&
    ip link set "$va" netns "$ADADELTA_NS_A" && ip link set "$vb" netns "$ADADELTA_NS_B" &&
    ip -n "$ADADELTA_NS_A" addr add 192.0.2.1/24 dev "$va" &&
    ip -n "$ADADELTA_NS_B" addr add 192.0.2.2/24 dev "$vb" &&
    ip -n "$ADADELTA_NS_A" link set "$va" up && ip -n "$ADADELTA_NS_B" link set "$vb" up &&
    ip -n "$ADADELTA_NS_A" link set lo up && ip -n "$ADADELTA_NS_B" link set lo up; } 2>"$tmp/err"; then
    echo "SKIP: cannot set up a veth pair between namespaces: $(cat "$tmp/err")"
    exit 77
fi
printf '192.0.2.1 slots=1\n192.0.2.2 slots=1\n' >"$tmp/hosts"
agent="$MPI_TEST_SRCDIR/netns_agent.sh"
[ -f "$agent" ] || agent=./netns_agent.sh
agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
# The agent must be executable (a dist tarball may lose the mode bit).
cp "$agent" "$tmp/agent.sh" && chmod +x "$tmp/agent.sh"

c=mpi2_kitchen_sink
dabs=$(cd "$data/$c" && pwd)
for mode in replicated sharded; do
    start=$(date +%s)
    if ! ip netns exec "$ADADELTA_NS_A" "$MPIRUN" --allow-run-as-root --hostfile "$tmp/hosts" \
        -np 2 --timeout 120 --mca plm_rsh_agent "$tmp/agent.sh" --mca btl self,tcp \
        --mca oob_tcp_if_include "$va,$vb" --mca btl_tcp_if_include 192.0.2.0/24 \
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
