/* apply.c - one data-parallel step and finalize_variable_values.
 *
 * A step, the same for both engines and both entry points (apply, and the
 * overlap API's end_step):
 *   1. the core's local checks and what the call does (an update, whose
 *      gradients are reduced, or an accumulation-only call: the same on
 *      every rank, from the state);
 *   2. an update's contributions, bucket by bucket, and their rank-order
 *      mean on this rank's range (reduce engine);
 *   3. the norm partials of this range, when clipping needs norms;
 *   4. one exchange of the step flags (which gradients are present, a
 *      rank without gradients or with a non-finite one, the partials):
 *      every rank sees the same combined flags, so every rank takes the
 *      same decision and returns the same status;
 *   5. the update (or accumulation, skip, refusal) on the owned shards,
 *      reading the mean; in sharded mode the allgather of the variables.
 * Every rank makes the same engine calls in the same order whatever its
 * own inputs, so nothing can hang on a rank's bad input. */
#include "mpi_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void adadelta_mpi__contribute_bucket(adadelta_mpi *m, const adadelta_dist_step *st,
                                     const void *const *grads, int b)
{
    bucket *bk = &m->buckets[b];
    m->engine->reserve(m, b);
    /* Checked before the contribution, which may change a gradient that
     * was written into the buffer (adadelta_mpi_gradient_buffer). */
    if (grads && st->grads && st->finite_matters &&
        !CORE->finite(m->core, grads, bk->v_lo, bk->v_hi))
        m->nonfinite = 1;
    float *send = m->engine->contributions(m);
    for (int v = bk->v_lo; v < bk->v_hi; v++)
        if ((!grads || !grads[v]) && m->voff[v + 1] > m->voff[v])
            memset(send + m->voff[v], 0, (size_t)(m->voff[v + 1] - m->voff[v]) * sizeof(float));
    if (grads && st->grads)
        CORE->contribute(m->core, st, bk->v_lo, bk->v_hi,
                         adadelta_mpi__var_pointers(m, send, bk->v_lo, bk->v_hi));
    if (m->compressing && !m->engine->packs_contributions)
        adadelta_mpi__round16(m->compressing, send + bk->lo, bk->hi - bk->lo);
    bk->started = 1;
    m->engine->start(m, b);
}

float *adadelta_mpi__begin_reduction(adadelta_mpi *m)
{
    m->compressing = 0; /* a checkpoint's mean is exact */
    for (int b = 0; b < m->n_buckets; b++)
        m->engine->reserve(m, b);
    return m->engine->contributions(m);
}

float *adadelta_mpi__end_reduction(adadelta_mpi *m)
{
    for (int b = 0; b < m->n_buckets; b++) {
        m->buckets[b].started = 1;
        m->engine->start(m, b);
    }
    m->engine->finish(m);
    m->engine->end(m);
    for (int b = 0; b < m->n_buckets; b++)
        m->buckets[b].started = 0;
    return m->engine->mean(m);
}

static uint64_t presence_hash(const adadelta_mpi *m, const void *const *grads)
{
    uint64_t h = ADADELTA_MPI_HASH_START;
    unsigned char chunk[256];
    int n = 0;
    for (int v = 0; v < m->nv; v++) {
        chunk[n++] = grads && grads[v] ? 1 : 0;
        if (n == (int)sizeof chunk || v == m->nv - 1) {
            h = adadelta_mpi__hash(h, chunk, (size_t)n);
            n = 0;
        }
    }
    return h;
}

/* The variable whose presence differs between ranks, named (a mismatch
 * only: one more collective, made by every rank). */
static int presence_mismatch(adadelta_mpi *m, const void *const *grads)
{
    int first = m->nv, v;
    for (v = 0; v < m->nv; v++) {
        int has = grads && grads[v], lo, hi;
        int pair[2] = {has, -has}, got[2];
        MPI_Allreduce(pair, got, 2, MPI_INT, MPI_MIN, m->comm);
        lo = got[0];
        hi = -got[1];
        if (lo != hi) {
            first = v;
            break;
        }
    }
    return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                              "adadelta_mpi_apply: ranks disagree on whether variable '%s' has a "
                              "gradient (None on some ranks only); every rank must pass the same "
                              "None gradients",
                              first < m->nv ? adadelta_variable_name(m->core, first) : "?");
}

/* 3. and 4.: this rank's flags, combined over the ranks. */
static void exchange_flags(adadelta_mpi *m, adadelta_dist_step *st, const void *const *grads,
                           const float *mean, int overlapped)
{
    step_flags *f = m->flags;
    f->presence_min = f->presence_max = presence_hash(m, grads);
    f->grads_null = grads == NULL;
    f->nonfinite = st->nonfinite;
    /* until the ranks have compared their variables once (before any
     * update: nothing has changed them) */
    f->vars_min = f->vars_max = m->initial_checked ? 0 : adadelta_mpi__variables_crc(m);
    f->initial_wish = !m->initial_checked && m->initial_check;
    f->check_wish = m->check;
    f->error_rank = INT32_MAX;
    if (overlapped && m->ostep.error_status) {
        f->error_rank = m->rank;
        f->error_status = m->ostep.error_status;
        memcpy(f->error, m->ostep.error, sizeof f->error);
    }
    int np = f->n_partials;
    memset(f->partials, 0, (size_t)np * sizeof(double));
    if (np && st->update && st->grads) {
        CORE->sum_squares(m->core, st,
                          (const void *const *)adadelta_mpi__var_pointers(m, (float *)mean, 0,
                                                                          m->nv),
                          m->bounds[m->rank], m->bounds[m->rank + 1]);
        memcpy(f->partials, CORE->partials(m->core), (size_t)np * sizeof(double));
    }
    m->flags_all->n_partials = np;
    m->engine->exchange(m);
    m->small_collectives++;
}

/* 5.: the decision every rank takes from the same combined flags. */
static int decide(adadelta_mpi *m, adadelta_dist_step *st, const void *const *grads,
                  int local_rc)
{
    const step_flags *all = m->flags_all;
    if (all->error_rank != INT32_MAX)
        return all->error_rank == m->rank
                   ? adadelta_mpi__fail(all->error_status, "%s", all->error)
                   : adadelta_mpi__fail(all->error_status, "rank %d: %s", (int)all->error_rank,
                                        all->error);
    if (all->grads_null)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_apply: grads is NULL on %s rank",
                                  grads ? "another" : "this");
    if (all->presence_min != all->presence_max)
        return presence_mismatch(m, grads);
    m->check_all = all->check_wish;
    if (!m->initial_checked) {
        if (all->initial_wish && all->vars_min != all->vars_max)
            return adadelta_mpi__initial_mismatch(m, m->flags->vars_min);
        m->initial_checked = 1;
    }
    if (local_rc) /* presence agreed: the same status (ENOGRAD) everywhere */
        return local_rc;
    int any_nonfinite = st->finite_matters && all->nonfinite;
    const void *const *mean = NULL;
    if (st->update && !any_nonfinite) {
        m->engine->complete_mean(m);
        mean = (const void *const *)adadelta_mpi__var_pointers(m, m->engine->mean(m), 0, m->nv);
        if (all->n_partials)
            memcpy(CORE->partials(m->core), all->partials,
                   (size_t)all->n_partials * sizeof(double));
    }
    return CORE->finish(m->core, st, any_nonfinite, mean);
}

int adadelta_mpi__step(adadelta_mpi *m, const void *const *grads, int overlapped)
{
    adadelta_dist_step st;
    CORE->plan(m->core, &st);
    /* An update's buckets are checked for finiteness as they are
     * contributed; an accumulation-only call's gradients here. */
    int local = grads ? CORE->begin(m->core, grads, &st, !st.update) : 0;
    if (!overlapped) {
        m->nonfinite = 0;
        m->compressing = m->compress;
    }
    if (local)
        st.grads = NULL; /* refused here: this rank contributes zeros */
    if (st.update) {
        for (int b = 0; b < m->n_buckets; b++)
            if (!m->buckets[b].started)
                adadelta_mpi__contribute_bucket(m, &st, local ? NULL : grads, b);
        m->engine->finish(m);
    }
    st.nonfinite |= m->nonfinite;
    exchange_flags(m, &st, grads, m->engine->mean(m), overlapped);
    int rc = decide(m, &st, grads, local);
    m->engine->end(m);
    m->steps++;
    for (int b = 0; b < m->n_buckets; b++)
        m->buckets[b].started = 0;
    if (!rc && m->mode == ADADELTA_MPI_SHARDED && CORE->vars_changed(m->core))
        m->engine->gather_variables(m);
    return rc;
}

void *adadelta_mpi_gradient_buffer(adadelta_mpi *m, int index)
{
    adadelta_mpi__clear_error();
    if (!m) {
        adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_gradient_buffer: NULL");
        return NULL;
    }
    if (adadelta_mpi__ensure_ready(m))
        return NULL;
    if (index < 0 || index >= m->nv) {
        adadelta_mpi__fail(ADADELTA_ENOTFOUND,
                           "adadelta_mpi_gradient_buffer: variable index %d is outside [0, %d)",
                           index, m->nv);
        return NULL;
    }
    if (m->vdtype[index] == ADADELTA_F16 || m->vdtype[index] == ADADELTA_BF16) {
        /* its contribution is float32 words: no 16-bit gradient lies there */
        adadelta_mpi__fail(ADADELTA_EINVAL,
                           "adadelta_mpi_gradient_buffer: variable '%s' is %s; its gradient is "
                           "reduced as float32, so there is no buffer to write it into "
                           "(pass the gradient itself to apply or grad_ready)",
                           adadelta_variable_name(m->core, index),
                           m->vdtype[index] == ADADELTA_F16 ? "float16" : "bfloat16");
        return NULL;
    }
    return m->engine->contributions(m) + m->voff[index];
}

int adadelta_mpi_apply(adadelta_mpi *m, const void *const *grads)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_apply: NULL");
    if (m->ostep.open)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_apply: an overlapped step is open "
                                  "(adadelta_mpi_begin_step without end_step)");
    int first = !m->ready;
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc)
        return rc;
    if (first && adadelta_mpi__any_rank(m, m->check) &&
        (rc = adadelta_mpi__check_identical(m, "before the first apply")))
        return rc;
    if ((rc = adadelta_mpi__step(m, grads, 0)))
        return rc;
    if (m->check_all && (rc = adadelta_mpi__check_identical(m, "after apply")))
        return rc;
    return 0;
}

int adadelta_mpi_finalize_variable_values(adadelta_mpi *m)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_finalize_variable_values: NULL");
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc || !adadelta_get_config(m->core)->use_ema)
        return rc;
    if (m->mode == ADADELTA_MPI_REPLICATED) {
        rc = adadelta_mpi__agree(m, CORE->finalize(m->core));
    } else {
        adadelta_state_list l;
        rc = adadelta_mpi__agree(m, CORE->state_list(m->core, 1, &l));
        if (rc)
            return rc;
        for (int i = 0; i < l.n; i++) {
            const adadelta_state_tensor *t = &l.t[i];
            if (t->slot == ADADELTA_SLOT_EMA && t->end > t->begin) {
                size_t es = adadelta_st_dtype_size(t->dtype);
                memcpy((char *)adadelta_variable_data(m->core, t->var) + (size_t)t->begin * es,
                       t->data, (size_t)(t->end - t->begin) * es);
            }
        }
        CORE->state_free(&l);
        m->engine->gather_variables(m);
    }
    if (!rc && adadelta_mpi__any_rank(m, m->check))
        rc = adadelta_mpi__check_identical(m, "after finalize_variable_values");
    return rc;
}
