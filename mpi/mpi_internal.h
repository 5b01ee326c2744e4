/* mpi_internal.h - the layout of an adadelta_mpi and what the files of
 * mpi/ share, grouped by the file that defines it. Not installed.
 *
 * The layer reaches the core only through its public API and its private
 * interface (adadelta_private.h, CORE below). */
#ifndef ADADELTA_MPI_INTERNAL_H
#define ADADELTA_MPI_INTERNAL_H

#include "adadelta_mpi.h"
#include "adadelta_private.h"

#include <stdarg.h>

/* The core's private interface (errors.c looks it up once; NULL when
 * libadadelta is not the version this layer was built with). */
const adadelta_private *adadelta_mpi__core_interface(void);
#define CORE adadelta_mpi__core_interface()

typedef struct reduce_engine reduce_engine;

struct adadelta_mpi {
    MPI_Comm comm;
    int rank, size;
    adadelta *core;
    adadelta_mpi_mode mode;
    int check;        /* compare checksums after every apply */
    int ready;        /* agreement done, plan made, buffers allocated */

    /* The plan (plan.c): the variables' flat layout and the ranks' ranges
     * of it (at shard boundaries; in sharded mode the state each owns). */
    int nv;
    int64_t total;
    int64_t *voff;    /* nv + 1 flat offsets of the variables */
    int *bounds;      /* size + 1 shard bounds of the ranks' ranges */
    int64_t *eoff;    /* size + 1 flat offsets of the ranks' ranges */
    unsigned char *flags; /* 2 * nv + 2 bytes: the per-step agreement */

    const reduce_engine *engine;
    void *engine_state;
};

/* ------------------------------------------------------------ errors.c */
/* Records a failure in the one last-error channel (the core's). */
int adadelta_mpi__fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void adadelta_mpi__clear_error(void);
/* Makes a status collective: every rank returns the lowest failing
 * rank's status (its own if it failed) with that rank's message. */
int adadelta_mpi__agree(const adadelta_mpi *m, int rc);
/* The same before an adadelta_mpi exists. */
int adadelta_mpi__agree_comm(MPI_Comm comm, int rc);

/* ------------------------------------------------------------ agreement.c */
uint64_t adadelta_mpi__hash(uint64_t h, const void *data, size_t n);
#define ADADELTA_MPI_HASH_START 0xcbf29ce484222325ULL
/* "3 (2 in all)": the first rank whose value differs from rank 0's and how
 * many do; empty when none. Collective, no allocation. */
void adadelta_mpi__differing_ranks(const adadelta_mpi *m, uint64_t mine, char *buf, size_t n);
int adadelta_mpi__check_agreement(adadelta_mpi *m);

/* ------------------------------------------------------------ plan.c */
/* Agreement, then the plan and the buffers: once, before the first step,
 * save, load or finalize. Collective. */
int adadelta_mpi__ensure_ready(adadelta_mpi *m);
void adadelta_mpi__free_plan(adadelta_mpi *m);
/* This rank's flat range intersected with variable v, as element indices
 * of v [*b0, *b1); 0 if empty. */
int adadelta_mpi__own_part(const adadelta_mpi *m, int v, int64_t *b0, int64_t *b1);

/* ------------------------------------------------------------ reduce.c */
/* A reduction engine: where each rank's contribution goes, the rank-order
 * mean of the contributions, and the allgather of the variables after a
 * sharded step. */
struct reduce_engine {
    const char *name;
    int (*setup)(adadelta_mpi *m);
    void (*destroy)(adadelta_mpi *m);
    /* The flat buffer (total elements) this rank's contribution goes to. */
    float *(*contributions)(adadelta_mpi *m);
    /* The mean over ranks of the contributions, summed in rank order:
     * at least on this rank's range, everywhere when `everywhere`. */
    const float *(*mean)(adadelta_mpi *m, int everywhere);
    /* Sharded: every rank's range of the variables to every rank. */
    void (*gather_variables)(adadelta_mpi *m);
    /* Every rank's range of a flat buffer to `root` (all when root < 0). */
    void (*gather_ranges)(adadelta_mpi *m, float *flat, int root);
};
extern const reduce_engine adadelta_mpi__p2p_engine;

/* ------------------------------------------------------------ identity.c */
int adadelta_mpi__check_identical(adadelta_mpi *m, const char *when);

#endif
