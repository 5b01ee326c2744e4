/* apply.c - one data-parallel step and finalize_variable_values.
 *
 * A step: the core's local checks; one small collective that agrees on
 * which gradients are present (every rank must pass the same None
 * gradients) and whether any rank saw a non-finite gradient; then, for an
 * update call, the contributions, their rank-order mean through the
 * engine, the norm partials summed over ranks when sharded, the update on
 * the owned shards and, when sharded, the allgather of the variables. */
#include "mpi_internal.h"

#include <string.h>

/* flags[v] = has(v), flags[n + v] = !has(v), flags[2n] = grads given,
 * flags[2n + 1] = all finite; MIN over ranks. */
static void agree_flags(adadelta_mpi *m, const float *const *grads, int nonfinite)
{
    int n = m->nv;
    unsigned char *p = m->flags;
    for (int v = 0; v < n; v++) {
        int has = grads && grads[v] != NULL;
        p[v] = (unsigned char)has;
        p[n + v] = (unsigned char)!has;
    }
    p[2 * n] = grads != NULL;
    p[2 * n + 1] = !nonfinite;
    MPI_Allreduce(MPI_IN_PLACE, p, 2 * n + 2, MPI_UNSIGNED_CHAR, MPI_MIN, m->comm);
}

/* The agreed flags as a status: NULL grads anywhere, then None gradients
 * that differ between ranks. */
static int flags_status(const adadelta_mpi *m, const float *const *grads)
{
    int n = m->nv;
    const unsigned char *p = m->flags;
    if (!p[2 * n])
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_apply: grads is NULL on %s rank",
                                  grads ? "another" : "this");
    for (int v = 0; v < n; v++)
        if (p[v] + p[n + v] != 1)
            return adadelta_mpi__fail(
                ADADELTA_EMISMATCH,
                "adadelta_mpi_apply: ranks disagree on whether variable '%s' has a "
                "gradient (None on some ranks only); every rank must pass the same "
                "None gradients",
                adadelta_variable_name(m->core, v));
    return 0;
}

/* Contributions of the present variables; zeros for the absent ones, so
 * the buffers never carry stale values. */
static float *contribute(adadelta_mpi *m, const adadelta_dist_step *st,
                         const float *const *grads)
{
    float *send = m->engine->contributions(m);
    for (int v = 0; v < m->nv; v++)
        if (!grads[v] && m->voff[v + 1] > m->voff[v])
            memset(send + m->voff[v], 0, (size_t)(m->voff[v + 1] - m->voff[v]) * sizeof(float));
    CORE->contribute(m->core, st, 0, m->nv, send);
    return send;
}

static int step(adadelta_mpi *m, const float *const *grads)
{
    adadelta_dist_step st;
    memset(&st, 0, sizeof st);
    int local = grads ? CORE->begin(m->core, grads, &st) : 0;
    agree_flags(m, grads, st.nonfinite);
    int rc = flags_status(m, grads);
    if (rc)
        return rc;
    if (local) /* presence agreed: the same status (ENOGRAD) everywhere */
        return local;
    int any_nonfinite = st.finite_matters && !m->flags[2 * m->nv + 1];
    int sharded = m->mode == ADADELTA_MPI_SHARDED;
    const float *mean = NULL;
    if (st.update && !any_nonfinite) {
        contribute(m, &st, grads);
        mean = m->engine->mean(m, !sharded);
        if (st.needs_norms) {
            CORE->sum_squares(m->core, &st, mean);
            if (sharded) /* each partial is non-zero on one rank: exact */
                MPI_Allreduce(MPI_IN_PLACE, CORE->partials(m->core),
                              CORE->num_shards(m->core), MPI_DOUBLE, MPI_SUM, m->comm);
        }
    }
    if ((rc = CORE->finish(m->core, &st, any_nonfinite, mean)))
        return rc;
    if (sharded && CORE->vars_changed(m->core))
        m->engine->gather_variables(m);
    return 0;
}

int adadelta_mpi_apply(adadelta_mpi *m, const float *const *grads)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_apply: NULL");
    int first = !m->ready;
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc)
        return rc;
    if (first && m->check && (rc = adadelta_mpi__check_identical(m, "before the first apply")))
        return rc;
    if ((rc = step(m, grads)))
        return rc;
    if (m->check && (rc = adadelta_mpi__check_identical(m, "after apply")))
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
            if (t->slot == ADADELTA_SLOT_EMA && t->end > t->begin)
                memcpy(adadelta_variable_data(m->core, t->var) + t->begin, t->data,
                       (size_t)(t->end - t->begin) * sizeof(float));
        }
        CORE->state_free(&l);
        m->engine->gather_variables(m);
    }
    if (!rc && m->check)
        rc = adadelta_mpi__check_identical(m, "after finalize_variable_values");
    return rc;
}
