/* plan.c - the plan of the layer, made once before the first collective
 * step: the agreement of the ranks, the variables' flat layout, the ranks'
 * ranges of it (at shard boundaries, about equal; in sharded mode each rank
 * keeps the optimizer state of its range only), and the reduction engine's
 * buffers. */
#include "mpi_internal.h"

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
    free(m->flags);
    m->voff = m->eoff = NULL;
    m->bounds = NULL;
    m->flags = NULL;
}

int adadelta_mpi__own_part(const adadelta_mpi *m, int v, int64_t *b0, int64_t *b1)
{
    int64_t a = m->eoff[m->rank], b = m->eoff[m->rank + 1];
    int64_t lo = m->voff[v] > a ? m->voff[v] : a;
    int64_t hi = m->voff[v + 1] < b ? m->voff[v + 1] : b;
    if (lo >= hi)
        return 0;
    *b0 = lo - m->voff[v];
    *b1 = hi - m->voff[v];
    return 1;
}

static int make_plan(adadelta_mpi *m)
{
    adadelta *c = m->core;
    int R = m->size;
    m->nv = adadelta_num_variables(c);
    m->total = CORE->total_elements(c);
    m->voff = calloc((size_t)m->nv + 1, sizeof *m->voff);
    m->bounds = calloc((size_t)R + 1, sizeof *m->bounds);
    m->eoff = calloc((size_t)R + 1, sizeof *m->eoff);
    m->flags = calloc((size_t)m->nv * 2 + 2, 1);
    if (!m->voff || !m->bounds || !m->eoff || !m->flags)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    for (int v = 0; v <= m->nv; v++)
        m->voff[v] = CORE->variable_offset(c, v);
    CORE->partition(c, R, m->bounds);
    for (int r = 0; r <= R; r++)
        m->eoff[r] = CORE->shard_offset(c, m->bounds[r]);
    m->engine = &adadelta_mpi__p2p_engine;
    int rc = m->engine->setup(m);
    if (rc)
        return rc;
    if (m->mode == ADADELTA_MPI_SHARDED)
        /* The core keeps the owned part of state it already holds (a
         * resumed core) and frees the rest. */
        return CORE->own_shards(c, m->bounds[m->rank], m->bounds[m->rank + 1]);
    /* Allocate the slots here, where a failure is agreed, not in the first
     * step between collectives. */
    return adadelta_build(c);
}

int adadelta_mpi__ensure_ready(adadelta_mpi *m)
{
    if (m->ready)
        return 0;
    int rc = adadelta_mpi__check_agreement(m);
    if (rc)
        return rc;
    rc = adadelta_mpi__agree(m, make_plan(m));
    if (rc) {
        adadelta_mpi__free_plan(m);
        return rc;
    }
    /* ADADELTA_MPI_CHECK may be set on some ranks only: the check is
     * collective, so one rank asking for it turns it on everywhere. */
    MPI_Allreduce(MPI_IN_PLACE, &m->check, 1, MPI_INT, MPI_LOR, m->comm);
    m->ready = 1;
    return 0;
}
