/* identity.c - that every rank holds the same training state: the check
 * at the first step that the ranks start from the same variables (on by
 * default), the broadcast that makes them so, and the debug check of the
 * variables, the counters and (replicated mode) the optimizer state after
 * every step. The gradient accumulators are rank-local by design and not
 * compared. */
#include "mpi_internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static uint64_t state_checksum(const adadelta_mpi *m, int *rc)
{
    adadelta_state_list l;
    if ((*rc = CORE->state_list(m->core, 1, &l)))
        return 0;
    uint64_t h = ADADELTA_MPI_HASH_START;
    for (int i = 0; i < l.n; i++) {
        const adadelta_state_tensor *t = &l.t[i];
        int compared = t->role != ADADELTA_TENSOR_SLOT ||
                       (m->mode == ADADELTA_MPI_REPLICATED &&
                        t->slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR);
        if (compared)
            h = adadelta_mpi__hash(h, t->data,
                                   (size_t)(t->end - t->begin) * adadelta_st_dtype_size(t->dtype));
    }
    CORE->state_free(&l);
    return h;
}

/* 1 if h is the same on every rank; else 0 and the ranks whose h differs
 * from rank 0's in `ranks`. Collective. */
static int same_everywhere(const adadelta_mpi *m, uint64_t h, char *ranks, size_t n)
{
    uint64_t lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, m->comm);
    if (lo == hi)
        return 1;
    adadelta_mpi__differing_ranks(m, h, ranks, n);
    return 0;
}

int adadelta_mpi__check_identical(adadelta_mpi *m, const char *when)
{
    int rc;
    uint64_t h = state_checksum(m, &rc);
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    char ranks[200];
    if (same_everywhere(m, h, ranks, sizeof ranks))
        return 0;
    const char *what =
        m->mode == ADADELTA_MPI_REPLICATED ? "variables or optimizer state" : "variables";
    return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                              "ranks diverged %s (iteration %lld): the %s of rank %s differ "
                              "from rank 0's (checksums)",
                              when, (long long)adadelta_iterations(m->core), what, ranks);
}

int adadelta_mpi_check_identical(adadelta_mpi *m)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_check_identical: NULL");
    int rc = adadelta_mpi__ensure_ready(m);
    return rc ? rc : adadelta_mpi__check_identical(m, "at check_identical");
}

int adadelta_mpi__refuse_in_step(const adadelta_mpi *m, const char *what)
{
    if (!m->ostep.open)
        return 0;
    return adadelta_mpi__fail(ADADELTA_ESTATE,
                              "%s: an overlapped step is open (adadelta_mpi_begin_step without "
                              "end_step)",
                              what);
}

int adadelta_mpi__any_rank(const adadelta_mpi *m, int wish)
{
    int w = wish != 0, any;
    MPI_Allreduce(&w, &any, 1, MPI_INT, MPI_LOR, m->comm);
    return any;
}

uint32_t adadelta_mpi__variables_crc(const adadelta_mpi *m)
{
    uint32_t crc = 0;
    for (int v = 0; v < m->nv; v++)
        crc = adadelta__crc32c(crc, adadelta_variable_data(m->core, v),
                               (size_t)m->vsize[v] * adadelta_mpi__element_bytes(m, v));
    return crc;
}

int adadelta_mpi__initial_mismatch(adadelta_mpi *m, uint32_t mine)
{
    char ranks[200];
    adadelta_mpi__differing_ranks(m, mine, ranks, sizeof ranks);
    return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                              "the ranks start from different variables: those of rank %s differ "
                              "from rank 0's (CRC-32C), so training would diverge; broadcast "
                              "them first (adadelta_mpi_broadcast_variables) or initialise "
                              "every rank alike (adadelta_mpi_set_initial_check(opt, 0) turns "
                              "this check off)",
                              ranks);
}

int adadelta_mpi_broadcast_variables(adadelta_mpi *m, int root)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_broadcast_variables: NULL");
    /* the root valid on every rank before anyone broadcasts */
    int rc = adadelta_mpi__refuse_in_step(m, "adadelta_mpi_broadcast_variables");
    if (!rc && (root < 0 || root >= m->size))
        rc = adadelta_mpi__fail(ADADELTA_EINVAL,
                                "adadelta_mpi_broadcast_variables: root %d is not a rank of the %d",
                                root, m->size);
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    int roots[2] = {root, -root}, got[2];
    MPI_Allreduce(roots, got, 2, MPI_INT, MPI_MIN, m->comm);
    if (got[0] != -got[1])
        return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                                  "adadelta_mpi_broadcast_variables: the ranks name different "
                                  "roots (%d to %d)",
                                  got[0], -got[1]);
    /* the agreement first: the same variables, shapes and dtypes */
    if ((rc = adadelta_mpi__ensure_ready(m)))
        return rc;
    /* the variables alone can be made equal: states that went apart (one
     * rank resumed, the others fresh) need a load on every rank */
    int64_t it[2] = {adadelta_iterations(m->core), -adadelta_iterations(m->core)}, span[2];
    MPI_Allreduce(it, span, 2, MPI_INT64_T, MPI_MIN, m->comm);
    if (span[0] != -span[1])
        return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                                  "adadelta_mpi_broadcast_variables: the ranks are at different "
                                  "iterations (%lld to %lld), so their optimizer states differ; "
                                  "load one state file on every rank (adadelta_mpi_load) instead",
                                  (long long)span[0], (long long)-span[1]);
    for (int v = 0; v < m->nv; v++) {
        char *data = adadelta_variable_data(m->core, v);
        size_t es = adadelta_mpi__element_bytes(m, v);
        MPI_Datatype type = es == 8 ? MPI_DOUBLE : es == 4 ? MPI_FLOAT : MPI_UINT16_T;
        for (int64_t at = 0; at < m->vsize[v]; at += m->chunk) {
            int64_t n = m->vsize[v] - at < m->chunk ? m->vsize[v] - at : m->chunk;
            MPI_Bcast(data + (size_t)at * es, (int)n, type, root, m->comm);
        }
    }
    /* Before the first apply the EMA is what building makes: the
     * variables (the ones broadcast now). */
    if (adadelta_get_config(m->core)->use_ema && adadelta_iterations(m->core) == 0) {
        adadelta_state_list l;
        if ((rc = adadelta_mpi__agree(m, CORE->state_list(m->core, 1, &l))))
            return rc;
        for (int i = 0; i < l.n; i++) {
            const adadelta_state_tensor *t = &l.t[i];
            if (t->slot == ADADELTA_SLOT_EMA && t->end > t->begin) {
                size_t es = adadelta_st_dtype_size(t->dtype);
                memcpy(t->data,
                       (const char *)adadelta_variable_data(m->core, t->var) +
                           (size_t)t->begin * es,
                       (size_t)(t->end - t->begin) * es);
            }
        }
        CORE->state_free(&l);
    }
    return 0;
}
