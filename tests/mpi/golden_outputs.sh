#!/bin/sh
# Every replay-driver output on every case of tests/data and tests/mpi/data
# equals the golden file written before the architecture refactor
# (tests/golden/README.md), byte for byte: adadelta-replay on the single-
# process cases, adadelta-mpi-replay in both modes on the MPI cases.
. "${MPI_TEST_SRCDIR:-.}/mpi_common.sh"
golden=${GOLDEN_DIR:-$MPI_TEST_SRCDIR/../golden}
core_data=${CORE_TEST_DATA:-$MPI_TEST_SRCDIR/../data}
grep -v '^#' "$golden/cases.txt" | while read -r name ranks extra; do
    case $name in
    mpi/*)
        c=${name#mpi/}
        for mode in replicated sharded; do
            # shellcheck disable=SC2086
            run_mpi "$ranks" "$ADADELTA_MPI_REPLAY" --params "$data/$c/params.safetensors" \
                --grads "$data/$c/grads_rank{rank}.safetensors" \
                --config "$data/$c/config.json" $extra --mode "$mode" \
                --out "$tmp/$c.$mode.st" </dev/null || echo "FAIL: $name $mode: the driver failed"
            same_state "$tmp/$c.$mode.st" "$golden/$c.safetensors" "$name ($mode) == golden"
        done
        ;;
    *)
        d=$core_data/$name
        out=$tmp/$(echo "$name" | tr / _).st
        # shellcheck disable=SC2086
        "$ADADELTA_REPLAY" --params "$d/params.safetensors" --grads "$d/grads.safetensors" \
            --config "$d/config.json" $extra --out "$out" || echo "FAIL: $name: the driver failed"
        same_state "$out" "$golden/$(echo "$name" | tr / _).safetensors" "$name == golden"
        ;;
    esac
done >"$tmp/golden.log" 2>&1
cat "$tmp/golden.log"
if grep -q '^FAIL' "$tmp/golden.log"; then
    echo "$(grep -c '^FAIL' "$tmp/golden.log") check(s) failed"
    exit 1
fi
echo "all checks passed ($(grep -c '^ok' "$tmp/golden.log") outputs)"
