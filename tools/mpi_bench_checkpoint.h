/* mpi_bench_checkpoint.h - adadelta-mpi-bench --checkpoint
 * (mpi_bench_checkpoint.c). */
#ifndef MPI_BENCH_CHECKPOINT_H
#define MPI_BENCH_CHECKPOINT_H

#include <stdint.h>

typedef struct checkpoint_options {
    int64_t elements;     /* of the one variable */
    int modes;            /* bit 0 replicated, bit 1 sharded */
    int rounds;
    const char *dir;      /* where the files go */
    int64_t buffer_bytes; /* 0: the library's default */
} checkpoint_options;

/* One JSON line per rank and mode on stdout. Collective. */
void run_checkpoint_bench(const checkpoint_options *c, int rank, int ranks);

#endif
