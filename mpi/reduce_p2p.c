/* reduce_p2p.c - the reduction engine over MPI's point-to-point collectives,
 * for any placement of the ranks. The contributions (flat buffers holding
 * every variable) are cut into the ranks' ranges; an MPI_Alltoallv gives
 * rank j every rank's piece of range j, which it sums in rank order 0..R-1
 * and divides by R. The order never depends on the MPI library, so every
 * rank computes the same bits (no MPI_Allreduce on floats). An
 * MPI_Allgatherv then spreads the mean (replicated mode) or the updated
 * variables (sharded mode). */
#include "mpi_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct p2p {
    int *cnt, *dsp;   /* per rank: elements and offset of its range */
    int *rcnt, *rdsp; /* alltoallv receive layout: my range from each rank */
    float *send;      /* total: this rank's contribution */
    float *recv;      /* size * my range: everyone's pieces of my range */
    float *mean;      /* total: the mean (own range at least); scratch */
} p2p;

static float *alloc_floats(int64_t n)
{
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

static void p2p_destroy(adadelta_mpi *m)
{
    p2p *e = m->engine_state;
    if (!e)
        return;
    free(e->cnt);
    free(e->dsp);
    free(e->rcnt);
    free(e->rdsp);
    free(e->send);
    free(e->recv);
    free(e->mean);
    free(e);
    m->engine_state = NULL;
}

static int p2p_setup(adadelta_mpi *m)
{
    int R = m->size;
    if (m->total > INT_MAX)
        return adadelta_mpi__fail(ADADELTA_EINVAL,
                                  "adadelta_mpi: %lld elements in all; the MPI layer "
                                  "handles at most %d (MPI counts are int)",
                                  (long long)m->total, INT_MAX);
    p2p *e = calloc(1, sizeof *e);
    if (!e)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    m->engine_state = e;
    e->cnt = calloc((size_t)R, sizeof(int));
    e->dsp = calloc((size_t)R, sizeof(int));
    e->rcnt = calloc((size_t)R, sizeof(int));
    e->rdsp = calloc((size_t)R, sizeof(int));
    if (!e->cnt || !e->dsp || !e->rcnt || !e->rdsp)
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    int64_t mine = m->eoff[m->rank + 1] - m->eoff[m->rank];
    if ((int64_t)R * mine > INT_MAX)
        return adadelta_mpi__fail(ADADELTA_EINVAL,
                                  "adadelta_mpi: a rank's range times the ranks exceeds "
                                  "MPI's int counts");
    for (int r = 0; r < R; r++) {
        e->cnt[r] = (int)(m->eoff[r + 1] - m->eoff[r]);
        e->dsp[r] = (int)m->eoff[r];
        e->rcnt[r] = (int)mine;
        e->rdsp[r] = (int)(mine * r);
    }
    e->send = alloc_floats(m->total);
    e->mean = alloc_floats(m->total);
    e->recv = alloc_floats((int64_t)R * mine);
    if (!e->send || !e->mean || !e->recv)
        return adadelta_mpi__fail(ADADELTA_ENOMEM,
                                  "adadelta_mpi: out of memory for the %lld-element buffers",
                                  (long long)m->total);
    return 0;
}

static float *p2p_contributions(adadelta_mpi *m) { return ((p2p *)m->engine_state)->send; }

typedef struct sum_ctx {
    const float *in;
    float *out;
    int64_t n;
    int R;
} sum_ctx;

/* Inside a block the ranks are added one after the other (rank order, as
 * always) in vector loops over the elements. */
static void sum_block(int64_t lo, int64_t hi, void *vctx)
{
    const sum_ctx *c = vctx;
    float *restrict out = c->out;
    const float *restrict in = c->in;
    const float fr = (float)c->R;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        out[i] = in[i];
    for (int r = 1; r < c->R; r++) {
        const float *restrict part = in + (int64_t)r * c->n;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] += part[i];
    }
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        out[i] = out[i] / fr;
}

static void allgather_ranges(adadelta_mpi *m, float *buf)
{
    p2p *e = m->engine_state;
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, e->cnt, e->dsp, MPI_FLOAT, m->comm);
}

/* mean[own range] = (sum over ranks r = 0..R-1 of send_r[own range]) / R. */
static const float *p2p_mean(adadelta_mpi *m, int everywhere)
{
    p2p *e = m->engine_state;
    MPI_Alltoallv(e->send, e->cnt, e->dsp, MPI_FLOAT, e->recv, e->rcnt, e->rdsp, MPI_FLOAT,
                  m->comm);
    int64_t n = m->eoff[m->rank + 1] - m->eoff[m->rank];
    sum_ctx c = {e->recv, e->mean + m->eoff[m->rank], n, m->size};
    CORE->parallel_blocks(m->core, n, 4096, sum_block, &c);
    if (everywhere)
        allgather_ranges(m, e->mean);
    return e->mean;
}

/* Sharded: every rank sends the variables' values of its range to all. */
static void p2p_gather_variables(adadelta_mpi *m)
{
    p2p *e = m->engine_state;
    float *buf = e->mean; /* free between steps */
    for (int v = 0; v < m->nv; v++) {
        int64_t b0, b1;
        if (adadelta_mpi__own_part(m, v, &b0, &b1))
            memcpy(buf + m->voff[v] + b0, adadelta_variable_data(m->core, v) + b0,
                   (size_t)(b1 - b0) * sizeof(float));
    }
    allgather_ranges(m, buf);
    for (int v = 0; v < m->nv; v++) {
        int64_t n = m->voff[v + 1] - m->voff[v];
        if (n)
            memcpy(adadelta_variable_data(m->core, v), buf + m->voff[v],
                   (size_t)n * sizeof(float));
    }
}

static void p2p_gather_ranges(adadelta_mpi *m, float *buf, int root)
{
    p2p *e = m->engine_state;
    if (root < 0)
        allgather_ranges(m, buf);
    else if (m->rank == root)
        MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, e->cnt, e->dsp, MPI_FLOAT, root,
                    m->comm);
    else
        MPI_Gatherv(buf + m->eoff[m->rank], e->cnt[m->rank], MPI_FLOAT, NULL, NULL, NULL,
                    MPI_FLOAT, root, m->comm);
}

const reduce_engine adadelta_mpi__p2p_engine = {
    "p2p", p2p_setup, p2p_destroy, p2p_contributions, p2p_mean, p2p_gather_variables,
    p2p_gather_ranges,
};
