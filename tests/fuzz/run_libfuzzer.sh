#!/bin/sh
# run_libfuzzer.sh - builds the libFuzzer harnesses with clang (libFuzzer,
# AddressSanitizer, UndefinedBehaviorSanitizer) against the library sources
# and runs each one for a given time over a copy of its seed corpus.
#
#   tests/fuzz/run_libfuzzer.sh [SECONDS [HARNESS...]]
#
# SECONDS defaults to 600 per harness; HARNESS is safetensors and/or config
# (default both, run one after the other; set PARALLEL=1 to run them at the
# same time). Work files go to $FUZZ_WORK (default /tmp/adadelta-fuzz):
# the binaries, the growing corpus (corpus-<h>/), crash reproducers
# (crash-*, leak-*, timeout-*) and the log (<h>.log). Each harness has a
# dictionary of its format's tokens (<h>.dict). Needs clang and
# libclang-rt-14-dev (Debian); uses clang's -fopenmp when it works, else
# builds with OpenMP pragmas ignored (the library does not need OpenMP to
# be correct). Exit status: 0 when no harness found anything.
set -eu
secs=${1:-600}
[ $# -gt 0 ] && shift
harnesses=${*:-safetensors config}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${FUZZ_WORK:-/tmp/adadelta-fuzz}
CC=${CLANG:-clang}
mkdir -p "$work"

omp=-fopenmp
if ! echo 'int main(void){return 0;}' | $CC -fopenmp -x c - -o "$work/omp-probe" 2>/dev/null; then
    omp="-Wno-unknown-pragmas -I$work/ompstub"
    mkdir -p "$work/ompstub"
    cat > "$work/ompstub/omp.h" <<'STUB'
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
static inline void omp_set_num_threads(int n) { (void)n; }
STUB
fi
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -ffp-contract=off -Wno-pass-failed $omp -I$top/lib"
libsrc=$(ls "$top"/lib/*.c "$top"/lib/kernels/*.c)

status=0
pids=
for h in $harnesses; do
    echo "building fuzz_$h"
    # shellcheck disable=SC2086
    $CC $flags -o "$work/fuzz_$h" "$here/fuzz_$h.c" $libsrc -ljansson -lm
    mkdir -p "$work/corpus-$h"
    cp "$here/corpus_$h"/* "$work/corpus-$h/"
done
run() {
    h=$1
    cd "$work"
    echo "fuzz_$h: running for $secs s (log: $work/$h.log)"
    # -jobs=1 keeps it to one process; the corpus dir collects new inputs.
    ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
        ./fuzz_$h -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -dict="$here/$h.dict" -artifact_prefix="$work/$h-" \
        "corpus-$h" > "$h.log" 2>&1
}
for h in $harnesses; do
    if [ "${PARALLEL:-0}" = 1 ]; then
        (run "$h") & pids="$pids $!"
    else
        run "$h" || status=1
    fi
done
for p in $pids; do
    wait "$p" || status=1
done
for h in $harnesses; do
    echo "== fuzz_$h"
    grep -E '^stat::number_of_executed_units|^stat::peak_rss|^#[0-9]+ *DONE|ERROR|SUMMARY' "$work/$h.log" || true
    ls "$work" | grep -E "^$h-(crash|leak|timeout|oom)-" || echo "no crash/leak/timeout reproducers"
done
exit $status
