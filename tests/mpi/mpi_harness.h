/* mpi_harness.h - what the cmocka MPI tests share: verdicts agreed over
 * the ranks (a failing rank never leaves the others in a collective), a
 * small model of four variables (two split over several ranks, an empty
 * one, a scalar), rank-dependent gradients, a temporary folder, and file
 * comparisons. */
#ifndef MPI_HARNESS_H
#define MPI_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "adadelta_mpi.h"

extern int R, me;

/* 1 on every rank if local is true on every rank. */
int all_true(int local);
#define AGREE(x) assert_true(all_true(x))

#define NV 4
extern const int nd[NV];
extern const int64_t shapes[NV][2];
extern const char *const names[NV];

typedef struct model {
    float *data[NV];
    int64_t size[NV];
} model;

void model_init(model *m);
void model_free(model *m);
/* A hash of four numbers as a float in [-1, 1). */
float hashf(uint32_t a, uint32_t b, uint32_t c, uint32_t d);
/* Rank r's gradient of call k, element i of variable v, in [-1, 1). */
float grad(int r, int k, int v, int64_t i);

enum {
    NONE_ODD = 1,    /* variable 1 has no gradient on odd calls (all ranks) */
    INF_LAST = 2,    /* call 3: an Inf in the last rank's gradient only */
    NONE_RANK0 = 4   /* call 0: variable 1 None on rank 0 only */
};

/* The gradients of call k on this rank, with the flags' None and Inf. */
typedef struct grads {
    float *g[NV];
    const float *gp[NV];
} grads;
void grads_init(grads *g, const model *m);
void grads_fill(grads *g, const model *m, int k, int flags);
void grads_free(grads *g);

/* An optimizer over model m on comm, NULL on failure; make: on
 * MPI_COMM_WORLD with the checksum check on. */
adadelta_mpi *make_on(MPI_Comm comm, const adadelta_config *cfg, adadelta_mpi_mode mode,
                      model *m);
adadelta_mpi *make(const adadelta_config *cfg, adadelta_mpi_mode mode, model *m);
/* Calls [from, to) through adadelta_mpi_apply; the first failing status. */
int run(adadelta_mpi *o, model *m, int from, int to, int flags);
/* Runs calls [0, calls) in a mode and saves the final state to `file`. */
int run_and_save(const adadelta_config *cfg, adadelta_mpi_mode mode, int calls, int flags,
                 int finalize, const char *file, float *scale_out);

/* The environment that picks the reduction engine, for the optimizers
 * made between engine_env_begin and engine_env_end: ADADELTA_MPI_SHM, and
 * ADADELTA_MPI_CHUNK_ELEMENTS and ADADELTA_MPI_NODE_RANKS (NULL: unset);
 * want: the engine expected. The end unsets them, but gives back the job's
 * own ADADELTA_MPI_NODE_RANKS (mpi_api.sh runs whole tests on pretend
 * nodes). */
typedef struct engine_env {
    const char *shm, *chunk, *node_ranks, *want;
} engine_env;
void engine_env_begin(const engine_env *e);
void engine_env_end(void);

/* A path in the shared temporary folder (rotating buffers). */
char *path_of(const char *name);
/* Rank 0 compares two files byte by byte; the verdict is shared. */
int same_files(const char *a, const char *b);

/* MPI_Init, the temporary folder, quiet ranks but 0; runs the tests;
 * cleans up and MPI_Finalize. Returns main's exit status. */
int run_mpi_tests(int *argc, char ***argv, const struct CMUnitTest *tests, size_t n);
#define RUN_MPI_TESTS(argc, argv, tests)                                                   \
    run_mpi_tests(&(argc), &(argv), tests, sizeof(tests) / sizeof((tests)[0]))

#endif
