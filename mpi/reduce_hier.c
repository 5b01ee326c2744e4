/* reduce_hier.c - the reduction engine for ranks on several nodes, each
 * node holding consecutive ranks (mpirun's default placement by slot).
 * On a node the ranks write their contributions into a shared-memory
 * window, as in reduce_shm.c; between nodes the sum travels as a chain:
 *
 *   node 0 adds its ranks' contributions in rank order and sends the
 *   partial sum to node 1, which adds its ranks' in rank order and sends
 *   it on, ...; the last node divides by R and sends the mean to node 0,
 *   which passes it to node 1, ... up to the node before the last; each
 *   node's copy lands in its shared mean.
 *
 * Since nodes hold consecutive ranks, that is exactly the flat sum
 * ((c_0 + c_1) + c_2) + ... of the other engines, bit for bit. Each bucket
 * is split into P parts (P: ranks of the smallest node) and node rank j
 * carries part j through its own chain, so every rank of a node moves
 * bytes at once, and each part is cut into pieces of at most
 * HIER_PIECE_ELEMENTS so that the chain is a pipeline: while node k adds
 * piece i+1, node k+1 adds piece i. Per node, at most two bytes go out and
 * two come in for each byte of gradient (a ring allreduce moves 2 (N-1)/N;
 * its rotating sum order would not be the ranks' order), and no node sends
 * more than another; within a node nothing is copied but the sums.
 *
 * A compressed step (compress.c) sends the mean as 16-bit values; the
 * partial sums stay float32, as the sum is float32.
 *
 * The messages are point-to-point on a communicator of their own, tagged
 * by piece, advanced with MPI_Test in progress() (the overlap API's
 * grad_ready calls) and finish(). Window counters (as in reduce_shm.c):
 *   arrivals[b]  contributions of bucket b written on this node
 *   summed[b]    node ranks done reading bucket b's contributions
 *   meaned[b]    node ranks whose part of bucket b's mean is final
 *   ended        node ranks done reading the mean of a step
 *   passed[r]    sync points node rank r has passed (for the watchdog) */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 MiB messages: large enough for the network's bandwidth, small enough
 * for the chain to pipeline a bucket (measured over TCP here: 256 KiB to
 * 4 MiB gave the same step time). */
#define HIER_PIECE_ELEMENTS ((int64_t)1 << 18)

#define load adadelta_mpi__load
#define bump adadelta_mpi__bump
#define round_up adadelta_mpi__round_line

enum phase {
    IDLE,    /* not begun this step */
    RECV,    /* waiting for the previous node's partial sum (node 0: none) */
    SEND,    /* summed; sending it on (the last node: the mean, to node 0) */
    FINAL,   /* waiting for the mean */
    FORWARD, /* passing the mean on to the next node */
    DONE
};

typedef struct piece {
    int64_t lo, n;       /* flat range */
    int b;               /* its bucket */
    int phase;
    MPI_Request recv, send;
} piece;

typedef struct hier {
    MPI_Comm node, chain;
    MPI_Win win;
    node_layout nl;
    int parts;           /* P: node ranks below it carry part local_rank */
    float **contrib;     /* per node rank: its segment's contribution */
    float *mean;         /* node rank 0's segment: the node's mean */
    shm_counter *arrivals, *summed, *meaned, *ended, *passed;
    int64_t reductions, ends; /* this rank's epochs */
    int n_pieces;        /* of this rank's part */
    piece *pieces;
    int *first_piece;    /* per bucket, n_buckets + 1 */
    int *added_left, *done_left; /* per bucket: my pieces still to add, to end */
    float *flat;         /* sharded: the gather of the variables */
    uint16_t *mean16;    /* compressed: the mean as it travels */
    int *cnt, *dsp;
    MPI_Datatype flags_type;
    MPI_Op flags_op;
} hier;

static hier *state(const adadelta_mpi *m) { return m->engine_state; }

static int64_t piece_elements(const adadelta_mpi *m)
{
    return m->chunk < HIER_PIECE_ELEMENTS ? m->chunk : HIER_PIECE_ELEMENTS;
}

/* Part j of P of bucket b, as a flat range. */
static void part_of(const adadelta_mpi *m, int b, int j, int P, int64_t *lo, int64_t *hi)
{
    int64_t a = m->buckets[b].lo, len = m->buckets[b].hi - a;
    int64_t al = m->any_f64 ? 2 : 1; /* between whole float64 elements */
    *lo = a + len * j / P / al * al;
    *hi = a + len * (j + 1) / P / al * al;
}

/* Pieces of part j over all buckets; fills e's pieces when e is given. */
static int64_t count_pieces(const adadelta_mpi *m, int j, int P, int64_t max, hier *e)
{
    int64_t n = 0;
    for (int b = 0; b < m->n_buckets; b++) {
        int64_t lo, hi;
        part_of(m, b, j, P, &lo, &hi);
        if (e)
            e->first_piece[b] = (int)n;
        for (int64_t a = lo; a < hi; a += max, n++)
            if (e)
                e->pieces[n] = (piece){a, hi - a < max ? hi - a : max, b, IDLE,
                                       MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    }
    if (e)
        e->first_piece[m->n_buckets] = (int)n;
    return n;
}

int adadelta_mpi__hier_possible(const adadelta_mpi *m)
{
    MPI_Comm node;
    adadelta_mpi__node_comm(m, &node);
    node_layout l;
    int ok = adadelta_mpi__node_layout(m, node, &l) == 0;
    MPI_Comm_free(&node);
    if (!ok) /* agreed: out of memory on some rank */
        return 0;
    free(l.starts);
    if (l.nodes < 2 || !l.consecutive)
        return 0;
    /* a piece's two tags must fit (MPI promises 32767, Open MPI 2^31 - 1) */
    int *tag_ub, flag;
    MPI_Comm_get_attr(m->comm, MPI_TAG_UB, &tag_ub, &flag);
    int64_t most = (flag ? *tag_ub : 32767) / 2;
    for (int j = 0; j < l.min_size; j++)
        if (count_pieces(m, j, l.min_size, piece_elements(m), NULL) > most)
            return 0;
    return 1;
}

/* Node ranks behind this one in passed sync points (the watchdog). */
static void laggards(const adadelta_mpi *m, char *buf, size_t n)
{
    const hier *e = state(m);
    uint64_t mine = load(&e->passed[e->nl.local_rank]);
    size_t at = 0;
    buf[0] = '\0';
    for (int r = 0; r < e->nl.local_size && at + 16 < n; r++)
        if (load(&e->passed[r]) < mine)
            at += (size_t)snprintf(buf + at, n - at, "%s%d", at ? " " : "",
                                   e->nl.starts[e->nl.index] + r);
    if (!at)
        snprintf(buf, n, "none of this node's (another node may be late)");
}

static void pass(adadelta_mpi *m) { bump(&state(m)->passed[state(m)->nl.local_rank]); }

static void hier_destroy(adadelta_mpi *m)
{
    hier *e = state(m);
    if (!e)
        return;
    adadelta_mpi__node_window_free(&e->win, &e->node);
    if (e->chain != MPI_COMM_NULL)
        MPI_Comm_free(&e->chain);
    if (e->flags_type != MPI_DATATYPE_NULL) {
        MPI_Type_free(&e->flags_type);
        MPI_Op_free(&e->flags_op);
    }
    free(e->nl.starts);
    free(e->contrib);
    free(e->pieces);
    free(e->first_piece);
    free(e->added_left);
    free(e->done_left);
    free(e->flat);
    free(e->mean16);
    free(e->cnt);
    free(e->dsp);
    free(e);
    m->engine_state = NULL;
}

/* Node rank 0's extra bytes: the mean and the counters. */
static int64_t shared_bytes(const adadelta_mpi *m, const hier *e)
{
    int64_t counters = (int64_t)sizeof(shm_counter) * (3 * m->n_buckets + 1 + e->nl.local_size);
    return round_up(m->total * (int64_t)sizeof(float)) + counters;
}

static void lay_out(adadelta_mpi *m, hier *e)
{
    char *p = (char *)e->contrib[0] + round_up(m->total * (int64_t)sizeof(float));
    e->mean = (float *)p;
    p += round_up(m->total * (int64_t)sizeof(float));
    e->arrivals = (shm_counter *)p;
    e->summed = e->arrivals + m->n_buckets;
    e->meaned = e->summed + m->n_buckets;
    e->ended = e->meaned + m->n_buckets;
    e->passed = e->ended + 1;
}

/* Everything a rank allocates for itself (agreed by the caller). */
static int alloc_local(adadelta_mpi *m, hier *e)
{
    int j = e->nl.local_rank;
    int64_t piece_max = piece_elements(m);
    e->parts = e->nl.min_size;
    e->n_pieces = j < e->parts ? (int)count_pieces(m, j, e->parts, piece_max, NULL) : 0;
    e->contrib = calloc((size_t)e->nl.local_size, sizeof *e->contrib);
    e->pieces = calloc((size_t)e->n_pieces + 1, sizeof *e->pieces);
    e->first_piece = calloc((size_t)m->n_buckets + 1, sizeof *e->first_piece);
    e->added_left = calloc((size_t)m->n_buckets + 1, sizeof *e->added_left);
    e->done_left = calloc((size_t)m->n_buckets + 1, sizeof *e->done_left);
    e->cnt = calloc((size_t)m->size, sizeof *e->cnt);
    e->dsp = calloc((size_t)m->size, sizeof *e->dsp);
    if (m->mode == ADADELTA_MPI_SHARDED)
        e->flat = calloc((size_t)(m->total > 0 ? m->total : 1), sizeof(float));
    if (m->compress)
        e->mean16 = calloc((size_t)(m->total > 0 ? m->total : 1), sizeof(uint16_t));
    if (!e->contrib || !e->pieces || !e->first_piece || !e->added_left ||
        !e->done_left || !e->cnt || !e->dsp || (m->mode == ADADELTA_MPI_SHARDED && !e->flat) ||
        (m->compress && !e->mean16))
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    if (j < e->parts)
        count_pieces(m, j, e->parts, piece_max, e);
    for (int b = 0; b < m->n_buckets; b++)
        e->added_left[b] = e->done_left[b] = e->first_piece[b + 1] - e->first_piece[b];
    return 0;
}

static int hier_setup(adadelta_mpi *m)
{
    hier *e = calloc(1, sizeof *e);
    m->engine_state = e;
    if (e) { /* before any return: destroy() frees what is not NULL */
        e->win = MPI_WIN_NULL;
        e->node = e->chain = MPI_COMM_NULL;
        e->flags_type = MPI_DATATYPE_NULL;
    }
    int rc = e ? 0 : adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    adadelta_mpi__node_comm(m, &e->node);
    MPI_Comm_set_errhandler(e->node, MPI_ERRORS_RETURN);
    if ((rc = adadelta_mpi__node_layout(m, e->node, &e->nl)))
        return rc;
    /* Agreed before the collective calls below, which every rank must make. */
    if ((rc = adadelta_mpi__agree(m, alloc_local(m, e))))
        return rc;
    MPI_Comm_dup(m->comm, &e->chain);
    adadelta_mpi__flags_mpi(m->flags_bytes, &e->flags_type, &e->flags_op);
    int64_t mine = round_up(m->total * (int64_t)sizeof(float)) +
                   (e->nl.local_rank ? 0 : shared_bytes(m, e));
    if ((rc = adadelta_mpi__node_window(e->node, mine, &e->win, e->contrib)))
        return rc;
    lay_out(m, e);
    if (e->nl.local_rank == 0)
        memset(e->mean, 0, (size_t)shared_bytes(m, e));
    MPI_Barrier(e->node);
    return 0;
}

static float *hier_contributions(adadelta_mpi *m)
{
    return state(m)->contrib[state(m)->nl.local_rank];
}
static float *hier_mean(adadelta_mpi *m) { return state(m)->mean; }

static void wait_for(const adadelta_mpi *m, const shm_counter *c, uint64_t target,
                     const char *what)
{
    adadelta_mpi__wait_counter(m, c, target, what, laggards);
}

static void hier_reserve(adadelta_mpi *m, int b)
{
    hier *e = state(m);
    wait_for(m, &e->summed[b], (uint64_t)e->parts * (uint64_t)e->reductions,
             "the reuse of a bucket's buffer");
}

static void hier_start(adadelta_mpi *m, int b)
{
    hier *e = state(m);
    bump(&e->arrivals[b]);
    pass(m);
    if (e->nl.local_rank < e->parts && e->first_piece[b] == e->first_piece[b + 1]) {
        bump(&e->summed[b]); /* my part of this bucket is empty */
        bump(&e->meaned[b]);
    }
}

static int peer(const hier *e, int node) { return e->nl.starts[node] + e->nl.local_rank; }

/* The node's ranks' contributions to piece p, added in rank order to the
 * partial sum of the nodes before (node 0: from the first contribution);
 * the last node divides by R. */
static void add_node(adadelta_mpi *m, hier *e, const piece *p)
{
    const float *in[e->nl.local_size];
    for (int r = 0; r < e->nl.local_size; r++)
        in[r] = e->contrib[r] + p->lo;
    adadelta_mpi__rank_order_sum(m, p->lo, in, e->nl.local_size, e->mean + p->lo, p->n,
                                 e->nl.index > 0, e->nl.index == e->nl.nodes - 1);
}

static int test(MPI_Request *req)
{
    int done = 0;
    MPI_Test(req, &done, MPI_STATUS_IGNORE);
    return done;
}

/* Takes piece p as far as it can go without waiting. Tags: 2i for piece
 * i's partial sum, 2i + 1 for its mean. */
static void advance(adadelta_mpi *m, hier *e, piece *p)
{
    int K = e->nl.nodes, k = e->nl.index, last = k == K - 1, count = (int)p->n;
    uint64_t L = (uint64_t)e->nl.local_size;
    float *at = e->mean + p->lo;
    int partial = 2 * (int)(p - e->pieces), mean = partial + 1;
    /* where the mean travels from and to: 16-bit values when compressed */
    int kind = m->compressing;
    void *travel = kind ? (void *)(e->mean16 + p->lo) : (void *)at;
    MPI_Datatype type = kind ? MPI_UINT16_T : MPI_FLOAT;
    if (p->phase == IDLE) {
        /* the node's ranks must be done reading the previous step's mean */
        if (!m->buckets[p->b].started || load(e->ended) < L * (uint64_t)e->ends)
            return;
        if (k > 0)
            MPI_Irecv(at, count, MPI_FLOAT, peer(e, k - 1), partial, e->chain, &p->recv);
        p->phase = RECV;
    }
    if (p->phase == RECV) {
        if (load(&e->arrivals[p->b]) < L * (uint64_t)(e->reductions + 1) || !test(&p->recv))
            return;
        add_node(m, e, p);
        if (--e->added_left[p->b] == 0)
            bump(&e->summed[p->b]);
        if (last && kind)
            adadelta_mpi__pack16(kind, at, e->mean16 + p->lo, p->n);
        if (last)
            MPI_Isend(travel, count, type, peer(e, 0), mean, e->chain, &p->send);
        else
            MPI_Isend(at, count, MPI_FLOAT, peer(e, k + 1), partial, e->chain, &p->send);
        p->phase = SEND;
    }
    if (p->phase == SEND) {
        if (!test(&p->send))
            return;
        if (!last)
            MPI_Irecv(travel, count, type, peer(e, k == 0 ? K - 1 : k - 1), mean, e->chain,
                      &p->recv);
        p->phase = last ? DONE : FINAL;
    }
    if (p->phase == FINAL) {
        if (!test(&p->recv))
            return;
        if (kind)
            adadelta_mpi__unpack16(kind, e->mean16 + p->lo, at, p->n);
        if (k + 1 < K - 1)
            MPI_Isend(travel, count, type, peer(e, k + 1), mean, e->chain, &p->send);
        p->phase = k + 1 < K - 1 ? FORWARD : DONE;
    }
    if (p->phase == FORWARD) {
        if (!test(&p->send))
            return;
        p->phase = DONE;
    }
    /* here only when p became DONE in this call */
    if (--e->done_left[p->b] == 0)
        bump(&e->meaned[p->b]);
}

static void advance_all(adadelta_mpi *m)
{
    hier *e = state(m);
    for (int k = 0; k < e->n_pieces; k++)
        if (e->pieces[k].phase != DONE)
            advance(m, e, &e->pieces[k]);
}

static int mean_final(const adadelta_mpi *m)
{
    const hier *e = state(m);
    for (int b = 0; b < m->n_buckets; b++)
        if (m->buckets[b].started &&
            load(&e->meaned[b]) < (uint64_t)e->parts * (uint64_t)(e->reductions + 1))
            return 0;
    return 1;
}

static void hier_finish(adadelta_mpi *m)
{
    waiter w;
    adadelta_mpi__wait_start(&w);
    for (;;) {
        advance_all(m);
        if (mean_final(m))
            return;
        adadelta_mpi__wait_poll(m, &w, "the gradient reduction across nodes", laggards);
    }
}

static void hier_exchange(adadelta_mpi *m)
{
    hier *e = state(m);
    MPI_Request req;
    MPI_Iallreduce(m->flags, m->flags_all, 1, e->flags_type, e->flags_op, m->comm, &req);
    adadelta_mpi__wait_request(m, &req, "the step agreement (allreduce)");
}

/* finish() waited for the node's whole mean. */
static void hier_complete_mean(adadelta_mpi *m) { (void)m; }

static void hier_end(adadelta_mpi *m)
{
    hier *e = state(m);
    int reduced = 0;
    for (int b = 0; b < m->n_buckets; b++)
        reduced |= m->buckets[b].started;
    if (reduced) {
        e->reductions++;
        for (int k = 0; k < e->n_pieces; k++)
            e->pieces[k].phase = IDLE;
        for (int b = 0; b < m->n_buckets; b++)
            e->added_left[b] = e->done_left[b] = e->first_piece[b + 1] - e->first_piece[b];
    }
    e->ends++;
    bump(e->ended);
    pass(m);
}

/* Sharded: the ranges of the variables through MPI allgathers (each
 * rank's range reaches every rank; within a node through Open MPI's own
 * shared memory). */
static void hier_gather_variables(adadelta_mpi *m)
{
    hier *e = state(m);
    adadelta_mpi__allgather_variables(m, e->flat, e->chain, e->cnt, e->dsp);
}

const reduce_engine adadelta_mpi__hier_engine = {
    .name = "hier",
    .setup = hier_setup,
    .destroy = hier_destroy,
    .contributions = hier_contributions,
    .mean = hier_mean,
    .reserve = hier_reserve,
    .start = hier_start,
    .progress = advance_all,
    .finish = hier_finish,
    .exchange = hier_exchange,
    .complete_mean = hier_complete_mean,
    .end = hier_end,
    .gather_variables = hier_gather_variables,
};
