# bench.mk - the benchmark programs; included by tools/Makefile.am after
# `bin_PROGRAMS =`. It defines dist_noinst_SCRIPTS (the PyTorch and plot
# scripts) itself, so tools/Makefile.am must not set that variable.
#
# The limit kernel in bench.c vectorises through `#pragma omp simd` and
# target_clones, so it stays fast even though the user's CFLAGS (-g -O2 by
# default) come after these per-target flags on the command line.

bin_PROGRAMS += adadelta-bench
adadelta_bench_SOURCES = bench.c bench_common.h
adadelta_bench_CFLAGS = -I$(top_srcdir)/lib $(OPENMP_CFLAGS) -O3 -fno-math-errno
adadelta_bench_LDADD = $(top_builddir)/lib/libadadelta.la $(LIBM)

if HAVE_MPI
bin_PROGRAMS += adadelta-mpi-bench
adadelta_mpi_bench_SOURCES = mpi_bench.c bench_common.h mpi_bench_checkpoint.c \
	mpi_bench_checkpoint.h
adadelta_mpi_bench_CFLAGS = -I$(top_srcdir)/lib -I$(top_srcdir)/mpi \
	$(MPI_CFLAGS) $(OPENMP_CFLAGS) -O3 -fno-math-errno
adadelta_mpi_bench_LDADD = $(top_builddir)/mpi/libadadelta_mpi.la \
	$(top_builddir)/lib/libadadelta.la $(MPI_LIBS) $(LIBM)
endif

dist_noinst_SCRIPTS = torch_bench.py bench_plot.sh torch_ddp_bench.py mpi_bench_plot.sh py_bench.py \
	torch_checkpoint_bench.py checkpoint_bench.sh netns_bench.sh
