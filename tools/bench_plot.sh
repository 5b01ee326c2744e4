#!/bin/sh
# bench_plot.sh - elements/s against variable size: this library, PyTorch's
# Adadelta (foreach on and off) and the memory limit; draws docs/bench.png.
#
#   tools/bench_plot.sh [MIN_LOG2 [MAX_LOG2]]      (default 10 25)
#
# Environment:
#   ADADELTA_BENCH  the adadelta-bench program (default: tools/adadelta-bench
#                   of the build tree that holds this script, else PATH)
#   PYTHON          python3 with torch (default: python3 or /usr/bin/python3,
#                   the first that imports torch); NO_TORCH=1 skips PyTorch
#   THREADS         threads for both (default 2)
#   REPEAT          runs of each program per size; the fastest is plotted
#                   (default 3: PyTorch's times vary between runs)
#   OUT_DIR         where bench.png goes (default docs)
#   DATA_DIR        where the data, bench.jsonl and bench.dat, go (OUT_DIR)
# Needs gnuplot (Debian's gnuplot-nox). One tensor per size.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
min=${1:-10}
max=${2:-25}
threads=${THREADS:-2}
repeat=${REPEAT:-3}
out=${OUT_DIR:-$top/docs}
py=${PYTHON:-}
if [ -z "$py" ]; then
    # Debian's python3-torch is for /usr/bin/python3; a python3 earlier on
    # PATH (pyenv, a venv) may not see it.
    py=python3
    for p in python3 /usr/bin/python3; do
        if "$p" -c 'import torch' >/dev/null 2>&1; then
            py=$p
            break
        fi
    done
fi

bench=${ADADELTA_BENCH:-}
if [ -z "$bench" ]; then
    if [ -x "$here/adadelta-bench" ]; then
        bench=$here/adadelta-bench
    else
        bench=adadelta-bench
    fi
fi
command -v gnuplot >/dev/null 2>&1 ||
    { echo "bench_plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

use_torch=1
if [ "${NO_TORCH:-0}" = 1 ] || ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "bench_plot.sh: no torch: plotting without PyTorch" >&2
    use_torch=0
fi

mkdir -p "$out"
data=${DATA_DIR:-$out}
mkdir -p "$data"
jsonl=$data/bench.jsonl
dat=$data/bench.dat
png=$out/bench.png
: >"$jsonl"

# Value of a numeric key in a one-line JSON object ("nan" if absent/null).
field() {
    v=$(printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([-+0-9.eE]*\)[,}].*/\1/p")
    [ -n "$v" ] && printf '%s' "$v" || printf 'nan'
}

# best "$@": runs the command $repeat times, appends every line to the
# JSONL file and prints the line with the most elements per second.
best() {
    b=
    bv=0
    i=0
    while [ "$i" -lt "$repeat" ]; do
        line=$("$@")
        printf '%s\n' "$line" >>"$jsonl"
        v=$(field "$line" elements_per_second)
        if [ -z "$b" ] || awk -v a="$v" -v b="$bv" 'BEGIN { exit !(a + 0 > b + 0) }'; then
            b=$line
            bv=$v
        fi
        i=$((i + 1))
    done
    printf '%s\n' "$b"
}

printf '# elements adadelta_eps limit_eps torch_foreach_eps torch_eps fraction_of_limit\n' >"$dat"
k=$min
while [ "$k" -le "$max" ]; do
    n=$((1 << k))
    steps=$(( (1 << 26) / n ))
    [ "$steps" -lt 20 ] && steps=20
    [ "$steps" -gt 1000 ] && steps=1000
    lib=$(best "$bench" --elements "$n" --tensors 1 --threads "$threads" --steps "$steps")
    tf=nan
    tp=nan
    if [ "$use_torch" = 1 ]; then
        limit=$(field "$lib" limit_elements_per_second)
        t1=$(best "$py" "$here/torch_bench.py" --elements "$n" --tensors 1 \
            --threads "$threads" --steps "$steps" --foreach 1 --limit "$limit")
        t0=$(best "$py" "$here/torch_bench.py" --elements "$n" --tensors 1 \
            --threads "$threads" --steps "$steps" --foreach 0 --limit "$limit")
        tf=$(field "$t1" elements_per_second)
        tp=$(field "$t0" elements_per_second)
    fi
    printf '%s %s %s %s %s %s\n' "$n" \
        "$(field "$lib" elements_per_second)" \
        "$(field "$lib" limit_elements_per_second)" "$tf" "$tp" \
        "$(field "$lib" fraction_of_limit)" >>"$dat"
    echo "bench_plot.sh: 2^$k done" >&2
    k=$((k + 1))
done

if echo 'set terminal' | gnuplot 2>&1 | grep -q pngcairo; then
    term='pngcairo size 900,600 font "Sans,11"'
else
    term='png size 900,600'
fi

curves="'$dat' using 1:3 with linespoints lw 2 dt 2 pt 6 title 'memory limit (same traffic)', '' using 1:2 with linespoints lw 2 pt 7 title 'libadadelta'"
if [ "$use_torch" = 1 ]; then
    curves="$curves, '' using 1:4 with linespoints lw 2 pt 5 title 'PyTorch Adadelta, foreach', '' using 1:5 with linespoints lw 2 pt 4 title 'PyTorch Adadelta, for-loop'"
fi

gnuplot <<EOF
set terminal $term
set output '$png'
set title "Adadelta step, float32, 1 tensor, $threads threads"
set xlabel 'elements in the variable'
set ylabel 'elements per second'
set logscale x 2
set logscale y 10
set format x '2^{%L}'
set format y '10^{%L}'
set xrange [$((1 << min)) / 1.5 : $((1 << max)) * 1.5]
set key bottom right
set grid
set datafile missing 'nan'
plot $curves
EOF
echo "bench_plot.sh: wrote $dat, $jsonl and $png" >&2
