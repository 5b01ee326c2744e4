# netns_hosts.sh - sourced (not run): two pretend hosts, 192.0.2.1 and
# 192.0.2.2, as network namespaces joined by a veth pair, for mpirun with
# a hostfile and an rsh agent that enters the namespace (netns_agent.sh).
# Used by mpi_netns.sh and tools/netns_bench.sh.
#
# netns_hosts_up DIR SLOTS: makes them, writes DIR/hosts (SLOTS per host)
# and DIR/agent.sh; on failure prints why on stdout and returns 1.
# netns_hosts_down: deletes them. Both need root (CAP_NET_ADMIN) and ip.
ADADELTA_NS_A=adadelta_a_$$
ADADELTA_NS_B=adadelta_b_$$
export ADADELTA_NS_A ADADELTA_NS_B
netns_va=adva$$
netns_vb=advb$$
netns_hosts_down() {
    ip netns del "$ADADELTA_NS_A" 2>/dev/null
    ip netns del "$ADADELTA_NS_B" 2>/dev/null
    ip link del "$netns_va" 2>/dev/null
}
# The mpirun options that keep Open MPI on the veth pair (call after up).
netns_mpirun_options() {
    echo "--hostfile $1/hosts --mca plm_rsh_agent $1/agent.sh --mca btl self,tcp" \
        "--mca oob_tcp_if_include $netns_va,$netns_vb --mca btl_tcp_if_include 192.0.2.0/24"
}
netns_hosts_up() {
    if ! command -v ip >/dev/null 2>&1; then
        echo "no ip command (iproute2)"
        return 1
    fi
    if ! ip netns add "$ADADELTA_NS_A" 2>"$1/err" || ! ip netns add "$ADADELTA_NS_B" 2>>"$1/err"; then
        echo "cannot create network namespaces here: $(cat "$1/err")"
        return 1
    fi
    if ! { ip link add "$netns_va" type veth peer name "$netns_vb" &&
        ip link set "$netns_va" netns "$ADADELTA_NS_A" && ip link set "$netns_vb" netns "$ADADELTA_NS_B" &&
        ip -n "$ADADELTA_NS_A" addr add 192.0.2.1/24 dev "$netns_va" &&
        ip -n "$ADADELTA_NS_B" addr add 192.0.2.2/24 dev "$netns_vb" &&
        ip -n "$ADADELTA_NS_A" link set "$netns_va" up && ip -n "$ADADELTA_NS_B" link set "$netns_vb" up &&
        ip -n "$ADADELTA_NS_A" link set lo up && ip -n "$ADADELTA_NS_B" link set lo up; } 2>"$1/err"; then
        echo "cannot set up a veth pair between namespaces: $(cat "$1/err")"
        return 1
    fi
    printf '192.0.2.1 slots=%s\n192.0.2.2 slots=%s\n' "$2" "$2" >"$1/hosts"
    # The agent must be executable (a dist tarball may lose the mode bit).
    cp "$netns_dir/netns_agent.sh" "$1/agent.sh" && chmod +x "$1/agent.sh"
}
