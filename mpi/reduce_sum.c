/* reduce_sum.c - the arithmetic of every engine: the mean of the ranks'
 * contributions, added in rank order 0..R-1 and divided by R, so the bits
 * never depend on the MPI library, the engine or the thread count. */
#include "mpi_internal.h"

typedef struct sum_ctx {
    const float *const *in;
    int n_in;
    float *out;
    int from_out, divide;
    float fr;
    int round16; /* compression kind of the mean, or 0 */
} sum_ctx;

/* Inside a block the ranks are added one after the other in vector loops
 * over the elements (a block stays in cache between the passes). */
static void sum_block(int64_t lo, int64_t hi, void *vctx)
{
    const sum_ctx *c = vctx;
    float *restrict out = c->out;
    int r = 0;
    if (!c->from_out) {
        const float *restrict in0 = c->in[r++];
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] = in0[i];
    }
    for (; r < c->n_in; r++) {
        const float *restrict part = c->in[r];
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] += part[i];
    }
    if (c->divide) {
        const float fr = c->fr;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++)
            out[i] = out[i] / fr;
        if (c->round16)
            adadelta_mpi__round16(c->round16, out + lo, hi - lo);
    }
}

void adadelta_mpi__rank_order_sum(const adadelta_mpi *m, const float *const *in, int n_in,
                                  float *out, int64_t n, int from_out, int divide)
{
    sum_ctx c = {in, n_in, out, from_out, divide, (float)m->size, m->compressing};
    CORE->parallel_blocks(m->core, n, 4096, sum_block, &c);
}

void adadelta_mpi__rank_order_mean(const adadelta_mpi *m, const float *const *in, float *out,
                                   int64_t n)
{
    adadelta_mpi__rank_order_sum(m, in, m->size, out, n, 0, 1);
}
