/* reduce_sum.c - the arithmetic of every engine: the mean of the ranks'
 * contributions, added in rank order 0..R-1 and divided by R, so the bits
 * never depend on the MPI library, the engine or the thread count. */
#include "mpi_internal.h"

typedef struct mean_ctx {
    const float *const *in;
    float *out;
    int R;
} mean_ctx;

/* Inside a block the ranks are added one after the other in vector loops
 * over the elements (a block stays in cache between the passes). */
static void mean_block(int64_t lo, int64_t hi, void *vctx)
{
    const mean_ctx *c = vctx;
    float *restrict out = c->out;
    const float *restrict in0 = c->in[0];
    const float fr = (float)c->R;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        out[i] = in0[i];
    for (int r = 1; r < c->R; r++) {
        const float *restrict part = c->in[r];
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] += part[i];
    }
#pragma omp simd
    for (int64_t i = lo; i < hi; i++)
        out[i] = out[i] / fr;
}

void adadelta_mpi__rank_order_mean(const adadelta_mpi *m, const float *const *in, float *out,
                                   int64_t n)
{
    mean_ctx c = {in, out, m->size};
    CORE->parallel_blocks(m->core, n, 4096, mean_block, &c);
}
