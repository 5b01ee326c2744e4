/* reduce_p2p.c - the reduction engine over MPI collectives, for any
 * placement of the ranks. Each bucket of the flat contributions is cut into
 * pieces of at most m->chunk elements (MPI counts are int). A piece's
 * MPI_Ialltoallv gives each rank every rank's part of the piece that falls
 * in its range; it sums them in rank order; in replicated mode an
 * MPI_Iallgatherv then spreads the mean. The alltoallvs run on one
 * communicator in bucket order and the allgathers on another in piece
 * order, so every rank posts each communicator's collectives in the same
 * order, whatever order its buckets became ready in. A compressed step
 * (compress.c) sends both as 16-bit values, through buffers of their own. */
#include "mpi_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct piece {
    int64_t lo, hi;     /* flat range */
    int64_t my_lo, my_n; /* this rank's part of it */
    int *cnt, *dsp;     /* per rank: its part's size and offset from lo */
    int *rcnt, *rdsp;   /* receive: my part from each rank, in rank order */
    float *recv;        /* R * my_n */
    uint16_t *recv16;   /* the same, compressed */
    MPI_Request a2a, ag;
    int posted, summed, gathering;
} piece;

typedef struct p2p {
    MPI_Comm a2a_comm, ag_comm;
    float *send;      /* total: this rank's contribution */
    float *mean;      /* total: the mean (own range at least); scratch */
    float *recv;      /* R * own range */
    int n_pieces;
    piece *pieces;
    int *first_piece; /* per bucket, n_buckets + 1 */
    int *ints;        /* storage of the pieces' count arrays */
    int *gcnt, *gdsp; /* scratch for whole-buffer gathers */
    uint16_t *send16, *mean16, *recv16; /* compressed: as send, mean, recv */
    MPI_Datatype flags_type;
    MPI_Op flags_op;
} p2p;

static p2p *state(const adadelta_mpi *m) { return m->engine_state; }

static void p2p_destroy(adadelta_mpi *m)
{
    p2p *e = state(m);
    if (!e)
        return;
    if (e->a2a_comm != MPI_COMM_NULL)
        MPI_Comm_free(&e->a2a_comm);
    if (e->ag_comm != MPI_COMM_NULL)
        MPI_Comm_free(&e->ag_comm);
    if (e->flags_type != MPI_DATATYPE_NULL) {
        MPI_Type_free(&e->flags_type);
        MPI_Op_free(&e->flags_op);
    }
    free(e->send);
    free(e->mean);
    free(e->recv);
    free(e->pieces);
    free(e->first_piece);
    free(e->ints);
    free(e->gcnt);
    free(e->gdsp);
    free(e->send16);
    free(e->mean16);
    free(e->recv16);
    free(e);
    m->engine_state = NULL;
}

static float *alloc_floats(int64_t n)
{
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

static int count_pieces(const adadelta_mpi *m)
{
    int64_t n = 0;
    for (int b = 0; b < m->n_buckets; b++) {
        int64_t len = m->buckets[b].hi - m->buckets[b].lo;
        n += len ? (len + m->chunk - 1) / m->chunk : 0;
    }
    return n > INT_MAX / 8 ? -1 : (int)n;
}

static void make_pieces(adadelta_mpi *m, p2p *e)
{
    int R = m->size, k = 0;
    int64_t own = m->eoff[m->rank];
    for (int b = 0; b < m->n_buckets; b++) {
        e->first_piece[b] = k;
        for (int64_t lo = m->buckets[b].lo; lo < m->buckets[b].hi; lo += m->chunk, k++) {
            piece *p = &e->pieces[k];
            p->lo = lo;
            p->hi = lo + m->chunk < m->buckets[b].hi ? lo + m->chunk : m->buckets[b].hi;
            p->cnt = e->ints + (size_t)k * 4 * R;
            p->dsp = p->cnt + R;
            p->rcnt = p->dsp + R;
            p->rdsp = p->rcnt + R;
            adadelta_mpi__cut(m, p->lo, p->hi, p->cnt, p->dsp);
            p->my_n = p->cnt[m->rank];
            p->my_lo = p->lo + p->dsp[m->rank];
            for (int r = 0; r < R; r++) {
                p->rcnt[r] = (int)p->my_n;
                p->rdsp[r] = (int)(p->my_n * r);
            }
            size_t at = p->my_n ? (size_t)R * (size_t)(p->my_lo - own) : 0;
            p->recv = e->recv + at;
            p->recv16 = e->recv16 ? e->recv16 + at : NULL;
        }
    }
    e->first_piece[m->n_buckets] = k;
}

static int p2p_alloc(adadelta_mpi *m, p2p *e)
{
    int R = m->size;
    e->a2a_comm = e->ag_comm = MPI_COMM_NULL;
    e->flags_type = MPI_DATATYPE_NULL;
    int64_t mine = m->eoff[m->rank + 1] - m->eoff[m->rank];
    e->n_pieces = count_pieces(m); /* the same on every rank */
    if (e->n_pieces < 0)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi: too many pieces of %lld "
                                  "elements", (long long)m->chunk);
    e->send = alloc_floats(m->total);
    e->mean = alloc_floats(m->total);
    e->recv = alloc_floats((int64_t)R * mine);
    e->pieces = calloc((size_t)e->n_pieces + 1, sizeof *e->pieces);
    e->first_piece = calloc((size_t)m->n_buckets + 1, sizeof *e->first_piece);
    e->ints = calloc((size_t)(e->n_pieces + 1) * 4 * (size_t)R, sizeof(int));
    e->gcnt = calloc((size_t)R, sizeof(int));
    e->gdsp = calloc((size_t)R, sizeof(int));
    if (m->compress) {
        size_t n = (size_t)(m->total > 0 ? m->total : 1);
        e->send16 = calloc(n, sizeof(uint16_t));
        e->mean16 = calloc(n, sizeof(uint16_t));
        e->recv16 = calloc((size_t)(R * mine > 0 ? R * mine : 1), sizeof(uint16_t));
    }
    int short16 = m->compress && (!e->send16 || !e->mean16 || !e->recv16);
    if (!e->send || !e->mean || !e->recv || !e->pieces || !e->first_piece || !e->ints ||
        !e->gcnt || !e->gdsp || short16)
        return adadelta_mpi__fail(ADADELTA_ENOMEM,
                                  "adadelta_mpi: out of memory for the %lld-element buffers",
                                  (long long)m->total);
    return 0;
}

static int p2p_setup(adadelta_mpi *m)
{
    p2p *e = calloc(1, sizeof *e);
    m->engine_state = e;
    int rc = e ? p2p_alloc(m, e) : adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    /* Agreed before the collective calls below, which every rank must make. */
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    make_pieces(m, e);
    MPI_Comm_dup(m->comm, &e->a2a_comm);
    MPI_Comm_dup(m->comm, &e->ag_comm);
    adadelta_mpi__flags_mpi(m->flags_bytes, &e->flags_type, &e->flags_op);
    return 0;
}

static float *p2p_contributions(adadelta_mpi *m) { return state(m)->send; }
static float *p2p_mean(adadelta_mpi *m) { return state(m)->mean; }
static void p2p_reserve(adadelta_mpi *m, int b) { (void)m, (void)b; }

static void p2p_start(adadelta_mpi *m, int b)
{
    p2p *e = state(m);
    for (int k = e->first_piece[b]; k < e->first_piece[b + 1]; k++) {
        piece *p = &e->pieces[k];
        if (m->compressing) {
            adadelta_mpi__pack16(m->compressing, e->send + p->lo, e->send16 + p->lo, p->hi - p->lo);
            MPI_Ialltoallv(e->send16 + p->lo, p->cnt, p->dsp, MPI_UINT16_T, p->recv16, p->rcnt,
                           p->rdsp, MPI_UINT16_T, e->a2a_comm, &p->a2a);
        } else {
            MPI_Ialltoallv(e->send + p->lo, p->cnt, p->dsp, MPI_FLOAT, p->recv, p->rcnt,
                           p->rdsp, MPI_FLOAT, e->a2a_comm, &p->a2a);
        }
        p->posted = 1;
        p->summed = p->gathering = 0;
    }
}

/* A piece whose alltoallv is done: the rank-order mean of my part; in
 * replicated mode its allgather starts. */
static void sum_piece(adadelta_mpi *m, piece *p)
{
    p2p *e = state(m);
    const float *in[m->size > 0 ? m->size : 1];
    if (m->compressing)
        adadelta_mpi__unpack16(m->compressing, p->recv16, p->recv, (int64_t)m->size * p->my_n);
    for (int r = 0; r < m->size; r++)
        in[r] = p->recv + (size_t)r * (size_t)p->my_n;
    adadelta_mpi__rank_order_mean(m, p->my_lo, in, e->mean + p->my_lo, p->my_n);
    p->summed = 1;
    if (m->mode == ADADELTA_MPI_REPLICATED && m->compressing) {
        adadelta_mpi__pack16(m->compressing, e->mean + p->my_lo, e->mean16 + p->my_lo, p->my_n);
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->mean16 + p->lo, p->cnt, p->dsp,
                        MPI_UINT16_T, e->ag_comm, &p->ag);
        p->gathering = 1;
    } else if (m->mode == ADADELTA_MPI_REPLICATED) {
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, e->mean + p->lo, p->cnt, p->dsp,
                        MPI_FLOAT, e->ag_comm, &p->ag);
        p->gathering = 1;
    }
}

/* Sums the pieces whose alltoallv completed, in piece order. */
static void p2p_progress(adadelta_mpi *m)
{
    p2p *e = state(m);
    for (int k = 0; k < e->n_pieces; k++) {
        piece *p = &e->pieces[k];
        if (!p->posted)
            return;
        if (p->summed)
            continue;
        int done = 0;
        MPI_Test(&p->a2a, &done, MPI_STATUS_IGNORE);
        if (!done)
            return;
        sum_piece(m, p);
    }
}

static void p2p_finish(adadelta_mpi *m)
{
    p2p *e = state(m);
    for (int k = 0; k < e->n_pieces; k++) {
        piece *p = &e->pieces[k];
        if (!p->posted || p->summed)
            continue;
        adadelta_mpi__wait_request(m, &p->a2a, "the gradient reduction (alltoallv)");
        sum_piece(m, p);
    }
}

static void p2p_exchange(adadelta_mpi *m)
{
    p2p *e = state(m);
    MPI_Request req;
    MPI_Iallreduce(m->flags, m->flags_all, 1, e->flags_type, e->flags_op, m->comm, &req);
    adadelta_mpi__wait_request(m, &req, "the step agreement (allreduce)");
}

/* Waits for every allgather of the step. */
static void p2p_end(adadelta_mpi *m)
{
    p2p *e = state(m);
    for (int k = 0; k < e->n_pieces; k++) {
        piece *p = &e->pieces[k];
        if (p->gathering) {
            adadelta_mpi__wait_request(m, &p->ag, "the mean's allgather");
            if (m->compressing) /* my part is there already, the same bits */
                adadelta_mpi__unpack16(m->compressing, e->mean16 + p->lo, e->mean + p->lo,
                                       p->hi - p->lo);
        }
        p->posted = p->summed = p->gathering = 0;
    }
}

static void p2p_complete_mean(adadelta_mpi *m) { p2p_end(m); }

/* Sharded: every rank sends the variables' values of its range to all. */
static void p2p_gather_variables(adadelta_mpi *m)
{
    p2p *e = state(m);
    /* the mean buffer is free between steps */
    adadelta_mpi__allgather_variables(m, e->mean, e->ag_comm, e->gcnt, e->gdsp);
}

const reduce_engine adadelta_mpi__p2p_engine = {
    .name = "p2p",
    .packs_contributions = 1,
    .setup = p2p_setup,
    .destroy = p2p_destroy,
    .contributions = p2p_contributions,
    .mean = p2p_mean,
    .reserve = p2p_reserve,
    .start = p2p_start,
    .progress = p2p_progress,
    .finish = p2p_finish,
    .exchange = p2p_exchange,
    .complete_mean = p2p_complete_mean,
    .end = p2p_end,
    .gather_variables = p2p_gather_variables,
};
