/* overlap.c - the step overlapped with the backward pass:
 * adadelta_mpi_begin_step, adadelta_mpi_grad_ready per variable in any
 * order, adadelta_mpi_end_step. A bucket's contributions are written and
 * its reduction started as soon as all its variables are reported (buckets
 * start in index order, the same on every rank, as the engines' collectives
 * need); later grad_ready calls advance the reductions; end_step starts
 * what is left and runs the step exactly as adadelta_mpi_apply does, so the
 * result is byte-identical to apply with the same gradients.
 *
 * Misuse (a variable reported twice or not at all, an index out of range,
 * a call outside a step) is refused where it happens, and a step with a
 * misuse fails at end_step on every rank with the lowest such rank's status
 * and message: the collectives still run, so nothing hangs. */
#include "mpi_internal.h"

#include <stdio.h>
#include <string.h>

/* Records the first misuse of the open step and returns its status. */
static int misuse(adadelta_mpi *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int misuse(adadelta_mpi *m, int status, const char *fmt, ...)
{
    char msg[sizeof m->ostep.error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!m->ostep.error_status) {
        m->ostep.error_status = status;
        memcpy(m->ostep.error, msg, sizeof msg);
    }
    return adadelta_mpi__fail(status, "%s", msg);
}

int adadelta_mpi_begin_step(adadelta_mpi *m)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_begin_step: NULL");
    if (m->ostep.open)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_begin_step: a step is already open");
    int first = !m->ready;
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc)
        return rc;
    if (first && adadelta_mpi__any_rank(m, m->check) &&
        (rc = adadelta_mpi__check_identical(m, "before the first step")))
        return rc;
    open_step *o = &m->ostep;
    m->compressing = m->compress;
    CORE->plan(m->core, &o->st);
    o->st.grads = o->grads;
    o->open = 1;
    o->error_status = 0;
    o->error[0] = '\0';
    o->next_bucket = 0;
    m->nonfinite = 0;
    memset(o->reported, 0, (size_t)m->nv);
    for (int v = 0; v < m->nv; v++)
        o->grads[v] = NULL;
    for (int b = 0; b < m->n_buckets; b++) {
        m->buckets[b].missing = m->buckets[b].v_hi - m->buckets[b].v_lo;
        m->buckets[b].started = 0;
    }
    return 0;
}

/* Starts, in index order, the buckets whose variables are all reported. */
static void start_ready_buckets(adadelta_mpi *m)
{
    open_step *o = &m->ostep;
    while (o->next_bucket < m->n_buckets && !m->buckets[o->next_bucket].missing) {
        adadelta_mpi__contribute_bucket(m, &o->st, o->grads, o->next_bucket);
        o->next_bucket++;
    }
}

int adadelta_mpi_grad_ready(adadelta_mpi *m, int v, const void *grad)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_grad_ready: NULL");
    open_step *o = &m->ostep;
    if (!o->open)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_grad_ready: no step is open "
                                  "(call adadelta_mpi_begin_step first)");
    if (v < 0 || v >= m->nv)
        return misuse(m, ADADELTA_EINVAL,
                      "adadelta_mpi_grad_ready: variable index %d is outside [0, %d)", v, m->nv);
    if (o->reported[v])
        return misuse(m, ADADELTA_EINVAL,
                      "adadelta_mpi_grad_ready: variable '%s' was reported twice in this step",
                      adadelta_variable_name(m->core, v));
    o->reported[v] = 1;
    o->grads[v] = grad;
    m->buckets[m->var_bucket[v]].missing--;
    if (o->st.update)
        start_ready_buckets(m);
    m->engine->progress(m);
    return 0;
}

int adadelta_mpi_end_step(adadelta_mpi *m)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_end_step: NULL");
    open_step *o = &m->ostep;
    if (!o->open)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_end_step: no step is open "
                                  "(call adadelta_mpi_begin_step first)");
    for (int v = 0; v < m->nv; v++)
        if (!o->reported[v]) {
            misuse(m, ADADELTA_EINVAL,
                   "adadelta_mpi_end_step: variable '%s' was not reported with "
                   "adadelta_mpi_grad_ready (pass NULL for no gradient)",
                   adadelta_variable_name(m->core, v));
            break;
        }
    o->open = 0;
    int rc = adadelta_mpi__step(m, o->grads, 1);
    if (!rc && m->check_all)
        rc = adadelta_mpi__check_identical(m, "after end_step");
    return rc;
}
