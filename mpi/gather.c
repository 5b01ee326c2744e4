/* gather.c - what the engines that use MPI collectives share: cutting a
 * flat range at the ranks' ranges (MPI's int counts and offsets), and the
 * sharded mode's allgather of the updated variables, in chunks so that no
 * count overflows whatever the total. */
#include "mpi_internal.h"

#include <string.h>

void adadelta_mpi__cut(const adadelta_mpi *m, int64_t lo, int64_t hi, int *cnt, int *dsp)
{
    for (int r = 0; r < m->size; r++) {
        int64_t a, b;
        if (adadelta_mpi__portion(m, r, lo, hi, &a, &b)) {
            cnt[r] = (int)(b - a);
            dsp[r] = (int)(a - lo);
        } else {
            cnt[r] = dsp[r] = 0;
        }
    }
}

void adadelta_mpi__allgather_variables(adadelta_mpi *m, float *flat, MPI_Comm comm, int *cnt,
                                       int *dsp)
{
    for (int v = 0; v < m->nv; v++) {
        int64_t b0, b1;
        if (adadelta_mpi__own_part(m, v, &b0, &b1))
            adadelta_mpi__to_words(m, v, b0, b1, flat);
    }
    for (int64_t lo = 0; lo < m->total; lo += m->chunk) {
        int64_t hi = lo + m->chunk < m->total ? lo + m->chunk : m->total;
        adadelta_mpi__cut(m, lo, hi, cnt, dsp);
        MPI_Request req;
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, flat + lo, cnt, dsp, MPI_FLOAT, comm,
                        &req);
        adadelta_mpi__wait_request(m, &req, "a gather of the ranks' ranges");
    }
    for (int v = 0; v < m->nv; v++)
        if (m->vsize[v])
            adadelta_mpi__from_words(m, v, 0, m->vsize[v], flat);
}
