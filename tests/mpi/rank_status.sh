#!/bin/sh
# rank_status.sh DIR PROGRAM ARGS...: runs the program and records its exit
# status in DIR/status.<rank> (Open MPI's OMPI_COMM_WORLD_RANK), so a test
# can check every rank's status, not just the one mpirun reports.
dir=$1
shift
"$@"
st=$?
echo "$st" >"$dir/status.${OMPI_COMM_WORLD_RANK:-x}"
exit "$st"
