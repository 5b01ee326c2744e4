/* identity.c - the debug check that every rank holds the same training
 * state: a checksum of the variables, the counters and (replicated mode)
 * the optimizer state, compared across ranks. The gradient accumulators
 * are rank-local by design and not compared. */
#include "mpi_internal.h"

#include <stdio.h>

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

int adadelta_mpi__check_identical(adadelta_mpi *m, const char *when)
{
    int rc;
    uint64_t h = state_checksum(m, &rc), lo, hi;
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, m->comm);
    if (lo == hi)
        return 0;
    char ranks[200];
    adadelta_mpi__differing_ranks(m, h, ranks, sizeof ranks);
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
