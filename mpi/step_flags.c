/* step_flags.c - the per-step agreement of the ranks in one small message:
 * which gradients are present (a hash, compared as min and max), whether a
 * rank passed no gradients or saw a non-finite one, and the norm partials
 * (each non-zero on the rank that owns its shard). Combining is exact in
 * any order, so an MPI reduction and a shared-memory read of every rank's
 * copy give the same bits. */
#include "mpi_internal.h"

#include <stddef.h>
#include <string.h>

void adadelta_mpi__combine_flags(step_flags *a, const step_flags *b)
{
    if (b->presence_min < a->presence_min)
        a->presence_min = b->presence_min;
    if (b->presence_max > a->presence_max)
        a->presence_max = b->presence_max;
    a->grads_null |= b->grads_null;
    if (b->vars_min < a->vars_min)
        a->vars_min = b->vars_min;
    if (b->vars_max > a->vars_max)
        a->vars_max = b->vars_max;
    a->initial_wish |= b->initial_wish;
    a->check_wish |= b->check_wish;
    a->nonfinite |= b->nonfinite;
    if (b->error_rank < a->error_rank) {
        a->error_rank = b->error_rank;
        a->error_status = b->error_status;
        memcpy(a->error, b->error, sizeof a->error);
    }
    for (int i = 0; i < a->n_partials; i++)
        a->partials[i] += b->partials[i];
}

/* MPI_User_function over `len` step_flags of one size (one communicator's:
 * the size is recovered from the first element). */
static void combine_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const step_flags *b = in;
    step_flags *a = inout;
    size_t bytes = sizeof(step_flags) + (size_t)a->n_partials * sizeof(double);
    for (int i = 0; i < *len; i++)
        adadelta_mpi__combine_flags((step_flags *)((char *)a + i * bytes),
                                    (const step_flags *)((const char *)b + i * bytes));
}

void adadelta_mpi__flags_mpi(size_t bytes, MPI_Datatype *type, MPI_Op *op)
{
    MPI_Type_contiguous((int)bytes, MPI_BYTE, type);
    MPI_Type_commit(type);
    MPI_Op_create(combine_op, 1, op);
}
