#!/bin/sh
# netns_bench.sh - adadelta-mpi-bench across two pretend hosts (network
# namespaces joined by a veth pair, all traffic over TCP, one rank per
# host: the most this 2-core machine runs honestly), with the engine for
# several nodes (hier) and MPI collectives (p2p) in alternating rounds, so
# the two are compared under the same drift. Needs root. Run from a built
# source tree:
#   tools/netns_bench.sh [ROUNDS] [adadelta-mpi-bench options...]
# prints the bench's JSON lines (each with its "engine") on stdout.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
[ $# -gt 0 ] && shift
netns_dir=$top/tests/mpi
. "$netns_dir/netns_hosts.sh"
tmp=$(mktemp -d) || exit 1
trap 'netns_hosts_down; rm -rf "$tmp"' EXIT
if ! why=$(netns_hosts_up "$tmp" 1); then
    echo "netns_bench.sh: $why" >&2
    exit 1
fi
bench=$top/tools/.libs/adadelta-mpi-bench
[ -x "$bench" ] || bench=$top/tools/adadelta-mpi-bench
lib="$top/lib/.libs:$top/mpi/.libs"
r=0
while [ $r -lt "$rounds" ]; do
    for shm in 1 0; do
        # shellcheck disable=SC2046
        ip netns exec "$ADADELTA_NS_A" mpirun --allow-run-as-root -np 2 \
            $(netns_mpirun_options "$tmp") -x OMP_NUM_THREADS=1 -x ADADELTA_MPI_SHM=$shm \
            -x LD_LIBRARY_PATH="$lib" "$bench" --mode replicated "$@" | grep '^{'
    done
    r=$((r + 1))
done
