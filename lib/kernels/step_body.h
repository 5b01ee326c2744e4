/* step_body.h - the loops of the step for one dtype, included by step.c
 * once per dtype with
 *   REAL      the element type (float, double)
 *   PARAMS    its adadelta_step_params type
 *   SQRT      its correctly rounded square root (sqrtf, sqrt)
 *   FN(name)  the function's name for this dtype and instruction set
 * Every operation is rounded to REAL, as Keras computes each op in the
 * variable's dtype. No include guard: it is meant to be included twice. */

ALWAYS_INLINE REAL FN(prepare1)(REAL g, REAL acc, int divide, REAL divisor, int accumulate,
                                REAL steps)
{
    if (divide)
        g = g / divisor;
    if (accumulate)
        g = (g + acc) / steps;
    return g;
}

ALWAYS_INLINE REAL FN(clip1)(REAL g, int mode, REAL a, REAL b, double wide)
{
    switch (mode) {
    case ADADELTA_CLIP_SCALE:
        return g * a;
    case ADADELTA_CLIP_NORM:
        return (g * a) / b;
    case ADADELTA_CLIP_VALUE:
        /* NaN compares false both ways and stays NaN, as in Keras. */
        return g < -a ? -a : (g > a ? a : g);
    case ADADELTA_CLIP_SCALE_WIDE:
        return (REAL)((double)g * wide);
    default:
        return g;
    }
}

ALWAYS_INLINE void FN(step_body)(const PARAMS *p, int64_t n, REAL *restrict var,
                                 const REAL *restrict grad, REAL *restrict acc,
                                 REAL *restrict ag, REAL *restrict ad, REAL *restrict avg,
                                 const int divide, const int accumulate, const int clip_mode,
                                 const int weight_decay, const int ema)
{
    const REAL rho = p->rho, omr = p->one_minus_rho, eps = p->epsilon;
    const REAL lr = p->lr, divisor = p->divisor, steps = p->steps;
    const REAL ca = p->clip_a, cb = p->clip_b, wd = p->wd;
    const double wide = p->clip_wide;
    const REAL m = p->ema_m, om = p->ema_one_minus_m;
    const int overwrite = p->ema_overwrite;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = FN(prepare1)(grad[i], accumulate ? acc[i] : (REAL)0, divide, divisor,
                              accumulate, steps);
        if (accumulate)
            acc[i] = (REAL)0;
        g = FN(clip1)(g, clip_mode, ca, cb, wide);
        REAL v = var[i];
        if (weight_decay)
            v = v - v * wd * lr;
        REAL new_ag = rho * ag[i] + omr * (g * g);
        REAL delta = -((SQRT(ad[i] + eps) * g) / SQRT(new_ag + eps));
        REAL new_ad = rho * ad[i] + omr * (delta * delta);
        v = v + lr * delta;
        ag[i] = new_ag;
        ad[i] = new_ad;
        if (ema) {
            REAL a = m * avg[i] + om * v;
            avg[i] = a;
            v = overwrite ? a : v;
        }
        var[i] = v;
    }
}

/* One case per combination of the flags that change memory traffic or cost
 * a division; the rest are selects inside the loop. */
#define STEP_CASE(D, A, C, W, E)                                              \
    case ((D) | (A) << 1 | (C) << 2 | (W) << 5 | (E) << 6):                   \
        FN(step_body)(p, n, var, grad, acc, ag, ad, avg, D, A, C, W, E);     \
        return;
#define STEP_CASES_E(D, A, C, W) STEP_CASE(D, A, C, W, 0) STEP_CASE(D, A, C, W, 1)
#define STEP_CASES_W(D, A, C) STEP_CASES_E(D, A, C, 0) STEP_CASES_E(D, A, C, 1)
#define STEP_CASES_C(D, A)                                                    \
    STEP_CASES_W(D, A, 0) STEP_CASES_W(D, A, 1) STEP_CASES_W(D, A, 2)          \
        STEP_CASES_W(D, A, 3) STEP_CASES_W(D, A, 4)
#define STEP_CASES_A(D) STEP_CASES_C(D, 0) STEP_CASES_C(D, 1)

static void FN(step)(const PARAMS *p, int64_t n, REAL *restrict var, const REAL *restrict grad,
                     REAL *restrict acc, REAL *restrict ag, REAL *restrict ad,
                     REAL *restrict avg)
{
    int key = (p->divide != 0) | (p->accumulate != 0) << 1 | (p->clip & 7) << 2 |
              (p->weight_decay != 0) << 5 | (p->ema != 0) << 6;
    switch (key) {
        STEP_CASES_A(0)
        STEP_CASES_A(1)
    }
}
#undef STEP_CASE
#undef STEP_CASES_E
#undef STEP_CASES_W
#undef STEP_CASES_C
#undef STEP_CASES_A

ALWAYS_INLINE double FN(sum_squares_body)(const PARAMS *p, int64_t n, const REAL *restrict grad,
                                          const REAL *restrict acc, const int divide,
                                          const int accumulate)
{
    double lane[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
#pragma omp simd
        for (int j = 0; j < SUM_LANES; j++) {
            REAL g = FN(prepare1)(grad[i + j], accumulate ? acc[i + j] : (REAL)0, divide,
                                  p->divisor, accumulate, p->steps);
            lane[j] += (double)(g * g);
        }
    }
    for (int j = 0; i < n; i++, j++) {
        REAL g = FN(prepare1)(grad[i], accumulate ? acc[i] : (REAL)0, divide, p->divisor,
                              accumulate, p->steps);
        lane[j] += (double)(g * g);
    }
    double s = 0.0;
    for (int j = 0; j < SUM_LANES; j++)
        s += lane[j];
    return s;
}

static double FN(sum_squares)(const PARAMS *p, int64_t n, const REAL *restrict grad,
                              const REAL *restrict acc)
{
    if (p->accumulate)
        return p->divide ? FN(sum_squares_body)(p, n, grad, acc, 1, 1)
                         : FN(sum_squares_body)(p, n, grad, acc, 0, 1);
    return p->divide ? FN(sum_squares_body)(p, n, grad, acc, 1, 0)
                     : FN(sum_squares_body)(p, n, grad, acc, 0, 0);
}

static void FN(accumulate)(const PARAMS *p, int64_t n, const REAL *restrict grad,
                           REAL *restrict acc)
{
    if (p->divide) {
        const REAL d = p->divisor;
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = grad[i] / d + acc[i];
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = grad[i] + acc[i];
    }
}

static void FN(prepare)(const PARAMS *p, int64_t n, const REAL *restrict grad,
                        const REAL *restrict acc, REAL *restrict out)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = FN(prepare1)(grad[i], accumulate ? acc[i] : (REAL)0, divide, p->divisor,
                              accumulate, p->steps);
}

/* The same in place: g = prepared g (a gradient already in the buffer the
 * MPI layer reduces). */
static void FN(prepare_inplace)(const PARAMS *p, int64_t n, REAL *restrict g,
                                const REAL *restrict acc)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        g[i] = FN(prepare1)(g[i], accumulate ? acc[i] : (REAL)0, divide, p->divisor,
                            accumulate, p->steps);
}

static void FN(ema)(const PARAMS *p, int64_t n, REAL *restrict var, REAL *restrict avg)
{
    const REAL m = p->ema_m, om = p->ema_one_minus_m;
    if (p->ema_overwrite) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            REAL a = m * avg[i] + om * var[i];
            avg[i] = a;
            var[i] = a;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            avg[i] = m * avg[i] + om * var[i];
    }
}

static int FN(all_finite)(int64_t n, const REAL *restrict x)
{
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    return !bad;
}
