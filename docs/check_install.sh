#!/bin/sh
# check_install.sh - checks the install path the README's Install section
# gives, from a clean build of this source tree, the way a user meets it:
#
#   1. a default ./configure && make, then ./configure --prefix=PFX in the
#      same tree (a second configure must not break make install);
#   2. make install DESTDIR=STAGE: every file in place; the staged CMake
#      package is relocatable; make uninstall removes every file again;
#   3. make install into PFX (as root: with the ldconfig hook), then
#      (a) examples/quickstart.c built with pkg-config adadelta, and run;
#      (b) a CMake project with find_package(adadelta) + adadelta::adadelta;
#      (c) an MPI program with mpicc + pkg-config adadelta-mpi, and with
#          find_package(adadelta COMPONENTS mpi) + adadelta::adadelta_mpi;
#      (d) the installed man pages through man -l, without warnings;
#      (e) the installed replay drivers on a conformance case; the saved
#          state's checksum verified by docs/state-format.md's Python code.
#   4. with --system (root, Linux): make install to the default prefix
#      /usr/local inside a private mount namespace (a tmpfs over /usr/local,
#      a copy of /etc), showing that without ldconfig a program fails with
#      "libadadelta.so.2: cannot open shared object file" and that make
#      install's hook fixes it. Nothing outside the namespace changes.
#
# Usage:  docs/check_install.sh [--system] [--keep] [--tarball FILE] [--jobs N]
#   e.g. in CI, after make dist:  docs/check_install.sh --tarball adadelta-0.1.0.tar.gz
#
# The sources are the tracked and untracked (not ignored) files of the git
# work tree this script is in, or the release tarball given with --tarball
# (make dist). Everything happens in a fresh temporary folder, removed at the
# end unless --keep. Needs cc, make, pkg-config and, for their parts,
# autoreconf (git sources), cmake, mpicc and mpirun (MPI), man, python3; a
# part whose tool is missing is reported as skipped. Exit status 0 when
# every check that ran passed, 1 otherwise.
set -u

system=0 keep=0 tarball= jobs=2
while [ $# -gt 0 ]; do
    case $1 in
    --system) system=1 ;;
    --keep) keep=1 ;;
    --tarball) tarball=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
case $tarball in '' | /*) ;; *) tarball=$(pwd)/$tarball ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/adadelta-install.XXXXXX") || exit 1
src=$work/src pfx=$work/pfx stage=$work/stage logs=$work/logs
mkdir -p "$src" "$logs"
passed=0 failed=0 skipped=0
cleanup() {
    if [ $keep = 1 ] || [ $failed -gt 0 ]; then
        echo "work folder kept: $work (logs in $logs)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { passed=$((passed + 1)); echo "ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL  $*"; }
skip() { skipped=$((skipped + 1)); echo "skip  $*"; }
have() { command -v "$1" >/dev/null 2>&1; }
# check NAME LOG COMMAND...: runs COMMAND with its output in $logs/LOG
check() {
    name=$1 log=$logs/$2
    shift 2
    if "$@" >"$log" 2>&1; then
        ok "$name"
    else
        bad "$name (see $log)"
        tail -5 "$log" | sed 's/^/      /'
        return 1
    fi
}
stop() { echo "== cannot go on: $passed passed, $failed failed, $skipped skipped"; exit 1; }
as_root() { [ "$(id -u)" = 0 ]; }
mpirun_flags=
as_root && mpirun_flags="--allow-run-as-root"
mpirun_flags="$mpirun_flags --oversubscribe -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=passive"

echo "== sources"
if [ -n "$tarball" ]; then
    check "unpack $tarball" unpack.log sh -c "gzip -dc '$tarball' | tar -xf - -C '$src' --strip-components=1" || stop
elif have git && git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    check "copy of the git work tree $top" copy.log sh -c \
        "cd '$top' && git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -f \"\$f\" ] && printf \"%s\\n\" \"\$f\"; done' sh | tar -cf - -T - | tar -xf - -C '$src'" || stop
else
    echo "check_install.sh: $top is not a git work tree; give --tarball FILE" >&2
    exit 2
fi
cd "$src" || exit 1
if [ ! -x configure ]; then
    check "autoreconf -fi" autoreconf.log autoreconf -fi || stop
fi

echo "== build: ./configure && make, then ./configure --prefix=$pfx"
check "./configure (default prefix)" configure1.log ./configure || stop
check "make -j$jobs" make1.log make -j"$jobs" || stop
check "./configure --prefix=$pfx (the same tree)" configure2.log ./configure --prefix="$pfx" || stop
grep 'libdir changed' "$logs/configure2.log" | sed 's/^/      /'
mpi=no
grep -q '^  MPI layer: *yes' "$logs/configure2.log" && mpi=yes
echo "      MPI layer: $mpi"

echo "== make install DESTDIR=$stage"
check "make install DESTDIR=..." install-stage.log make -j"$jobs" install DESTDIR="$stage"
expect="bin/adadelta-replay bin/adadelta-bench lib/libadadelta.so lib/libadadelta.so.2
    include/adadelta.h lib/pkgconfig/adadelta.pc lib/cmake/adadelta/adadeltaConfig.cmake
    lib/cmake/adadelta/adadeltaConfigVersion.cmake share/man/man1/adadelta-replay.1
    share/man/man1/adadelta-bench.1 share/man/man3/adadelta.3
    share/doc/adadelta/replay-cli.md share/doc/adadelta/state-format.md"
[ $mpi = yes ] && expect="$expect bin/adadelta-mpi-replay bin/adadelta-mpi-bench
    lib/libadadelta_mpi.so lib/libadadelta_mpi.so.2 include/adadelta_mpi.h
    lib/pkgconfig/adadelta-mpi.pc share/man/man1/adadelta-mpi-replay.1
    share/man/man1/adadelta-mpi-bench.1 share/man/man3/adadelta_mpi.3"
missing=
for f in $expect; do [ -e "$stage$pfx/$f" ] || missing="$missing $f"; done
if [ -z "$missing" ]; then ok "the $(echo $expect | wc -w) installed files are staged"; else bad "not staged:$missing"; fi
[ -z "$(find "$stage" -path "$stage$pfx" -prune -o -type f -print)" ] &&
    ok "nothing staged outside the prefix" || bad "files staged outside $pfx"

# A tiny CMake project: find_package(adadelta) and examples/quickstart.c.
cmake_project() { # DIR TARGET [COMPONENTS...]
    mkdir -p "$1"
    {
        echo "cmake_minimum_required(VERSION 3.13)"
        echo "project(adadelta_consumer C)"
        echo "find_package(adadelta 0.1 REQUIRED $3)"
        echo "message(STATUS \"adadelta \${adadelta_VERSION} includes \${adadelta_INCLUDE_DIRS}\")"
        echo "add_executable(consumer consumer.c)"
        echo "target_link_libraries(consumer PRIVATE $2)"
    } >"$1/CMakeLists.txt"
}
cmake_build() { # DIR PREFIX
    cmake -S "$1" -B "$1/build" -DCMAKE_PREFIX_PATH="$2" && cmake --build "$1/build"
}
if have cmake; then
    cmake_project "$work/cmake-stage" adadelta::adadelta ""
    cp examples/quickstart.c "$work/cmake-stage/consumer.c"
    check "CMake find_package(adadelta) from the staged copy (relocated)" cmake-stage.log \
        cmake_build "$work/cmake-stage" "$stage$pfx"
    check "  ... and its program runs" cmake-stage-run.log "$work/cmake-stage/build/consumer"
else
    skip "CMake against the staged copy (no cmake)"
fi
check "make uninstall DESTDIR=..." uninstall-stage.log make uninstall DESTDIR="$stage"
left=$(find "$stage" -type f | sed "s|^$stage||")
[ -z "$left" ] && ok "make uninstall leaves no file" || bad "left after make uninstall: $left"

echo "== make install (prefix $pfx)"
check "make install" install.log make -j"$jobs" install || stop
as_root && { grep -E -q '^ [^ ]*ldconfig$' "$logs/install.log" && ok "make install ran ldconfig (root, no DESTDIR)" ||
    bad "make install did not run ldconfig as root"; }
export PKG_CONFIG_PATH="$pfx/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

echo "== (a) pkg-config adadelta"
cflags=$(pkg-config --cflags --libs adadelta 2>"$logs/pkg-config.log") &&
    ok "pkg-config --cflags --libs adadelta: $cflags" || bad "pkg-config adadelta (see $logs/pkg-config.log)"
check "cc quickstart.c \$(pkg-config --cflags --libs adadelta)" cc-quickstart.log \
    sh -c "cc examples/quickstart.c $cflags -o '$work/quickstart'"
check "  ... runs with LD_LIBRARY_PATH=$pfx/lib" quickstart.log \
    env LD_LIBRARY_PATH="$pfx/lib" "$work/quickstart"
sed 's/^/      /' "$logs/quickstart.log"
check "cc ... -Wl,-rpath,$pfx/lib runs without LD_LIBRARY_PATH" quickstart-rpath.log \
    sh -c "cc examples/quickstart.c $cflags -Wl,-rpath,'$pfx/lib' -o '$work/quickstart-rpath' && env -u LD_LIBRARY_PATH '$work/quickstart-rpath'"

echo "== (b) CMake find_package(adadelta)"
if have cmake; then
    cmake_project "$work/cmake" adadelta::adadelta ""
    cp examples/quickstart.c "$work/cmake/consumer.c"
    check "cmake + target_link_libraries(consumer adadelta::adadelta)" cmake.log \
        cmake_build "$work/cmake" "$pfx"
    grep 'adadelta 0' "$logs/cmake.log" | sed 's/^ *-- /      /'
    check "  ... runs (CMake's build run path)" cmake-run.log env -u LD_LIBRARY_PATH "$work/cmake/build/consumer"
    mkdir -p "$work/cmake-v1"
    printf 'cmake_minimum_required(VERSION 3.13)\nproject(v C)\nfind_package(adadelta 1.0 REQUIRED)\n' \
        >"$work/cmake-v1/CMakeLists.txt"
    if cmake -S "$work/cmake-v1" -B "$work/cmake-v1/build" -DCMAKE_PREFIX_PATH="$pfx" \
        >"$logs/cmake-v1.log" 2>&1; then
        bad "find_package(adadelta 1.0) accepted 0.x"
    else
        ok "find_package(adadelta 1.0) refuses $(sed -n 's/^set(PACKAGE_VERSION "\([0-9.]*\)")$/\1/p' \
            "$pfx/lib/cmake/adadelta/adadeltaConfigVersion.cmake")"
    fi
else
    skip "CMake (no cmake)"
fi

echo "== (c) the MPI layer"
cat >"$work/mpi_consumer.c" <<'EOF'
/* Two variables, data parallel, state sharded; rank 0 saves the state. */
#include <stdio.h>
#include <adadelta_mpi.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    adadelta_mpi *opt;
    int rc = adadelta_mpi_create(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_SHARDED, &opt);
    float w[3] = {1, 2, 3}, b[1] = {0}, gw[3], gb[1];
    int64_t sw[1] = {3}, sb[1] = {1};
    if (!rc && adadelta_mpi_add_variable(opt, "dense/kernel", ADADELTA_F32, w, 1, sw) < 0)
        rc = -1;
    if (!rc && adadelta_mpi_add_variable(opt, "dense/bias", ADADELTA_F32, b, 1, sb) < 0)
        rc = -1;
    const float *grads[2] = {gw, gb};
    for (int step = 0; step < 10 && !rc; step++) {
        for (int i = 0; i < 3; i++)
            gw[i] = 0.1f * (float)(rank + 1) * (float)(i + 1);
        gb[0] = 0.25f * (float)(rank + 1);
        rc = adadelta_mpi_apply(opt, grads);
    }
    if (!rc && argc > 1)
        rc = adadelta_mpi_save(opt, argv[1]);
    if (rc)
        fprintf(stderr, "rank %d: %s\n", rank, adadelta_mpi_last_error());
    else if (rank == 0)
        printf("%d ranks, %lld steps, engine %s: w = %.6f %.6f %.6f, b = %.6f\n", size,
               (long long)adadelta_iterations(adadelta_mpi_core(opt)), adadelta_mpi_engine(opt),
               w[0], w[1], w[2], b[0]);
    if (opt)
        adadelta_mpi_destroy(opt);
    MPI_Finalize();
    return rc ? 1 : 0;
}
EOF
if [ $mpi = no ]; then
    skip "MPI (configure did not build the MPI layer)"
elif ! have mpicc || ! have mpirun; then
    skip "MPI (no mpicc or mpirun)"
else
    mflags=$(pkg-config --cflags --libs adadelta-mpi 2>"$logs/pkg-config-mpi.log") &&
        ok "pkg-config --cflags --libs adadelta-mpi: $mflags" || bad "pkg-config adadelta-mpi"
    check "mpicc mpi_consumer.c \$(pkg-config --cflags --libs adadelta-mpi)" mpicc.log \
        sh -c "mpicc '$work/mpi_consumer.c' $mflags -o '$work/mpi_consumer'"
    check "  ... mpirun -np 2 runs" mpi-run.log \
        mpirun $mpirun_flags -x LD_LIBRARY_PATH="$pfx/lib" -np 2 "$work/mpi_consumer" "$work/mpi_state.safetensors"
    sed 's/^/      /' "$logs/mpi-run.log"
    if have cmake; then
        cmake_project "$work/cmake-mpi" adadelta::adadelta_mpi "COMPONENTS mpi"
        cp "$work/mpi_consumer.c" "$work/cmake-mpi/consumer.c"
        check "cmake find_package(adadelta COMPONENTS mpi) + adadelta::adadelta_mpi" cmake-mpi.log \
            cmake_build "$work/cmake-mpi" "$pfx"
        check "  ... mpirun -np 2 runs, the same result" cmake-mpi-run.log \
            mpirun $mpirun_flags -np 2 "$work/cmake-mpi/build/consumer"
        cmp -s "$logs/mpi-run.log" "$logs/cmake-mpi-run.log" || bad "the CMake MPI program printed something else"
    else
        skip "CMake with MPI (no cmake)"
    fi
fi

echo "== (d) man pages"
if have man; then
    for page in "$pfx"/share/man/man1/*.1 "$pfx"/share/man/man3/adadelta.3; do
        if MANWIDTH=80 man --warnings -l "$page" >"$logs/man.out" 2>"$logs/man.err" &&
            [ ! -s "$logs/man.err" ] && [ -s "$logs/man.out" ]; then
            ok "man -l ${page#$pfx/}: $(sed -n 4p "$logs/man.out" | sed 's/^ *//')"
        else
            bad "man -l $page"; sed 's/^/      /' "$logs/man.err"
        fi
    done
    MANWIDTH=80 man -l "$pfx/share/man/man1/adadelta-replay.1" 2>/dev/null | head -12 | sed 's/^/      /'
    if [ $mpi = yes ]; then
        MANPATH="$pfx/share/man" man -w adadelta_mpi >"$logs/man-so.log" 2>&1 &&
            (cd "$pfx/share/man" && man -l man3/adadelta_mpi.3 2>&1 | grep -q 'adadelta_mpi') &&
            ok "man adadelta_mpi shows adadelta(3)" || bad "man adadelta_mpi"
    fi
    # every option a program's --help names is in its man page
    for prog in adadelta-replay adadelta-bench adadelta-mpi-replay adadelta-mpi-bench; do
        [ -x "$pfx/bin/$prog" ] || continue
        opts=$(env LD_LIBRARY_PATH="$pfx/lib" "$pfx/bin/$prog" --help 2>&1 | grep -o -- '--[a-z0-9-]*' | sort -u)
        undocumented=
        for o in $opts; do
            grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$pfx/share/man/man1/$prog.1" ||
                undocumented="$undocumented $o"
        done
        [ -z "$undocumented" ] && ok "$prog.1 documents every option of --help" ||
            bad "$prog.1 lacks:$undocumented"
    done
else
    skip "man pages (no man)"
fi

echo "== (e) the installed replay drivers"
case_dir=tests/data/keras/kitchen_sink
replay="$pfx/bin/adadelta-replay"
check "adadelta-replay --version" version.log env LD_LIBRARY_PATH="$pfx/lib" "$replay" --version
sed 's/^/      /' "$logs/version.log"
check "adadelta-replay on $case_dir" replay.log env LD_LIBRARY_PATH="$pfx/lib" "$replay" \
    --params $case_dir/params.safetensors --grads $case_dir/grads.safetensors \
    --config $case_dir/config.json --out "$work/replay.safetensors"
env LD_LIBRARY_PATH="$pfx/lib" "$replay" --params "$work/missing.safetensors" \
    --grads $case_dir/grads.safetensors --out "$work/none.safetensors" >"$logs/status3.log" 2>&1
st=$?
[ $st = 3 ] && [ ! -e "$work/none.safetensors" ] && ok "a missing --params: status 3, no --out" ||
    bad "a missing --params gave status $st"
if [ $mpi = yes ] && have mpirun; then
    check "mpirun -np 2 adadelta-mpi-replay --mode sharded --overlap" mpi-replay.log \
        mpirun $mpirun_flags -x LD_LIBRARY_PATH="$pfx/lib" -np 2 "$pfx/bin/adadelta-mpi-replay" \
        --params $case_dir/params.safetensors --grads $case_dir/grads.safetensors \
        --config $case_dir/config.json --mode sharded --overlap --order shuffle \
        --out "$work/mpi-replay.safetensors"
    cmp -s "$work/replay.safetensors" "$work/mpi-replay.safetensors" &&
        ok "  ... the same bytes as adadelta-replay" || bad "  ... other bytes than adadelta-replay"
fi
if have python3; then
    # replay-cli.md's snippet writes input files the driver accepts
    mkdir -p "$work/snippet"
    awk '/^## Writing input files/ { f = 1; next } f && /^```python/ { g = 1; next }
         g && /^```/ { exit } g' docs/replay-cli.md >"$work/write_inputs.py"
    echo '{"learning_rate": 1.0}' >"$work/snippet/c.json"
    check "replay-cli.md's Python snippet writes --params and --grads files" snippet.log \
        sh -c "cd '$work/snippet' && python3 '$work/write_inputs.py' &&
               env LD_LIBRARY_PATH='$pfx/lib' '$replay' --params p.safetensors \
                   --grads g.safetensors --config c.json --out two_calls.safetensors"
    # state-format.md's byte-level example: the same w, one call
    (cd "$work/snippet" && python3 -c "
import struct
exec(open('$work/write_inputs.py').read().split('write_safetensors(\"p.safetensors')[0])
write_safetensors('g1.safetensors', [('grads/0/w', 'F32', [2], struct.pack('<2f', 0.5, 0.5))])
" && env LD_LIBRARY_PATH="$pfx/lib" "$replay" --params p.safetensors --grads g1.safetensors \
        --config c.json --out tiny.safetensors) >"$logs/tiny.log" 2>&1
    tiny=$work/snippet/tiny.safetensors
    version=$(grep -a -o '"version":"[0-9]*"' "$tiny" 2>/dev/null | head -1 | cut -d'"' -f4)
    sum=$(grep -a -o '"checksum":"[0-9a-f]*"' "$tiny" 2>/dev/null | head -1 | cut -d'"' -f4)
    size=$(wc -c <"$tiny" 2>/dev/null)
    doc=$(sed -n "s/^- version $version[: ].* is \`\([0-9a-f]\{8\}\)\`.*/\1/p" docs/state-format.md)
    if [ -n "$sum" ] && [ "$sum" = "$doc" ] && [ "$size" = 800 ]; then
        ok "state-format.md's example: 800 bytes, version $version, checksum $sum"
    else
        bad "state-format.md's example: the driver writes $size bytes, version $version, checksum $sum; the page says 800 bytes, ${doc:-no checksum} (update the page)"
    fi
    awk '/<!-- verify_checksum.py/ { f = 1; next } f && /^```python/ { g = 1; next }
         g && /^```/ { exit } g' docs/state-format.md >"$work/verify_checksum.py"
    files="$work/replay.safetensors $tiny"
    [ -f "$work/mpi_state.safetensors" ] && files="$files $work/mpi_state.safetensors"
    check "state-format.md's checksum code accepts the saved states" verify.log \
        python3 "$work/verify_checksum.py" $files
    sed "s|$work/||; s/^/      /" "$logs/verify.log"
    cp "$work/replay.safetensors" "$work/corrupt.safetensors"
    # "adadelta-state" -> "Xdadelta-state": still valid JSON, now another header
    at=$(grep -a -b -o 'adadelta-state' "$work/corrupt.safetensors" | head -1 | cut -d: -f1)
    printf 'X' | dd of="$work/corrupt.safetensors" bs=1 seek="$at" conv=notrunc 2>/dev/null
    if python3 "$work/verify_checksum.py" "$work/corrupt.safetensors" >"$logs/verify-bad.log" 2>&1; then
        version=$(grep -a -o '"version":"[0-9]*"' "$work/replay.safetensors" | head -1)
        [ "$version" = '"version":"1"' ] && ok "  ... a header byte changed goes unnoticed in version 1 (data-only checksum)" ||
            bad "  ... it accepts a file with a changed header byte"
    else
        ok "  ... and refuses one with a changed header byte"
    fi
else
    skip "checksum verification (no python3)"
fi

if [ $system = 1 ]; then
    echo "== --system: make install to /usr/local in a private mount namespace"
    if ! as_root || ! have unshare; then
        skip "--system needs root and unshare"
    else
        cat >"$work/system.sh" <<EOF
set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /usr/local
cp -a /etc "$work/etc" && mount --bind "$work/etc" /etc
cd "$src"
./configure -q && make -j$jobs >/dev/null
make install LDCONFIG=: >/dev/null 2>&1
echo "without ldconfig:"
/usr/local/bin/adadelta-replay --version 2>&1 | sed 's/^/  /' || true
make install >/dev/null 2>&1
echo "make install (its hook runs ldconfig):"
/usr/local/bin/adadelta-replay --version | sed 's/^/  /'
cc examples/quickstart.c \$(pkg-config --cflags --libs adadelta) -o "$work/qs-system"
"$work/qs-system" | tail -1 | sed 's/^/  quickstart: /'
echo "man finds its pages:"
man -w adadelta-replay adadelta | sed 's/^/  /'
EOF
        unshare -m sh "$work/system.sh" >"$logs/system.log" 2>&1
        st=$?
        sed 's/^/      /' "$logs/system.log"
        if [ $st = 0 ] && grep -q 'cannot open shared object file' "$logs/system.log" &&
            grep -q '^  adadelta-replay ' "$logs/system.log" &&
            grep -q '^  /usr/local/share/man/man3/adadelta.3' "$logs/system.log"; then
            ok "/usr/local: fails without ldconfig, works after make install"
        else
            bad "/usr/local install (status $st)"
        fi
    fi
fi

echo "== $passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
