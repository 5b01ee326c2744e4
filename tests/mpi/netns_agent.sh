#!/bin/sh
# netns_agent.sh HOST COMMAND...: Open MPI's rsh agent for mpi_netns.sh. It
# starts the command in the network namespace that plays HOST.
host=$1
shift
case "$host" in
192.0.2.1) ns=$ADADELTA_NS_A ;;
192.0.2.2) ns=$ADADELTA_NS_B ;;
*) echo "netns_agent.sh: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
