#!/bin/sh
# mpi_bench_plot.sh - the data-parallel step against its limits and its
# PyTorch peer, per size, 2 ranks: this library (blocking step, gradients
# copied and zero copy), a bare MPI_Allreduce, the shared-memory reduction
# limit (all from adadelta-mpi-bench, timed in one run), and PyTorch DDP
# over gloo + torch.optim.Adadelta (tools/torch_ddp_bench.py), the two
# programs alternating size by size so a slow phase of this VM hits both.
# Draws docs/mpi_bench.png (seconds per step against elements).
#
#   tools/mpi_bench_plot.sh [MIN_LOG2 [MAX_LOG2]]      (default 14 25)
#
# Environment: MPI_BENCH (default tools/adadelta-mpi-bench beside this
# script), PYTHON (a python3 with torch; /usr/bin/python3 by default),
# NO_TORCH=1, MODE (replicated|sharded, default replicated), OUT_DIR
# (default docs), DATA_DIR (where mpi_bench.jsonl goes; default OUT_DIR),
# PLOT_ONLY=1 (draw from an existing mpi_bench.jsonl; the docs' own data:
# cat docs/mpi_bench_replicated.jsonl > DIR/mpi_bench.jsonl).
# Needs gnuplot (Debian's gnuplot-nox).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
min=${1:-14}
max=${2:-25}
mode=${MODE:-replicated}
out=${OUT_DIR:-$top/docs}
data=${DATA_DIR:-$out}
py=${PYTHON:-/usr/bin/python3}
bench=${MPI_BENCH:-$here/adadelta-mpi-bench}
mpirun="mpirun --allow-run-as-root -np 2"
command -v gnuplot >/dev/null 2>&1 ||
    { echo "mpi_bench_plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
use_torch=1
if [ "${NO_TORCH:-0}" = 1 ] || ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "mpi_bench_plot.sh: no torch: plotting without PyTorch" >&2
    use_torch=0
fi
mkdir -p "$out" "$data"
jsonl=$data/mpi_bench.jsonl
[ "${PLOT_ONLY:-0}" = 1 ] || : >"$jsonl" # PLOT_ONLY=1: redraw from mpi_bench.jsonl
k=$min
[ "${PLOT_ONLY:-0}" = 1 ] && k=$((max + 1))
while [ "$k" -le "$max" ]; do
    n=$((1 << k))
    $mpirun "$bench" --elements $n --threads 1 --mode "$mode" --no-overlap | tee -a "$jsonl"
    if [ $use_torch = 1 ]; then
        "$py" "$here/torch_ddp_bench.py" --elements $n --threads 1 | tee -a "$jsonl"
    fi
    k=$((k + 1))
done
dat=$data/mpi_bench.dat
"$py" - "$jsonl" "$dat" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    r = rows.setdefault(d["elements"], {})
    if d["library"] == "adadelta-mpi":
        r.update(ours=d["step_seconds"], zc=d["step_zero_copy_seconds"],
                 ar=d["allreduce_seconds"], shm=d["shm_limit_seconds"])
    else:
        r["ddp"] = d["step_seconds"]
with open(sys.argv[2], "w") as f:
    f.write("# elements ours ours_zero_copy allreduce shm_limit ddp_gloo (seconds per step)\n")
    for n in sorted(rows):
        r = rows[n]
        f.write("%d %s\n" % (n, " ".join(str(r.get(k, "NaN"))
                                         for k in ("ours", "zc", "ar", "shm", "ddp"))))
EOF
gnuplot <<EOF
set terminal pngcairo size 900,560
set output "$out/mpi_bench.png"
set logscale x 2
set logscale y 10
set format x "2^{%L}"
set format y "10^{%L}"
set xlabel "elements (float32, one tensor)"
set ylabel "seconds per step (2 ranks x 1 thread)"
set key top left
set grid
plot "$dat" using 1:2 with linespoints title "adadelta-mpi ($mode)", \
     "$dat" using 1:3 with linespoints title "adadelta-mpi, zero-copy gradients", \
     "$dat" using 1:4 with linespoints title 'bare MPI\_Allreduce', \
     "$dat" using 1:5 with linespoints title "shared-memory reduction limit", \
     "$dat" using 1:6 with linespoints title "PyTorch DDP (gloo) + Adadelta"
EOF
echo "wrote $out/mpi_bench.png and $dat"
