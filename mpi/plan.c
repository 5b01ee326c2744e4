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
    free(m->vsize);
    free(m->vdtype);
    free(m->vptr);
    free(m->bounds);
    free(m->eoff);
    free(m->buckets);
    free(m->var_bucket);
    free(m->flags);
    free(m->flags_all);
    free(m->ostep.grads);
    free(m->ostep.reported);
    m->voff = m->eoff = m->vsize = NULL;
    m->vdtype = NULL;
    m->vptr = NULL;
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
    adadelta_mpi__elements_of(m, v, lo, hi, b0, b1);
    return *b0 < *b1;
}

int adadelta_mpi__words_per_element(const adadelta_mpi *m, int v)
{
    return m->vdtype[v] == ADADELTA_F64 ? 2 : 1;
}

size_t adadelta_mpi__element_bytes(const adadelta_mpi *m, int v)
{
    return m->vdtype[v] == ADADELTA_F64 ? 8 : m->vdtype[v] == ADADELTA_F32 ? 4 : 2;
}

void adadelta_mpi__elements_of(const adadelta_mpi *m, int v, int64_t lo, int64_t hi, int64_t *b0,
                               int64_t *b1)
{
    int w = adadelta_mpi__words_per_element(m, v);
    *b0 = (lo - m->voff[v]) / w;
    *b1 = (hi - m->voff[v]) / w;
    if (*b1 > m->vsize[v]) /* the word that aligns the next variable */
        *b1 = m->vsize[v];
    if (*b0 > *b1)
        *b0 = *b1;
}

void *const *adadelta_mpi__var_pointers(adadelta_mpi *m, float *flat, int v_lo, int v_hi)
{
    for (int v = v_lo; v < v_hi; v++)
        m->vptr[v] = flat + m->voff[v];
    return m->vptr;
}

/* float32 and float64 elements are their words; a 16-bit one sits in the
 * first half of its word. to_words: data -> flat, else flat -> data. */
static void copy_words(const adadelta_mpi *m, int v, int64_t b0, int64_t b1, char *flat,
                       int to_words)
{
    char *data = adadelta_variable_data(m->core, v);
    char *words = flat + 4 * (size_t)m->voff[v];
    size_t es = adadelta_mpi__element_bytes(m, v), ws = es == 2 ? 4 : es;
    if (es == ws) { /* contiguous */
        b1 -= b0;
        b0 *= (int64_t)es;
        memcpy(to_words ? words + b0 : data + b0, to_words ? data + b0 : words + b0,
               (size_t)b1 * es);
        return;
    }
    for (int64_t i = b0; i < b1; i++)
        memcpy(to_words ? words + ws * i : data + es * i, to_words ? data + es * i : words + ws * i,
               es);
}

void adadelta_mpi__to_words(const adadelta_mpi *m, int v, int64_t b0, int64_t b1, float *flat)
{
    copy_words(m, v, b0, b1, (char *)flat, 1);
}

void adadelta_mpi__from_words(const adadelta_mpi *m, int v, int64_t b0, int64_t b1,
                              const float *flat)
{
    copy_words(m, v, b0, b1, (char *)flat, 0);
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
        bytes += (m->voff[v + 1] - m->voff[v]) * (int64_t)sizeof(float); /* words */
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

/* The flat layout in 4-byte words: a float32 element is one, a float64
 * element two, a 16-bit element one (its contribution and mean are
 * float32). With a float64 variable every variable starts at an even word
 * (an odd float32 one is followed by a zero word), so that every cut of a
 * range (buckets, ranks' ranges, chunks, pieces: all even) falls between
 * whole float64 elements. */
static int64_t word_of_element(const adadelta_mpi *m, const int64_t *elem_off, int64_t x)
{
    int lo = 0, hi = m->nv; /* the variable holding element x */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (elem_off[mid + 1] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= m->nv)
        return m->total;
    return m->voff[lo] + (x - elem_off[lo]) * adadelta_mpi__words_per_element(m, lo);
}

static int make_layout(adadelta_mpi *m)
{
    adadelta *c = m->core;
    int R = m->size;
    m->nv = adadelta_num_variables(c);
    m->voff = calloc((size_t)m->nv + 1, sizeof *m->voff);
    m->vsize = calloc((size_t)m->nv + 1, sizeof *m->vsize);
    m->vdtype = calloc((size_t)m->nv + 1, sizeof *m->vdtype);
    m->vptr = calloc((size_t)m->nv + 1, sizeof *m->vptr);
    m->bounds = calloc((size_t)R + 1, sizeof *m->bounds);
    m->eoff = calloc((size_t)R + 1, sizeof *m->eoff);
    int64_t *elem_off = calloc((size_t)m->nv + 1, sizeof *elem_off);
    if (!m->voff || !m->vsize || !m->vdtype || !m->vptr || !m->bounds || !m->eoff || !elem_off) {
        free(elem_off);
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    }
    m->any_f64 = 0;
    for (int v = 0; v < m->nv; v++) {
        m->vsize[v] = adadelta_variable_size(c, v);
        m->vdtype[v] = adadelta_variable_dtype(c, v);
        m->any_f64 |= m->vdtype[v] == ADADELTA_F64;
        elem_off[v + 1] = CORE->variable_offset(c, v + 1);
    }
    int64_t at = 0;
    for (int v = 0; v < m->nv; v++) {
        if (m->any_f64)
            at += at & 1;
        m->voff[v] = at;
        at += m->vsize[v] * adadelta_mpi__words_per_element(m, v);
    }
    m->total = m->voff[m->nv] = m->any_f64 ? at + (at & 1) : at;
    if (m->any_f64 && (m->chunk & 1)) /* chunks of whole float64 elements */
        m->chunk = m->chunk > 1 ? m->chunk - 1 : 2;
    CORE->partition(c, R, m->bounds);
    for (int r = 0; r <= R; r++)
        m->eoff[r] = word_of_element(m, elem_off, CORE->shard_offset(c, m->bounds[r]));
    free(elem_off);
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
    /* the ranks agree on the compression and the dtypes: the same answer
     * everywhere, without an exchange */
    for (int v = 0; m->compress && v < adadelta_num_variables(m->core); v++)
        if (adadelta_variable_dtype(m->core, v) == ADADELTA_F64)
            return adadelta_mpi__fail(ADADELTA_EINVAL,
                                      "adadelta_mpi: the compressed exchange (%s) takes float32 "
                                      "contributions; variable '%s' is float64, whose gradients "
                                      "would lose their precision",
                                      m->compress == ADADELTA_MPI_COMPRESS_F16 ? "f16" : "bf16",
                                      adadelta_variable_name(m->core, v));
    rc = make_layout(m);
    if (!rc)
        rc = CORE->dist_setup(m->core);
    rc = adadelta_mpi__agree(m, rc);
    if (!rc) {
        m->engine = choose_engine(m);
        rc = adadelta_mpi__agree(m, m->engine->setup(m));
    }
    if (!rc) {
        if (m->mode == ADADELTA_MPI_SHARDED)
            /* The core keeps the owned part of state it already holds (a
             * resumed core) and frees the rest. */
            rc = CORE->own_shards(m->core, m->bounds[m->rank], m->bounds[m->rank + 1]);
        else
            /* Allocate the slots here, where a failure is agreed, not in
             * the first step between collectives. */
            rc = adadelta_build(m->core);
        rc = adadelta_mpi__agree(m, rc);
    }
    if (rc) {
        adadelta_mpi__free_plan(m);
        return rc;
    }
    m->ready = 1;
    return 0;
}
