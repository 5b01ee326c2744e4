/* reduce_shm.c - the reduction engine through a shared-memory window, when
 * every rank is on one node (MPI_COMM_TYPE_SHARED). Each rank writes its
 * contribution into its own segment of an MPI_Win_allocate_shared window;
 * each rank then sums its range over all segments, in rank order, into a
 * shared mean that every rank reads directly. No MPI call is made in a
 * step: ranks meet at counters in the window (release/acquire atomics),
 * which also tell the stall watchdog who has not arrived.
 *
 * Every counter only grows; rank r waits for "R times the number of times
 * this point was passed before", so nothing is ever reset:
 *   arrivals[b]  contributions of bucket b written (reductions so far)
 *   summed[b]    parts of bucket b summed: its contributions may be reused
 *   ended        ranks done reading the mean of a step (ends so far)
 *   exchanged    step flags written (exchanges so far)
 *   written/read a sharded allgather of the variables (gathers so far) */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef shm_counter counter;

typedef struct shm {
    MPI_Comm node;
    MPI_Win win;
    float **contrib;    /* per rank: its segment's contribution (total) */
    float *mean;        /* rank 0's segment: the mean (total) */
    float *vars;        /* rank 0's segment: variables / ranges being gathered */
    counter *arrivals, *summed, *ended, *exchanged, *written, *read;
    counter *passed;    /* per rank: sync points passed (for the watchdog) */
    char *slots;        /* [2][R] step flags */
    int64_t reductions, gathers, ends, exchanges; /* this rank's epochs */
    unsigned char *done; /* per bucket: my part summed this step */
} shm;

static shm *state(const adadelta_mpi *m) { return m->engine_state; }

#define load adadelta_mpi__load
#define bump adadelta_mpi__bump
#define round_up adadelta_mpi__round_line

int adadelta_mpi__shm_possible(const adadelta_mpi *m)
{
    MPI_Comm node;
    adadelta_mpi__node_comm(m, &node);
    int n;
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    int all = n == m->size, every;
    MPI_Allreduce(&all, &every, 1, MPI_INT, MPI_LAND, m->comm);
    return every;
}

/* Ranks whose count of passed sync points is below mine. */
static void laggards(const adadelta_mpi *m, char *buf, size_t n)
{
    shm *e = state(m);
    uint64_t mine = load(&e->passed[m->rank]);
    size_t at = 0;
    buf[0] = '\0';
    for (int r = 0; r < m->size && at + 16 < n; r++)
        if (load(&e->passed[r]) < mine)
            at += (size_t)snprintf(buf + at, n - at, "%s%d", at ? " " : "", r);
    if (!at)
        snprintf(buf, n, "none behind this rank (it may be the one late)");
}

static void wait_for(const adadelta_mpi *m, const shm_counter *c, uint64_t target,
                     const char *what)
{
    adadelta_mpi__wait_counter(m, c, target, what, laggards);
}

static void pass(adadelta_mpi *m) { bump(&state(m)->passed[m->rank]); }

static void shm_destroy(adadelta_mpi *m)
{
    shm *e = state(m);
    if (!e)
        return;
    adadelta_mpi__node_window_free(&e->win, &e->node);
    free(e->contrib);
    free(e->done);
    free(e);
    m->engine_state = NULL;
}

/* Rank 0's extra bytes: the mean, the variables area, the counters, the
 * flags slots. */
static int64_t shared_bytes(const adadelta_mpi *m)
{
    int64_t floats = round_up(m->total * (int64_t)sizeof(float));
    int64_t counters = (int64_t)sizeof(counter) * (2 * m->n_buckets + 4 + m->size);
    return 2 * floats + counters + round_up(2 * (int64_t)m->size * (int64_t)m->flags_bytes);
}

static void lay_out(adadelta_mpi *m, char *base0)
{
    shm *e = state(m);
    int64_t floats = round_up(m->total * (int64_t)sizeof(float));
    char *p = base0 + floats; /* rank 0's own contribution first */
    e->mean = (float *)p;
    p += floats;
    e->vars = (float *)p;
    p += floats;
    counter *c = (counter *)p;
    e->arrivals = c;
    e->summed = c + m->n_buckets;
    e->ended = e->summed + m->n_buckets;
    e->exchanged = e->ended + 1;
    e->written = e->exchanged + 1;
    e->read = e->written + 1;
    e->passed = e->read + 1;
    e->slots = (char *)(e->passed + m->size);
}

static int shm_setup(adadelta_mpi *m)
{
    shm *e = calloc(1, sizeof *e);
    m->engine_state = e;
    if (e) {
        e->win = MPI_WIN_NULL;
        e->node = MPI_COMM_NULL;
        e->contrib = calloc((size_t)m->size, sizeof *e->contrib);
        e->done = calloc((size_t)m->n_buckets + 1, 1);
    }
    /* Agreed before the collective calls below, which every rank must make. */
    int rc = e && e->contrib && e->done
                 ? 0
                 : adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    adadelta_mpi__node_comm(m, &e->node);
    MPI_Comm_set_errhandler(e->node, MPI_ERRORS_RETURN);
    int64_t mine = round_up(m->total * (int64_t)sizeof(float)) + (m->rank ? 0 : shared_bytes(m));
    if ((rc = adadelta_mpi__node_window(e->node, mine, &e->win, e->contrib)))
        return rc;
    lay_out(m, (char *)e->contrib[0]);
    if (m->rank == 0)
        memset((char *)e->contrib[0] + round_up(m->total * (int64_t)sizeof(float)), 0,
               (size_t)shared_bytes(m));
    MPI_Barrier(e->node);
    return 0;
}

static float *shm_contributions(adadelta_mpi *m) { return state(m)->contrib[m->rank]; }
static float *shm_mean(adadelta_mpi *m) { return state(m)->mean; }

static void shm_reserve(adadelta_mpi *m, int b)
{
    shm *e = state(m);
    wait_for(m, &e->summed[b], (uint64_t)m->size * (uint64_t)e->reductions,
             "the reuse of a bucket's buffer");
}

static void shm_start(adadelta_mpi *m, int b)
{
    shm *e = state(m);
    e->done[b] = 0;
    bump(&e->arrivals[b]);
    pass(m);
}

/* My part of bucket b, summed over the ranks' segments in rank order. */
static void sum_bucket(adadelta_mpi *m, int b)
{
    shm *e = state(m);
    int64_t a, z;
    if (adadelta_mpi__portion(m, m->rank, m->buckets[b].lo, m->buckets[b].hi, &a, &z)) {
        const float *in[m->size];
        for (int r = 0; r < m->size; r++)
            in[r] = e->contrib[r] + a;
        adadelta_mpi__rank_order_mean(m, a, in, e->mean + a, z - a);
    }
    e->done[b] = 1;
    bump(&e->summed[b]);
}

static int bucket_arrived(const adadelta_mpi *m, int b)
{
    const shm *e = state(m);
    return load(&e->arrivals[b]) >= (uint64_t)m->size * (uint64_t)(e->reductions + 1) &&
           load(e->ended) >= (uint64_t)m->size * (uint64_t)e->ends;
}

static void shm_progress(adadelta_mpi *m)
{
    shm *e = state(m);
    for (int b = 0; b < m->n_buckets; b++)
        if (m->buckets[b].started && !e->done[b] && bucket_arrived(m, b))
            sum_bucket(m, b);
}

static void shm_finish(adadelta_mpi *m)
{
    shm *e = state(m);
    wait_for(m, e->ended, (uint64_t)m->size * (uint64_t)e->ends,
             "the other ranks' previous step");
    for (int b = 0; b < m->n_buckets; b++) {
        if (e->done[b])
            continue;
        wait_for(m, &e->arrivals[b], (uint64_t)m->size * (uint64_t)(e->reductions + 1),
                 "the gradients of a bucket (shared memory)");
        sum_bucket(m, b);
    }
}

static void shm_exchange(adadelta_mpi *m)
{
    shm *e = state(m);
    char *slots = e->slots + (size_t)(e->exchanges % 2) * (size_t)m->size * m->flags_bytes;
    memcpy(slots + (size_t)m->rank * m->flags_bytes, m->flags, m->flags_bytes);
    bump(e->exchanged);
    pass(m);
    e->exchanges++;
    wait_for(m, e->exchanged, (uint64_t)m->size * (uint64_t)e->exchanges,
             "the step agreement (shared memory)");
    memcpy(m->flags_all, slots, m->flags_bytes);
    for (int r = 1; r < m->size; r++)
        adadelta_mpi__combine_flags(m->flags_all,
                                    (const step_flags *)(slots + (size_t)r * m->flags_bytes));
}

/* Every rank summed its ranges before the exchange: the mean is whole. */
static void shm_complete_mean(adadelta_mpi *m) { (void)m; }

static void shm_end(adadelta_mpi *m)
{
    shm *e = state(m);
    int reduced = 0;
    for (int b = 0; b < m->n_buckets; b++)
        reduced |= m->buckets[b].started;
    if (reduced)
        e->reductions++;
    e->ends++;
    bump(e->ended);
}

/* Sharded: the variables' ranges through the shared area, straight from
 * and into the variables (no flat copy of them). */
static void shm_gather_variables(adadelta_mpi *m)
{
    shm *e = state(m);
    wait_for(m, e->read, (uint64_t)m->size * (uint64_t)e->gathers,
             "the previous gather of the variables");
    for (int v = 0; v < m->nv; v++) {
        int64_t b0, b1;
        if (adadelta_mpi__own_part(m, v, &b0, &b1))
            adadelta_mpi__to_words(m, v, b0, b1, e->vars);
    }
    bump(e->written);
    pass(m);
    wait_for(m, e->written, (uint64_t)m->size * (uint64_t)(e->gathers + 1),
             "the gather of the variables (shared memory)");
    for (int v = 0; v < m->nv; v++) {
        int64_t b0 = 0, b1 = 0, n = m->vsize[v];
        if (!adadelta_mpi__own_part(m, v, &b0, &b1))
            b0 = b1 = 0;
        if (b0 > 0)
            adadelta_mpi__from_words(m, v, 0, b0, e->vars);
        if (n > b1)
            adadelta_mpi__from_words(m, v, b1, n, e->vars);
    }
    bump(e->read);
    e->gathers++;
}

const reduce_engine adadelta_mpi__shm_engine = {
    .name = "shm",
    .setup = shm_setup,
    .destroy = shm_destroy,
    .contributions = shm_contributions,
    .mean = shm_mean,
    .reserve = shm_reserve,
    .start = shm_start,
    .progress = shm_progress,
    .finish = shm_finish,
    .exchange = shm_exchange,
    .complete_mean = shm_complete_mean,
    .end = shm_end,
    .gather_variables = shm_gather_variables,
};
