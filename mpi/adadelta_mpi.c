/* adadelta_mpi.c - data-parallel Adadelta over MPI on top of the core's
 * split step (adadelta_dist.h).
 *
 * One step: the core's dist_begin writes this rank's contribution t (the
 * gradient divided by the loss scale, plus the local gradient accumulator)
 * into a flat float32 buffer holding every variable. The buffer is cut into
 * R contiguous ranges at shard boundaries; an MPI_Alltoallv gives rank j
 * every rank's piece of range j, which it sums in rank order 0..R-1 and
 * divides by R. The order never depends on the MPI library, so every rank
 * computes the same bits (no MPI_Allreduce on floats).
 *   replicated: MPI_Allgatherv of the mean ranges, then every rank runs
 *               the step over all shards.
 *   sharded:    each rank owns the optimizer state of its range only and
 *               updates that part of the variables; an MPI_Allgatherv of
 *               the variables' ranges follows.
 * Decisions that depend on gradients go through collectives: which
 * variables have a gradient (checked here), the loss-scale finite check and
 * check_finite (the core's ops->any), the norms for clipping (computed from
 * the identical mean, or summed per shard through ops->sum_doubles when
 * sharded).
 */
#include "adadelta_mpi.h"
#include "adadelta_dist.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct adadelta_mpi {
    MPI_Comm comm;
    int rank, size;
    adadelta *core;
    adadelta_mpi_mode mode;
    int check;        /* compare checksums after every apply */
    int ready;        /* agreement done, partition made, buffers allocated */

    int nv;
    int64_t total;
    int64_t *voff;    /* nv + 1 flat offsets of the variables */
    int *bounds;      /* size + 1 shard bounds of the ranks' ranges */
    int64_t *eoff;    /* size + 1 flat offsets of the ranks' ranges */
    int *cnt, *dsp;   /* per rank: elements and offset of its range */
    int *rcnt, *rdsp; /* alltoallv receive layout: my range from each rank */
    int *zero;        /* size zeros */
    float *send;      /* total: this rank's contribution */
    float *recv;      /* size * my range: everyone's pieces of my range */
    float *mean;      /* total: the mean (own range at least); scratch */
    unsigned char *pres; /* 2 * nv + 1 presence bytes */
};

/* ------------------------------------------------------------ errors */

static __thread char err_msg[1024];

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return status;
}

/* A core call failed: keep its message. */
static int core_fail(int status)
{
    if (status)
        snprintf(err_msg, sizeof err_msg, "%s", adadelta_last_error());
    return status;
}

const char *adadelta_mpi_last_error(void) { return err_msg; }

/* Makes a status collective: every rank returns the status of the lowest
 * failing rank (its own if it failed) and the failing rank's message. No
 * allocation, so every rank always makes the same two calls. */
static int agree(MPI_Comm comm, int rank, int size, int rc)
{
    int key = rc ? rank : size, first;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size)
        return 0;
    struct {
        int status;
        char msg[sizeof err_msg];
    } what;
    if (rank == first) {
        what.status = rc;
        snprintf(what.msg, sizeof what.msg, "%s", err_msg);
    }
    MPI_Bcast(&what, (int)sizeof what, MPI_BYTE, first, comm);
    if (rc)
        return rc;
    return fail(what.status, "rank %d: %s", first, what.msg);
}

/* ------------------------------------------------------------ hashing */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    /* Word at a time (the checksum runs over whole models). */
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * FNV_PRIME;
    }
    for (; n; n--, p++)
        h = (h ^ *p) * FNV_PRIME;
    return h;
}

static uint64_t fnv_i64(uint64_t h, int64_t x) { return fnv(h, &x, sizeof x); }

/* -------------------------------------------------------- the MPI ops */

static int op_any(void *ctx, int local, int *global)
{
    adadelta_mpi *m = ctx;
    int l = local != 0, g = 0;
    MPI_Allreduce(&l, &g, 1, MPI_INT, MPI_LOR, m->comm);
    *global = g;
    return 0;
}

/* Each entry is non-zero on the one rank that owns its shard: the sum is
 * exact whatever order MPI adds in. */
static int op_sum_doubles(void *ctx, double *values, int n)
{
    adadelta_mpi *m = ctx;
    MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, m->comm);
    return 0;
}

/* ------------------------------------------------------ create/destroy */

static void free_buffers(adadelta_mpi *m)
{
    free(m->voff);
    free(m->bounds);
    free(m->eoff);
    free(m->cnt);
    free(m->dsp);
    free(m->rcnt);
    free(m->rdsp);
    free(m->zero);
    free(m->send);
    free(m->recv);
    free(m->mean);
    free(m->pres);
    m->voff = m->eoff = NULL;
    m->bounds = m->cnt = m->dsp = m->rcnt = m->rdsp = m->zero = NULL;
    m->send = m->recv = m->mean = NULL;
    m->pres = NULL;
}

static int wrap(MPI_Comm comm, adadelta *core, adadelta_mpi_mode mode, int local_rc,
                adadelta_mpi **out)
{
    adadelta_mpi *m = calloc(1, sizeof *m);
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int rc = local_rc;
    if (!rc && !m)
        rc = fail(ADADELTA_ENOMEM, "adadelta_mpi_create: out of memory");
    if (!rc && mode != ADADELTA_MPI_REPLICATED && mode != ADADELTA_MPI_SHARDED)
        rc = fail(ADADELTA_EINVAL, "adadelta_mpi_create: mode %d is not "
                  "ADADELTA_MPI_REPLICATED or ADADELTA_MPI_SHARDED", (int)mode);
    /* The mode must be the same everywhere. */
    int mm[2] = {(int)mode, -(int)mode}, g[2];
    MPI_Allreduce(mm, g, 2, MPI_INT, MPI_MIN, comm);
    if (!rc && g[0] != -g[1])
        rc = fail(ADADELTA_EMISMATCH, "adadelta_mpi_create: ranks disagree on the mode "
                  "(replicated on some, sharded on others)");
    rc = agree(comm, rank, size, rc);
    if (rc) {
        free(m);
        return rc;
    }
    MPI_Comm_dup(comm, &m->comm);
    m->rank = rank;
    m->size = size;
    m->core = core;
    m->mode = mode;
    const char *env = getenv("ADADELTA_MPI_CHECK");
    m->check = env && *env && strcmp(env, "0") != 0;
    *out = m;
    return 0;
}

int adadelta_mpi_create(MPI_Comm comm, const adadelta_config *cfg, adadelta_mpi_mode mode,
                        adadelta_mpi **out)
{
    err_msg[0] = '\0';
    if (!out)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_create: out is NULL");
    *out = NULL;
    adadelta *core = NULL;
    int rc = core_fail(adadelta_create(cfg, &core));
    rc = wrap(comm, core, mode, rc, out);
    if (rc)
        adadelta_destroy(core);
    return rc;
}

int adadelta_mpi_wrap(MPI_Comm comm, adadelta *core, adadelta_mpi_mode mode,
                      adadelta_mpi **out)
{
    err_msg[0] = '\0';
    int rc = 0;
    if (!out)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_wrap: out is NULL");
    *out = NULL;
    if (!core)
        rc = fail(ADADELTA_EINVAL, "adadelta_mpi_wrap: core is NULL");
    return wrap(comm, core, mode, rc, out);
}

void adadelta_mpi_destroy(adadelta_mpi *m)
{
    if (!m)
        return;
    adadelta_destroy(m->core);
    free_buffers(m);
    MPI_Comm_free(&m->comm);
    free(m);
}

adadelta *adadelta_mpi_core(adadelta_mpi *m) { return m ? m->core : NULL; }
adadelta_mpi_mode adadelta_mpi_get_mode(const adadelta_mpi *m)
{
    return m ? m->mode : ADADELTA_MPI_REPLICATED;
}

int adadelta_mpi_set_threads(adadelta_mpi *m, int threads)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_set_threads: NULL");
    return core_fail(adadelta_set_threads(m->core, threads));
}

void adadelta_mpi_set_check_identical(adadelta_mpi *m, int on)
{
    if (!m)
        return;
    m->check = on != 0;
    /* The check is collective: once started, every rank must agree. */
    if (m->ready)
        MPI_Allreduce(MPI_IN_PLACE, &m->check, 1, MPI_INT, MPI_LOR, m->comm);
}

int adadelta_mpi_add_variable(adadelta_mpi *m, const char *name, adadelta_dtype dtype,
                              void *data, int ndim, const int64_t *shape)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_add_variable: NULL");
    if (m->ready)
        return fail(ADADELTA_ESTATE, "adadelta_mpi_add_variable '%s': variables are fixed "
                    "after the first collective step", name ? name : "(null)");
    int v = adadelta_add_variable(m->core, name, dtype, data, ndim, shape);
    return v < 0 ? core_fail(v) : v;
}

int adadelta_mpi_exclude_from_weight_decay(adadelta_mpi *m, const int *indices,
                                           int n_indices, const char *const *names,
                                           int n_names)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_exclude_from_weight_decay: NULL");
    if (m->ready) /* the ranks checked their exclusions agree: keep it so */
        return fail(ADADELTA_ESTATE,
                    "adadelta_mpi_exclude_from_weight_decay: only before the first apply");
    return core_fail(adadelta_exclude_from_weight_decay(m->core, indices, n_indices, names,
                                                        n_names));
}

/* ---------------------------------------------------------- agreement */

static uint64_t config_hash(const adadelta_mpi *m, int *rc)
{
    char *json = adadelta_config_to_json(adadelta_get_config(m->core));
    if (!json) {
        *rc = core_fail(ADADELTA_ENOMEM);
        return 0;
    }
    uint64_t h = fnv(FNV_OFFSET, json, strlen(json));
    free(json);
    const adadelta_config *c = adadelta_get_config(m->core);
    h = fnv_i64(h, c->check_finite);
    h = fnv_i64(h, c->learning_rate.kind);
    return fnv_i64(h, m->mode);
}

static uint64_t variables_hash(const adadelta_mpi *m)
{
    uint64_t h = FNV_OFFSET;
    int n = adadelta_num_variables(m->core);
    h = fnv_i64(h, n);
    for (int v = 0; v < n; v++) {
        const char *name = adadelta_variable_name(m->core, v);
        h = fnv(h, name, strlen(name) + 1);
        int ndim;
        int64_t shape[ADADELTA_MAX_DIMS];
        adadelta_variable_shape(m->core, v, &ndim, shape);
        h = fnv_i64(h, ndim);
        for (int d = 0; d < ndim; d++)
            h = fnv_i64(h, shape[d]);
        h = fnv_i64(h, adadelta_uses_weight_decay(m->core, v));
    }
    return h;
}

/* Ranks (up to a few) whose value differs from rank 0's, as text. */
/* "3 (2 in all)": the first rank whose value differs from rank 0's, and how
 * many do; empty when none. Collective, no allocation. */
static void differing_ranks(const adadelta_mpi *m, uint64_t mine, char *buf, size_t n)
{
    uint64_t root = mine;
    MPI_Bcast(&root, 1, MPI_UINT64_T, 0, m->comm);
    int differs = mine != root;
    int key = differs ? m->rank : m->size, first, count;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, m->comm);
    MPI_Allreduce(&differs, &count, 1, MPI_INT, MPI_SUM, m->comm);
    buf[0] = '\0';
    if (count == 1)
        snprintf(buf, n, "%d", first);
    else if (count > 1)
        snprintf(buf, n, "%d (%d in all)", first, count);
}

static int check_agreement(adadelta_mpi *m)
{
    int rc = 0;
    uint64_t h[2], lo[2], hi[2];
    h[0] = config_hash(m, &rc);
    h[1] = variables_hash(m);
    rc = agree(m->comm, m->rank, m->size, rc);
    if (rc)
        return rc;
    MPI_Allreduce(h, lo, 2, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(h, hi, 2, MPI_UINT64_T, MPI_MAX, m->comm);
    static const char *const what[2] = {
        "the config (adadelta_config_to_json, check_finite, mode)",
        "the variables (number, names, shapes, order, weight-decay exclusions)"};
    for (int i = 0; i < 2; i++)
        if (lo[i] != hi[i]) {
            char ranks[200];
            differing_ranks(m, h[i], ranks, sizeof ranks);
            return fail(ADADELTA_EMISMATCH, "ranks disagree on %s: rank %s differs from rank 0",
                        what[i], ranks);
        }
    return 0;
}

int adadelta_mpi_check_agreement(adadelta_mpi *m)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_check_agreement: NULL");
    return check_agreement(m);
}

/* -------------------------------------------------------------- setup */

/* Whether the optimizer has slot kind k, from the config (a sharded rank
 * may hold no storage for a slot of a variable it owns nothing of). */
static int has_slot(const adadelta_mpi *m, adadelta_slot_kind k)
{
    const adadelta_config *c = adadelta_get_config(m->core);
    if (m->nv == 0)
        return 0;
    switch (k) {
    case ADADELTA_SLOT_EMA:
        return c->use_ema != 0;
    case ADADELTA_SLOT_GRADIENT_ACCUMULATOR:
        return c->gradient_accumulation_steps != 0;
    default:
        return 1;
    }
}

static float *alloc_floats(int64_t n)
{
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

/* Flat range [a, b) of this rank intersected with variable v, as
 * variable-local element indices [*b0, *b1); 0 if empty. */
static int own_part(const adadelta_mpi *m, int v, int64_t *b0, int64_t *b1)
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

static int setup_local(adadelta_mpi *m)
{
    adadelta *c = m->core;
    int R = m->size;
    m->nv = adadelta_num_variables(c);
    m->total = adadelta_dist_total_elements(c);
    if (m->total > INT_MAX)
        return fail(ADADELTA_EINVAL, "adadelta_mpi: %lld elements in all; the MPI layer "
                    "handles at most %d (MPI counts are int)", (long long)m->total, INT_MAX);
    m->voff = calloc((size_t)m->nv + 1, sizeof *m->voff);
    m->bounds = calloc((size_t)R + 1, sizeof *m->bounds);
    m->eoff = calloc((size_t)R + 1, sizeof *m->eoff);
    m->cnt = calloc((size_t)R, sizeof(int));
    m->dsp = calloc((size_t)R, sizeof(int));
    m->rcnt = calloc((size_t)R, sizeof(int));
    m->rdsp = calloc((size_t)R, sizeof(int));
    m->zero = calloc((size_t)R, sizeof(int));
    m->pres = calloc((size_t)m->nv * 2 + 2, 1);
    if (!m->voff || !m->bounds || !m->eoff || !m->cnt || !m->dsp || !m->rcnt || !m->rdsp ||
        !m->zero || !m->pres)
        return fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    for (int v = 0; v < m->nv; v++)
        m->voff[v + 1] = m->voff[v] + adadelta_variable_size(c, v);
    if (m->voff[m->nv] != m->total)
        return fail(ADADELTA_ESTATE, "adadelta_mpi: variable sizes do not add up to the "
                    "core's total");
    adadelta_dist_partition(c, R, m->bounds);
    for (int r = 0; r <= R; r++)
        m->eoff[r] = adadelta_dist_shard_offset(c, m->bounds[r]);
    int64_t mine = m->eoff[m->rank + 1] - m->eoff[m->rank];
    for (int r = 0; r < R; r++) {
        m->cnt[r] = (int)(m->eoff[r + 1] - m->eoff[r]);
        m->dsp[r] = (int)m->eoff[r];
        m->rcnt[r] = (int)mine;
        m->rdsp[r] = (int)(mine * r);
    }
    if ((int64_t)R * mine > INT_MAX)
        return fail(ADADELTA_EINVAL, "adadelta_mpi: a rank's range times the ranks exceeds "
                    "MPI's int counts");
    m->send = alloc_floats(m->total);
    m->mean = alloc_floats(m->total);
    m->recv = alloc_floats((int64_t)R * mine);
    if (!m->send || !m->mean || !m->recv)
        return fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory for the %lld-element "
                    "buffers", (long long)m->total);
    if (m->mode == ADADELTA_MPI_SHARDED)
        /* The core keeps the owned part of state it already holds (a
         * resumed core) and frees the rest. */
        return core_fail(adadelta_dist_own_shards(m->core, m->bounds[m->rank],
                                                  m->bounds[m->rank + 1]));
    /* Allocate the slots here, where a failure is agreed, not in the first
     * step between collectives. */
    return core_fail(adadelta_build(m->core));
}

/* Agreement, then the partition and buffers: once, before the first step
 * (or save/load/finalize). Collective. */
static int ensure_ready(adadelta_mpi *m)
{
    if (m->ready)
        return 0;
    int rc = check_agreement(m);
    if (rc)
        return rc;
    rc = agree(m->comm, m->rank, m->size, setup_local(m));
    if (rc) {
        free_buffers(m);
        return rc;
    }
    /* ADADELTA_MPI_CHECK may be set on some ranks only: the check is
     * collective, so one rank asking for it turns it on everywhere. */
    MPI_Allreduce(MPI_IN_PLACE, &m->check, 1, MPI_INT, MPI_LOR, m->comm);
    m->ready = 1;
    return 0;
}

/* ------------------------------------------------------ communication */

/* mean[own range] = (sum over ranks r = 0..R-1 of send_r[own range]) / R,
 * summed in rank order. */
static void reduce_mean(adadelta_mpi *m)
{
    MPI_Alltoallv(m->send, m->cnt, m->dsp, MPI_FLOAT, m->recv, m->rcnt, m->rdsp, MPI_FLOAT,
                  m->comm);
    int64_t n = m->eoff[m->rank + 1] - m->eoff[m->rank];
    float *restrict out = m->mean + m->eoff[m->rank];
    const float *restrict in = m->recv;
    const int R = m->size;
    const float fr = (float)R;
    int threads = adadelta_threads(m->core);
    /* Blocks of the range; inside a block the ranks are added one after the
     * other (rank order, as always) in vector loops over the elements. */
    enum { BLOCK = 4096 };
    int64_t nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) num_threads(threads) if (n > 262144)
    for (int64_t b = 0; b < nblocks; b++) {
        int64_t lo = b * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] = in[i];
        for (int r = 1; r < R; r++) {
            const float *restrict part = in + (int64_t)r * n;
#pragma omp simd
            for (int64_t i = lo; i < hi; i++)
                out[i] += part[i];
        }
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] = out[i] / fr;
    }
}

static void allgather_ranges(adadelta_mpi *m, float *buf)
{
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->cnt, m->dsp, MPI_FLOAT,
                   m->comm);
}

/* Sharded: every rank sends the variables' values of its range to all. */
static void allgather_variables(adadelta_mpi *m)
{
    float *buf = m->mean; /* free between steps */
    for (int v = 0; v < m->nv; v++) {
        int64_t b0, b1;
        if (own_part(m, v, &b0, &b1))
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

/* --------------------------------------------------------- identity */

static uint64_t state_checksum(const adadelta_mpi *m)
{
    adadelta *c = m->core;
    uint64_t h = FNV_OFFSET;
    int n = adadelta_num_variables(c);
    for (int v = 0; v < n; v++)
        h = fnv(h, adadelta_variable_data(c, v), (size_t)adadelta_variable_size(c, v) * 4);
    h = fnv_i64(h, adadelta_iterations(c));
    float s = adadelta_dynamic_scale(c);
    h = fnv(h, &s, sizeof s);
    h = fnv_i64(h, adadelta_step_counter(c));
    if (m->mode == ADADELTA_MPI_REPLICATED) {
        /* The gradient accumulator is rank-local by design: not compared. */
        static const adadelta_slot_kind kinds[3] = {ADADELTA_SLOT_ACCUMULATED_GRAD,
                                                    ADADELTA_SLOT_ACCUMULATED_DELTA_VAR,
                                                    ADADELTA_SLOT_EMA};
        for (int k = 0; k < 3; k++)
            for (int v = 0; v < n; v++) {
                float *p;
                int64_t b, e;
                if (adadelta_dist_slot_range(c, v, kinds[k], &p, &b, &e) == 0)
                    h = fnv(h, p, (size_t)(e - b) * 4);
            }
    }
    return h;
}

static int check_identical(adadelta_mpi *m, const char *when)
{
    uint64_t h = state_checksum(m), lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, m->comm);
    if (lo == hi)
        return 0;
    char ranks[200];
    differing_ranks(m, h, ranks, sizeof ranks);
    const char *what = m->mode == ADADELTA_MPI_REPLICATED ? "variables or optimizer state"
                                                          : "variables";
    if (m->rank == 0)
        fprintf(stderr, "adadelta_mpi: DIVERGENCE %s (iteration %lld): the %s of rank %s "
                "differ from rank 0's\n", when, (long long)adadelta_iterations(m->core), what,
                ranks);
    return fail(ADADELTA_EMISMATCH, "ranks diverged %s: the %s of rank %s differ from "
                "rank 0's (checksums)", when, what, ranks);
}

int adadelta_mpi_check_identical(adadelta_mpi *m)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_check_identical: NULL");
    int rc = ensure_ready(m);
    return rc ? rc : check_identical(m, "at check_identical");
}

/* -------------------------------------------------------------- apply */

/* All ranks must agree on which gradients are None; also refuses a NULL
 * grads array on any rank. */
static int check_presence(adadelta_mpi *m, const float *const *grads)
{
    int n = m->nv;
    unsigned char *p = m->pres;
    for (int v = 0; v < n; v++) {
        int has = grads && grads[v] != NULL;
        p[v] = (unsigned char)has;
        p[n + v] = (unsigned char)!has;
    }
    p[2 * n] = grads != NULL;
    MPI_Allreduce(MPI_IN_PLACE, p, 2 * n + 1, MPI_UNSIGNED_CHAR, MPI_MIN, m->comm);
    if (!p[2 * n])
        return fail(ADADELTA_EINVAL, "adadelta_mpi_apply: grads is NULL on %s rank",
                    grads ? "another" : "this");
    for (int v = 0; v < n; v++)
        if (p[v] + p[n + v] != 1)
            return fail(ADADELTA_EMISMATCH,
                        "adadelta_mpi_apply: ranks disagree on whether variable '%s' has a "
                        "gradient (None on some ranks only); every rank must pass the same "
                        "None gradients", adadelta_variable_name(m->core, v));
    return 0;
}

int adadelta_mpi_apply(adadelta_mpi *m, const float *const *grads)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_apply: NULL");
    int first = !m->ready;
    int rc = ensure_ready(m);
    if (rc)
        return rc;
    if (first && m->check && (rc = check_identical(m, "before the first apply")))
        return rc;
    if ((rc = check_presence(m, grads)))
        return rc;
    /* Absent variables: zeros, so the buffers never carry stale values. */
    for (int v = 0; v < m->nv; v++)
        if (!grads[v] && m->voff[v + 1] > m->voff[v])
            memset(m->send + m->voff[v], 0, (size_t)(m->voff[v + 1] - m->voff[v]) * 4);
    adadelta_dist_ops ops = {m, op_any, op_sum_doubles};
    int need = 0;
    if ((rc = adadelta_dist_begin(m->core, grads, m->send, &ops, &need)))
        return core_fail(rc);
    int sharded = m->mode == ADADELTA_MPI_SHARDED;
    if (need) {
        reduce_mean(m);
        if (!sharded)
            allgather_ranges(m, m->mean);
        if ((rc = adadelta_dist_finish(m->core, m->mean, &ops)))
            return core_fail(rc);
    }
    if (sharded && adadelta_dist_vars_changed(m->core))
        allgather_variables(m);
    if (m->check && (rc = check_identical(m, "after apply")))
        return rc;
    return 0;
}

int adadelta_mpi_finalize_variable_values(adadelta_mpi *m)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_finalize_variable_values: NULL");
    int rc = ensure_ready(m);
    if (rc || !adadelta_get_config(m->core)->use_ema)
        return rc;
    if (m->mode == ADADELTA_MPI_REPLICATED)
        rc = agree(m->comm, m->rank, m->size,
                   core_fail(adadelta_finalize_variable_values(m->core)));
    else {
        for (int v = 0; v < m->nv; v++) {
            float *p;
            int64_t b, e;
            if (adadelta_dist_slot_range(m->core, v, ADADELTA_SLOT_EMA, &p, &b, &e) == 0 &&
                e > b)
                memcpy(adadelta_variable_data(m->core, v) + b, p, (size_t)(e - b) * 4);
        }
        allgather_variables(m);
    }
    if (!rc && m->check)
        rc = check_identical(m, "after finalize_variable_values");
    return rc;
}

size_t adadelta_mpi_state_bytes(const adadelta_mpi *m)
{
    if (!m)
        return 0;
    size_t bytes = 0;
    int n = adadelta_num_variables(m->core);
    for (int k = 0; k < 4; k++)
        for (int v = 0; v < n; v++) {
            float *p;
            int64_t b, e;
            if (adadelta_dist_slot_range(m->core, v, (adadelta_slot_kind)k, &p, &b, &e) == 0)
                bytes += (size_t)(e - b) * sizeof(float);
        }
    return bytes;
}

/* --------------------------------------------------------- save/load */

/* A full, unsharded core with the same config and variables; variable data
 * either shared with ours (save) or fresh (load). */
static int temp_core(const adadelta_mpi *m, int fresh_data, adadelta **out)
{
    adadelta *t = NULL;
    int rc = core_fail(adadelta_create(adadelta_get_config(m->core), &t));
    for (int v = 0; v < m->nv && !rc; v++) {
        int ndim;
        int64_t shape[ADADELTA_MAX_DIMS];
        adadelta_variable_shape(m->core, v, &ndim, shape);
        float *data = adadelta_variable_data(m->core, v);
        if (fresh_data && !(data = alloc_floats(m->voff[v + 1] - m->voff[v]))) {
            rc = fail(ADADELTA_ENOMEM, "out of memory for a full copy of the state");
            break;
        }
        int i = adadelta_add_variable(t, adadelta_variable_name(m->core, v), ADADELTA_F32,
                                      data, ndim, shape);
        if (i < 0) {
            if (fresh_data)
                free(data);
            rc = core_fail(i);
        }
    }
    if (!rc) /* allocate now, while the caller can still agree on failure */
        rc = core_fail(adadelta_build(t));
    if (rc) {
        if (t && fresh_data)
            for (int v = 0; v < adadelta_num_variables(t); v++)
                free(adadelta_variable_data(t, v));
        adadelta_destroy(t);
        return rc;
    }
    *out = t;
    return 0;
}

static void free_temp_core(adadelta *t, int fresh_data)
{
    if (t && fresh_data)
        for (int v = 0; v < adadelta_num_variables(t); v++)
            free(adadelta_variable_data(t, v));
    adadelta_destroy(t);
}

/* Gathers the flat ranges of buf to `root` (or to all when root < 0). */
static void gather_ranges(adadelta_mpi *m, float *buf, int root)
{
    if (root < 0)
        allgather_ranges(m, buf);
    else if (m->rank == root)
        MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->cnt, m->dsp, MPI_FLOAT, root,
                    m->comm);
    else
        MPI_Gatherv(buf + m->eoff[m->rank], m->cnt[m->rank], MPI_FLOAT, NULL, NULL, NULL,
                    MPI_FLOAT, root, m->comm);
}

/* Writes the state; root < 0: every rank writes (its own path), else only
 * root. The gradient accumulators are rank-local: the file holds their mean
 * over ranks (summed in rank order), which is the accumulator of the mean
 * gradients Keras would hold, up to rounding. */
static int save_impl(adadelta_mpi *m, const char *path, int root)
{
    int rc = ensure_ready(m);
    if (rc)
        return rc;
    int writer = root < 0 || m->rank == root;
    int accumulating = has_slot(m, ADADELTA_SLOT_GRADIENT_ACCUMULATOR);
    /* Local failures before the collectives (temp core) are agreed first. */
    adadelta *t = NULL;
    int sharded = m->mode == ADADELTA_MPI_SHARDED;
    if (writer && sharded)
        rc = temp_core(m, 0, &t);
    if (!writer || !path) {
        if (writer && !path)
            rc = fail(ADADELTA_EINVAL, "adadelta_mpi_save: path is NULL");
    }
    if ((rc = agree(m->comm, m->rank, m->size, rc))) {
        free_temp_core(t, 0);
        return rc;
    }
    float *acc_mean = NULL;
    if (accumulating) {
        for (int v = 0; v < m->nv; v++)
            memcpy(m->send + m->voff[v],
                   adadelta_slot(m->core, v, ADADELTA_SLOT_GRADIENT_ACCUMULATOR),
                   (size_t)(m->voff[v + 1] - m->voff[v]) * 4);
        reduce_mean(m);
        gather_ranges(m, m->mean, root);
        acc_mean = m->mean;
    }
    if (sharded) {
        static const adadelta_slot_kind kinds[3] = {ADADELTA_SLOT_ACCUMULATED_GRAD,
                                                    ADADELTA_SLOT_ACCUMULATED_DELTA_VAR,
                                                    ADADELTA_SLOT_EMA};
        /* m->send is free again: one slot kind at a time through it. */
        for (int k = 0; k < 3; k++) {
            if (!has_slot(m, kinds[k]))
                continue;
            for (int v = 0; v < m->nv; v++) {
                float *p;
                int64_t b, e;
                if (adadelta_dist_slot_range(m->core, v, kinds[k], &p, &b, &e) == 0 && e > b)
                    memcpy(m->send + m->voff[v] + b, p, (size_t)(e - b) * 4);
            }
            gather_ranges(m, m->send, root);
            if (writer)
                for (int v = 0; v < m->nv; v++)
                    memcpy(adadelta_slot(t, v, kinds[k]), m->send + m->voff[v],
                           (size_t)(m->voff[v + 1] - m->voff[v]) * 4);
        }
        if (writer) {
            if (acc_mean)
                for (int v = 0; v < m->nv; v++)
                    memcpy(adadelta_slot(t, v, ADADELTA_SLOT_GRADIENT_ACCUMULATOR),
                           acc_mean + m->voff[v], (size_t)(m->voff[v + 1] - m->voff[v]) * 4);
            adadelta_dist_set_counters(t, adadelta_iterations(m->core),
                                       adadelta_dynamic_scale(m->core),
                                       adadelta_step_counter(m->core));
            rc = core_fail(adadelta_save(t, path));
        }
        free_temp_core(t, 0);
    } else if (writer) {
        /* Swap the mean accumulator in for the save, then restore ours. */
        if (acc_mean)
            for (int v = 0; v < m->nv; v++) {
                float *a = adadelta_slot(m->core, v, ADADELTA_SLOT_GRADIENT_ACCUMULATOR);
                size_t bytes = (size_t)(m->voff[v + 1] - m->voff[v]) * 4;
                memcpy(m->send + m->voff[v], a, bytes);
                memcpy(a, acc_mean + m->voff[v], bytes);
            }
        rc = core_fail(adadelta_save(m->core, path));
        if (acc_mean)
            for (int v = 0; v < m->nv; v++)
                memcpy(adadelta_slot(m->core, v, ADADELTA_SLOT_GRADIENT_ACCUMULATOR),
                       m->send + m->voff[v], (size_t)(m->voff[v + 1] - m->voff[v]) * 4);
    }
    return agree(m->comm, m->rank, m->size, rc);
}

int adadelta_mpi_save(adadelta_mpi *m, const char *path)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_save: NULL");
    return save_impl(m, path, 0);
}

int adadelta_mpi_save_each(adadelta_mpi *m, const char *path)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_save_each: NULL");
    return save_impl(m, path, -1);
}

int adadelta_mpi_load(adadelta_mpi *m, const char *path)
{
    err_msg[0] = '\0';
    if (!m)
        return fail(ADADELTA_EINVAL, "adadelta_mpi_load: NULL");
    int rc = ensure_ready(m);
    if (rc)
        return rc;
    /* Load into a full copy first: nothing changes unless every rank read
     * the file successfully. */
    adadelta *t = NULL;
    rc = path ? temp_core(m, 1, &t) : fail(ADADELTA_EINVAL, "adadelta_mpi_load: path is NULL");
    if (!rc)
        rc = core_fail(adadelta_load(t, path));
    if ((rc = agree(m->comm, m->rank, m->size, rc))) {
        free_temp_core(t, 1);
        return rc;
    }
    for (int v = 0; v < m->nv; v++) {
        size_t n = (size_t)(m->voff[v + 1] - m->voff[v]);
        if (n)
            memcpy(adadelta_variable_data(m->core, v), adadelta_variable_data(t, v), n * 4);
        for (int k = 0; k < 4; k++) {
            float *p;
            int64_t b, e;
            if (adadelta_dist_slot_range(m->core, v, (adadelta_slot_kind)k, &p, &b, &e) == 0 &&
                e > b)
                memcpy(p, adadelta_slot(t, v, (adadelta_slot_kind)k) + b, (size_t)(e - b) * 4);
        }
    }
    adadelta_dist_set_counters(m->core, adadelta_iterations(t), adadelta_dynamic_scale(t),
                               adadelta_step_counter(t));
    free_temp_core(t, 1);
    if (m->check)
        rc = check_identical(m, "after load");
    return rc;
}
