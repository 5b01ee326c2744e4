/* reduce_sum.c - the arithmetic of every engine: the mean of the ranks'
 * contributions, added in rank order 0..R-1 and divided by R, so the bits
 * never depend on the MPI library, the engine or the thread count. Each
 * variable is summed in its reduction type: float32 words (float32 and the
 * 16-bit dtypes, whose contributions are float32), float64 pairs of words. */
#include "mpi_internal.h"

typedef struct sum_ctx {
    const void *const *in;
    int n_in;
    void *out;
    int from_out, divide;
    double r;
    int round16; /* compression kind of the mean, or 0 */
} sum_ctx;

/* Inside a block the ranks are added one after the other in vector loops
 * over the elements (a block stays in cache between the passes). */
#define SUM_BLOCK(T, NAME)                                                    \
    static void NAME(int64_t lo, int64_t hi, void *vctx)                      \
    {                                                                         \
        const sum_ctx *c = vctx;                                              \
        T *restrict out = c->out;                                             \
        int r = 0;                                                            \
        if (!c->from_out) {                                                   \
            const T *restrict in0 = c->in[r++];                               \
            _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) out[i] = in0[i]; \
        }                                                                     \
        for (; r < c->n_in; r++) {                                            \
            const T *restrict part = c->in[r];                                \
            _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) out[i] += part[i]; \
        }                                                                     \
        if (c->divide) {                                                      \
            const T fr = (T)c->r;                                             \
            _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) out[i] = out[i] / fr; \
            if (c->round16)                                                   \
                adadelta_mpi__round16(c->round16, (float *)out + lo, hi - lo); \
        }                                                                     \
    }
SUM_BLOCK(float, sum_block_f32)
SUM_BLOCK(double, sum_block_f64)

/* Words [i, i + n) of the stretch, all of one reduction type. */
static void sum_run(const adadelta_mpi *m, int f64, const float *const *in, int n_in, float *out,
                    int64_t i, int64_t n, int from_out, int divide)
{
    const void *at[n_in > 0 ? n_in : 1];
    for (int r = 0; r < n_in; r++)
        at[r] = in[r] + i;
    sum_ctx c = {at, n_in, out + i, from_out, divide, (double)m->size, f64 ? 0 : m->compressing};
    if (f64)
        CORE->parallel_blocks(m->core, n / 2, 2048, sum_block_f64, &c);
    else
        CORE->parallel_blocks(m->core, n, 4096, sum_block_f32, &c);
}

void adadelta_mpi__rank_order_sum(const adadelta_mpi *m, int64_t at, const float *const *in,
                                  int n_in, float *out, int64_t n, int from_out, int divide)
{
    if (!m->any_f64) {
        sum_run(m, 0, in, n_in, out, 0, n, from_out, divide);
        return;
    }
    /* runs of variables of one reduction type (cuts are even: whole pairs) */
    int lo = 0, hi = m->nv;
    while (lo < hi) { /* the last variable starting at or before `at` */
        int mid = (lo + hi + 1) / 2;
        if (m->voff[mid] <= at)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (int64_t i = 0; i < n && lo < m->nv;) {
        int f64 = m->vdtype[lo] == ADADELTA_F64, v = lo;
        while (v + 1 < m->nv && (m->vdtype[v + 1] == ADADELTA_F64) == f64)
            v++;
        int64_t end = m->voff[v + 1] - at < n ? m->voff[v + 1] - at : n;
        if (end > i)
            sum_run(m, f64, in, n_in, out, i, end - i, from_out, divide);
        i = end > i ? end : i;
        lo = v + 1;
    }
}

void adadelta_mpi__rank_order_mean(const adadelta_mpi *m, int64_t at, const float *const *in,
                                   float *out, int64_t n)
{
    adadelta_mpi__rank_order_sum(m, at, in, m->size, out, n, 0, 1);
}
