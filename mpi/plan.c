/* plan.c - the plan of the layer, made once before the first collective
 * step: the agreement of the ranks, the variables' flat layout, the ranks'
 * ranges of it (at shard boundaries, about equal; in sharded mode each rank
 * keeps the optimizer state of its range only), the buckets, the chunk size
 * of MPI calls, and the reduction engine. */
#include "mpi_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void adadelta_mpi__free_plan(adadelta_mpi *m)
{
    if (m->engine)
        m->engine->destroy(m);
    m->engine = NULL;
    free(m->voff);
    free(m->bounds);
    free(m->eoff);
    free(m->buckets);
    free(m->var_bucket);
    free(m->flags);
    free(m->flags_all);
    free(m->ostep.grads);
    free(m->ostep.reported);
    m->voff = m->eoff = NULL;
    m->bounds = m->var_bucket = NULL;
    m->buckets = NULL;
    m->flags = m->flags_all = NULL;
    m->ostep.grads = NULL;
    m->ostep.reported = NULL;
}

int adadelta_mpi__portion(const adadelta_mpi *m, int r, int64_t lo, int64_t hi, int64_t *a,
                          int64_t *b)
{
    *a = lo > m->eoff[r] ? lo : m->eoff[r];
    *b = hi < m->eoff[r + 1] ? hi : m->eoff[r + 1];
    return *a < *b;
}

int adadelta_mpi__own_part(const adadelta_mpi *m, int v, int64_t *b0, int64_t *b1)
{
    int64_t lo, hi;
    if (!adadelta_mpi__portion(m, m->rank, m->voff[v], m->voff[v + 1], &lo, &hi))
        return 0;
    *b0 = lo - m->voff[v];
    *b1 = hi - m->voff[v];
    return 1;
}

/* Buckets of about bucket_bytes from the last variable back, the order in
 * which a backward pass produces the gradients: bucket 0 holds the last
 * variables. A variable larger than a bucket is a bucket of its own. */
static int make_buckets(adadelta_mpi *m)
{
    m->buckets = calloc((size_t)m->nv + 1, sizeof *m->buckets);
    m->var_bucket = calloc((size_t)m->nv + 1, sizeof *m->var_bucket);
    if (!m->buckets || !m->var_bucket)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    int n = 0, hi = m->nv;
    int64_t bytes = 0;
    for (int v = m->nv - 1; v >= 0; v--) {
        bytes += (m->voff[v + 1] - m->voff[v]) * (int64_t)sizeof(float);
        if (bytes >= m->bucket_bytes || v == 0) {
            m->buckets[n++] = (bucket){v, hi, m->voff[v], m->voff[hi], 0, 0};
            hi = v;
            bytes = 0;
        }
    }
    m->n_buckets = n;
    for (int b = 0; b < n; b++)
        for (int v = m->buckets[b].v_lo; v < m->buckets[b].v_hi; v++)
            m->var_bucket[v] = b;
    return 0;
}

static int make_flags(adadelta_mpi *m)
{
    const adadelta_config *c = adadelta_get_config(m->core);
    int needs_norms = (adadelta_is_set(c->clipnorm) && c->clipnorm > 0) ||
                      (adadelta_is_set(c->global_clipnorm) && c->global_clipnorm > 0);
    int n = needs_norms ? CORE->num_shards(m->core) : 0;
    m->flags_bytes = sizeof(step_flags) + (size_t)n * sizeof(double);
    m->flags = calloc(1, m->flags_bytes);
    m->flags_all = calloc(1, m->flags_bytes);
    m->ostep.grads = calloc((size_t)m->nv + 1, sizeof *m->ostep.grads);
    m->ostep.reported = calloc((size_t)m->nv + 1, 1);
    if (!m->flags || !m->flags_all || !m->ostep.grads || !m->ostep.reported)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    m->flags->n_partials = n;
    return 0;
}

static int make_layout(adadelta_mpi *m)
{
    adadelta *c = m->core;
    int R = m->size;
    m->nv = adadelta_num_variables(c);
    m->total = CORE->total_elements(c);
    m->voff = calloc((size_t)m->nv + 1, sizeof *m->voff);
    m->bounds = calloc((size_t)R + 1, sizeof *m->bounds);
    m->eoff = calloc((size_t)R + 1, sizeof *m->eoff);
    if (!m->voff || !m->bounds || !m->eoff)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    for (int v = 0; v <= m->nv; v++)
        m->voff[v] = CORE->variable_offset(c, v);
    CORE->partition(c, R, m->bounds);
    for (int r = 0; r <= R; r++)
        m->eoff[r] = CORE->shard_offset(c, m->bounds[r]);
    int rc = make_buckets(m);
    return rc ? rc : make_flags(m);
}

/* Unless ADADELTA_MPI_SHM=0: the shared-memory engine when every rank is
 * on one node, the hierarchical one when the ranks fill several nodes in
 * blocks of consecutive ranks; else MPI collectives. Collective: the
 * answer is the same on every rank. */
static const reduce_engine *choose_engine(adadelta_mpi *m)
{
    int wanted = m->shm_wanted, any;
    MPI_Allreduce(&wanted, &any, 1, MPI_INT, MPI_MIN, m->comm); /* one rank's 0 wins */
    if (any == 0 || m->size == 1)
        return &adadelta_mpi__p2p_engine;
    if (adadelta_mpi__shm_possible(m))
        return &adadelta_mpi__shm_engine;
    return adadelta_mpi__hier_possible(m) ? &adadelta_mpi__hier_engine : &adadelta_mpi__p2p_engine;
}

int adadelta_mpi__ensure_ready(adadelta_mpi *m)
{
    if (m->ready)
        return 0;
    int rc = adadelta_mpi__check_agreement(m);
    if (rc)
        return rc;
    rc = adadelta_mpi__agree(m, make_layout(m));
    if (!rc) {
        m->engine = choose_engine(m);
        rc = adadelta_mpi__agree(m, m->engine->setup(m));
    }
    if (!rc && m->mode == ADADELTA_MPI_SHARDED)
        /* The core keeps the owned part of state it already holds (a
         * resumed core) and frees the rest. */
        rc = CORE->own_shards(m->core, m->bounds[m->rank], m->bounds[m->rank + 1]);
    else if (!rc)
        /* Allocate the slots here, where a failure is agreed, not in the
         * first step between collectives. */
        rc = adadelta_build(m->core);
    if ((rc = adadelta_mpi__agree(m, rc))) {
        adadelta_mpi__free_plan(m);
        return rc;
    }
    m->ready = 1;
    return 0;
}
