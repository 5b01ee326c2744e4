#!/bin/sh
# The Python package's single-process tests (pytest). Run by `make check`
# with the environment of python/Makefile.am; by hand from a built tree:
#   PYTHONPATH=python /usr/bin/python3 -m pytest python/tests
# Exit 77 (skipped) without a Python that has numpy and pytest.
PYTHON=${PYTHON:-/usr/bin/python3}
dir=${ADADELTA_PY_TESTS:-$(dirname "$0")}
if [ "$PYTHON" = ":" ] || ! "$PYTHON" -c 'import numpy, pytest' >/dev/null 2>&1; then
    echo "skipped: no Python with numpy and pytest (${PYTHON}; Debian: python3-numpy python3-pytest)"
    exit 77
fi
# A sanitizer build: the runtimes first (the libraries are dlopen'ed), and
# no leak report (the interpreter's own allocations would fill it).
if [ -n "${ADADELTA_PY_PRELOAD:-}" ]; then
    LD_PRELOAD=$ADADELTA_PY_PRELOAD; export LD_PRELOAD
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}; export ASAN_OPTIONS
fi
exec "$PYTHON" -m pytest -q -rs --color=no -p no:cacheprovider "$dir" --ignore="$dir/test_mpi.py" "$@"
