#!/bin/sh
# The shared libraries export exactly the functions their installed headers
# declare (ADADELTA_EXTERN / ADADELTA_MPI_EXTERN): no internal symbol
# (adadelta__*, kernels, the safetensors module) is part of the ABI.
set -u
top=${ADADELTA_TOP_BUILDDIR:-..}
src=${ADADELTA_SRCDIR:-..}
status=0
check() { # LIBRARY HEADER MACRO
    if [ ! -f "$1" ]; then
        echo "skip: $1 not built"
        return
    fi
    nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u >exported.tmp
    sed -n "s/^$3 [^(]*[ *]\([a-z_0-9]*\)(.*/\1/p" "$2" | sort -u >declared.tmp
    extra=$(comm -23 exported.tmp declared.tmp)
    missing=$(comm -13 exported.tmp declared.tmp)
    if [ -n "$extra" ]; then
        echo "FAIL: $1 exports what $2 does not declare: $extra"
        status=1
    fi
    if [ -n "$missing" ]; then
        echo "FAIL: $2 declares what $1 does not export: $missing"
        status=1
    fi
    [ -z "$extra$missing" ] && echo "ok: $1 exports the $(wc -l <exported.tmp) functions of $2"
    rm -f exported.tmp declared.tmp
}
check "$top/lib/.libs/libadadelta.so" "$src/lib/adadelta.h" ADADELTA_EXTERN
check "$top/mpi/.libs/libadadelta_mpi.so" "$src/mpi/adadelta_mpi.h" ADADELTA_MPI_EXTERN
exit $status
