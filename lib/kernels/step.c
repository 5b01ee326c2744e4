/* step.c - the hot loops. Compiled with -O3 -fno-math-errno (so sqrtf
 * vectorises) and -ffp-contract=off (no fused multiply-add: the same bits on
 * every instruction set, and Keras's own unfused order). Never -ffast-math.
 *
 * Each loop is one always-inline body specialised for constant flags, so the
 * compiler emits a branch-free vector loop per feature combination. The file
 * is compiled once per instruction set (-mavx512f, -mavx2, baseline) with
 * ADADELTA_KERNEL_ISA naming the table it defines (dispatch.c picks one). */
#include "kernel.h"

#include <math.h>
#include <stddef.h>

#ifndef ADADELTA_KERNEL_ISA
#define ADADELTA_KERNEL_ISA default
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)
#define KERNEL(name) CAT(CAT(name, _), ADADELTA_KERNEL_ISA)
#define MULTI_ISA static

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE float prepare(float g, float acc, int divide, float divisor,
                            int accumulate, float steps)
{
    if (divide)
        g = g / divisor;
    if (accumulate)
        g = (g + acc) / steps;
    return g;
}

ALWAYS_INLINE float clip(float g, int mode, float a, float b)
{
    switch (mode) {
    case ADADELTA_CLIP_SCALE:
        return g * a;
    case ADADELTA_CLIP_NORM:
        return (g * a) / b;
    case ADADELTA_CLIP_VALUE:
        /* NaN compares false both ways and stays NaN, as in Keras. */
        return g < -a ? -a : (g > a ? a : g);
    default:
        return g;
    }
}

ALWAYS_INLINE void step_body(const adadelta_step_params *p, int64_t n,
                             float *restrict var, const float *restrict grad,
                             float *restrict acc, float *restrict ag,
                             float *restrict ad, float *restrict avg,
                             const int divide, const int accumulate,
                             const int clip_mode, const int weight_decay,
                             const int ema)
{
    const float rho = p->rho, omr = p->one_minus_rho, eps = p->epsilon;
    const float lr = p->lr, divisor = p->divisor, steps = p->steps;
    const float ca = p->clip_a, cb = p->clip_b, wd = p->wd;
    const float m = p->ema_m, om = p->ema_one_minus_m;
    const int overwrite = p->ema_overwrite;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float g = prepare(grad[i], accumulate ? acc[i] : 0.0f, divide, divisor,
                          accumulate, steps);
        if (accumulate)
            acc[i] = 0.0f;
        g = clip(g, clip_mode, ca, cb);
        float v = var[i];
        if (weight_decay)
            v = v - v * wd * lr;
        float new_ag = rho * ag[i] + omr * (g * g);
        float delta = -((sqrtf(ad[i] + eps) * g) / sqrtf(new_ag + eps));
        float new_ad = rho * ad[i] + omr * (delta * delta);
        v = v + lr * delta;
        ag[i] = new_ag;
        ad[i] = new_ad;
        if (ema) {
            float a = m * avg[i] + om * v;
            avg[i] = a;
            v = overwrite ? a : v;
        }
        var[i] = v;
    }
}

/* One case per combination of the flags that change memory traffic or cost
 * a division; the rest are selects inside the loop. */
#define STEP_CASE(D, A, C, W, E)                                              \
    case ((D) | (A) << 1 | (C) << 2 | (W) << 4 | (E) << 5):                   \
        step_body(p, n, var, grad, acc, ag, ad, avg, D, A, C, W, E);         \
        return;
#define STEP_CASES_E(D, A, C, W) STEP_CASE(D, A, C, W, 0) STEP_CASE(D, A, C, W, 1)
#define STEP_CASES_W(D, A, C) STEP_CASES_E(D, A, C, 0) STEP_CASES_E(D, A, C, 1)
#define STEP_CASES_C(D, A)                                                    \
    STEP_CASES_W(D, A, 0) STEP_CASES_W(D, A, 1) STEP_CASES_W(D, A, 2)          \
        STEP_CASES_W(D, A, 3)
#define STEP_CASES_A(D) STEP_CASES_C(D, 0) STEP_CASES_C(D, 1)

MULTI_ISA
void KERNEL(step)(const adadelta_step_params *p, int64_t n,
                          float *restrict var, const float *restrict grad,
                          float *restrict acc, float *restrict ag,
                          float *restrict ad, float *restrict avg)
{
    int key = (p->divide != 0) | (p->accumulate != 0) << 1 | (p->clip & 3) << 2 |
              (p->weight_decay != 0) << 4 | (p->ema != 0) << 5;
    switch (key) {
        STEP_CASES_A(0)
        STEP_CASES_A(1)
    }
}

/* Lanes of the sum of squares: a fixed number, so the order of additions is
 * the same whatever vector width the clone uses. */
#define SUM_LANES 16

ALWAYS_INLINE double sum_squares_body(const adadelta_step_params *p, int64_t n,
                                      const float *restrict grad,
                                      const float *restrict acc,
                                      const int divide, const int accumulate)
{
    double lane[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
#pragma omp simd
        for (int j = 0; j < SUM_LANES; j++) {
            float g = prepare(grad[i + j], accumulate ? acc[i + j] : 0.0f, divide,
                              p->divisor, accumulate, p->steps);
            lane[j] += (double)(g * g);
        }
    }
    for (int j = 0; i < n; i++, j++) {
        float g = prepare(grad[i], accumulate ? acc[i] : 0.0f, divide, p->divisor,
                          accumulate, p->steps);
        lane[j] += (double)(g * g);
    }
    double s = 0.0;
    for (int j = 0; j < SUM_LANES; j++)
        s += lane[j];
    return s;
}

MULTI_ISA
double KERNEL(sum_squares)(const adadelta_step_params *p, int64_t n,
                                   const float *restrict grad,
                                   const float *restrict acc)
{
    if (p->accumulate)
        return p->divide ? sum_squares_body(p, n, grad, acc, 1, 1)
                         : sum_squares_body(p, n, grad, acc, 0, 1);
    return p->divide ? sum_squares_body(p, n, grad, acc, 1, 0)
                     : sum_squares_body(p, n, grad, acc, 0, 0);
}

MULTI_ISA
void KERNEL(accumulate)(const adadelta_step_params *p, int64_t n,
                                const float *restrict grad, float *restrict acc)
{
    if (p->divide) {
        const float d = p->divisor;
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = grad[i] / d + acc[i];
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = grad[i] + acc[i];
    }
}

MULTI_ISA
void KERNEL(prepare)(const adadelta_step_params *p, int64_t n,
                             const float *restrict grad,
                             const float *restrict acc, float *restrict out)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = prepare(grad[i], accumulate ? acc[i] : 0.0f, divide, p->divisor,
                         accumulate, p->steps);
}

/* The same in place: g = prepared g (a gradient already in the buffer the
 * MPI layer reduces). */
MULTI_ISA
void KERNEL(prepare_inplace)(const adadelta_step_params *p, int64_t n, float *restrict g,
                             const float *restrict acc)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        g[i] = prepare(g[i], accumulate ? acc[i] : 0.0f, divide, p->divisor, accumulate, p->steps);
}

MULTI_ISA
void KERNEL(ema)(const adadelta_step_params *p, int64_t n,
                         float *restrict var, float *restrict avg)
{
    const float m = p->ema_m, om = p->ema_one_minus_m;
    if (p->ema_overwrite) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            float a = m * avg[i] + om * var[i];
            avg[i] = a;
            var[i] = a;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            avg[i] = m * avg[i] + om * var[i];
    }
}

MULTI_ISA
int KERNEL(all_finite)(int64_t n, const float *restrict x)
{
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    return !bad;
}

const adadelta_kernels KERNEL(adadelta__kernels) = {
    STR(ADADELTA_KERNEL_ISA), KERNEL(step),    KERNEL(sum_squares), KERNEL(accumulate),
    KERNEL(prepare),          KERNEL(prepare_inplace), KERNEL(ema), KERNEL(all_finite),
};
