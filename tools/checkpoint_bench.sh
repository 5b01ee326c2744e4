#!/bin/sh
# checkpoint_bench.sh - the checkpoint figures of BENCHMARKS.md in one run:
# adadelta-mpi-bench --checkpoint at 1 and 2 ranks (both modes) and
# torch_checkpoint_bench.py, alternating (ABAB: this VM's disk and memory
# bandwidth drift), at 2^24 and 2^26 elements with every slot. Each
# program also times write() + fsync of the same bytes in the same folder.
#
#   tools/checkpoint_bench.sh [OUT.jsonl] [DIR]
#
# Run from a built tree. Writes the JSON lines to OUT (default
# docs/checkpoint_bench.jsonl) and prints a summary table.
set -eu
out=${1:-docs/checkpoint_bench.jsonl}
dir=${2:-.}
bench=${ADADELTA_MPI_BENCH:-tools/adadelta-mpi-bench}
mpirun="mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1"
: >"$out"
for log2 in 24 26; do
    n=$((1 << log2))
    for pass in 1 2; do
        for np in 1 2; do
            $mpirun -np "$np" "$bench" --checkpoint --elements "$n" --rounds 3 --dir "$dir" >>"$out"
        done
        /usr/bin/python3 "$(dirname "$0")/torch_checkpoint_bench.py" --elements "$n" --rounds 3 \
            --dir "$dir" >>"$out"
    done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    return statistics.median(xs)
for n in sorted({r["elements"] for r in rows}):
    t = [r for r in rows if r["elements"] == n and r["path"] == "torch_checkpoint"]
    ts, tl = med([r["torch_save_seconds"] for r in t]), med([r["torch_load_seconds"] for r in t])
    mb = t[0]["file_bytes"] / 1e6
    print(f"2^{n.bit_length() - 1} elements, {mb:.0f} MB: torch.save {mb / ts:.0f} MB/s, "
          f"torch.load {mb / tl:.0f} MB/s (dd in the same process {mb / med([r['dd_seconds'] for r in t]):.0f} MB/s)")
    for ranks in (1, 2):
        for mode in ("replicated", "sharded"):
            c = [r for r in rows if r["elements"] == n and r["path"] == "checkpoint"
                 and r["ranks"] == ranks and r["mode"] == mode]
            if not c:
                continue
            s, l, d = (med([r[k] for r in c]) for k in ("save_seconds", "load_seconds", "dd_seconds"))
            over = max(r["peak_rss_bytes"] - r["steady_rss_bytes"] for r in c) / 2**20
            print(f"  {ranks} rank(s) {mode:10s}: save {mb / s:5.0f} MB/s = {d / s:.2f} x dd "
                  f"({mb / d:.0f} MB/s), {ts / s:.2f} x torch.save; load {mb / l:5.0f} MB/s = "
                  f"{tl / l:.2f} x torch.load; peak RSS over steady {over:.1f} MiB")
PY
