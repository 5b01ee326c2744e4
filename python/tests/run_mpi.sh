#!/bin/sh
# The Python package's MPI tests: test_mpi.py under mpirun on 2 ranks
# (mpi4py). Exit 77 (skipped) without MPI, mpi4py, numpy or pytest.
PYTHON=${PYTHON:-/usr/bin/python3}
dir=${ADADELTA_PY_TESTS:-$(dirname "$0")}
if [ -z "$MPIRUN" ] || [ "$MPIRUN" = no ] || [ "${ADADELTA_HAVE_MPI:-yes}" = no ]; then
    echo "skipped: the MPI layer is not built"; exit 77
fi
if [ "$PYTHON" = ":" ] || ! "$PYTHON" -c 'import numpy, pytest, mpi4py' >/dev/null 2>&1; then
    echo "skipped: no Python with numpy, pytest and mpi4py (Debian: python3-mpi4py)"; exit 77
fi
if [ -n "${ADADELTA_PY_PRELOAD:-}" ]; then
    echo "skipped: a sanitizer build (run the MPI tests in a normal build)"; exit 77
fi
root=
[ "$(id -u)" = 0 ] && root=--allow-run-as-root
# the stall watchdog ends a hung collective instead of the test hanging
ADADELTA_MPI_TIMEOUT=${ADADELTA_MPI_TIMEOUT:-120}; export ADADELTA_MPI_TIMEOUT
pass=
for v in PYTHONPATH PYTHONDONTWRITEBYTECODE ADADELTA_LIBDIR ADADELTA_MPI_LIBDIR \
         ADADELTA_TEST_DATA ADADELTA_REPLAY ADADELTA_DIGITS; do
    eval "isset=\${$v+x}"
    [ -n "$isset" ] && pass="$pass -x $v"
done
exec "$MPIRUN" $root --oversubscribe --bind-to none -np 2 \
    -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=passive -x ADADELTA_MPI_TIMEOUT $pass \
    "$PYTHON" -m pytest -q -rs --color=no -p no:cacheprovider "$dir/test_mpi.py" "$@"
