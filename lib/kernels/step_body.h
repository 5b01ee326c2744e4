/* step_body.h - the loops of the step for one dtype, included by step.c
 * once per dtype with
 *   ELEM       the stored element (float, double, uint16_t bits)
 *   REAL       the type it is computed in (float for the 16-bit dtypes)
 *   LD(e)      ELEM -> REAL, exact
 *   ST(x)      REAL -> ELEM, x already a value of the dtype
 *   RN(x)      x rounded to the dtype (nothing for float and double)
 *   RN_WIDE(d) a double rounded once to the dtype
 *   SQRT       REAL's correctly rounded square root (sqrtf, sqrt)
 *   FN(name)   the function's name for this dtype and instruction set
 *   WORD       the type the MPI layer reduces gradients in (float, double)
 * Every operation is rounded to the dtype, as Keras computes each op in the
 * variable's dtype; where Keras computes in float32 instead (a 16-bit
 * gradient inside LossScaleOptimizer: p->wide_grad; a clip in float32:
 * p->wide_clip) the op is left in float32 until the step's cast. No include
 * guard: it is meant to be included once per dtype. */

/* x rounded unless the op is computed wider */
#define RN_IF(x, wide) ((wide) ? (x) : RN(x))

ALWAYS_INLINE REAL FN(prepare1)(REAL g, REAL acc, int divide, REAL divisor, int accumulate,
                                REAL steps, int wide)
{
    if (divide)
        g = RN_IF(g / divisor, wide);
    if (accumulate)
        g = RN_IF(RN_IF(g + acc, wide) / steps, wide);
    return g;
}

ALWAYS_INLINE REAL FN(clip1)(REAL g, int mode, REAL a, REAL b, double wide_scale, int wide)
{
    switch (mode) {
    case ADADELTA_CLIP_SCALE:
        return RN_IF(g * a, wide);
    case ADADELTA_CLIP_NORM:
        return RN_IF(RN_IF(g * a, wide) / b, wide);
    case ADADELTA_CLIP_VALUE:
        /* NaN compares false both ways and stays NaN, as in Keras. */
        return g < -a ? -a : (g > a ? a : g);
    case ADADELTA_CLIP_SCALE_WIDE:
        return RN_WIDE((double)g * wide_scale);
    default:
        return g;
    }
}

ALWAYS_INLINE void FN(step_body)(const PARAMS *p, int64_t n, ELEM *restrict var,
                                 const ELEM *restrict grad, ELEM *restrict acc,
                                 ELEM *restrict ag, ELEM *restrict ad, ELEM *restrict avg,
                                 const int divide, const int accumulate, const int clip_mode,
                                 const int weight_decay, const int ema)
{
    const REAL rho = p->rho, omr = p->one_minus_rho, eps = p->epsilon;
    const REAL lr = p->lr, divisor = p->divisor, steps = p->steps;
    const REAL ca = p->clip_a, cb = p->clip_b, wd = p->wd;
    const double wide_scale = p->clip_wide;
    const REAL m = p->ema_m, om = p->ema_one_minus_m;
    const int overwrite = p->ema_overwrite, wide_grad = p->wide_grad, wide_clip = p->wide_clip;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = FN(prepare1)(LD(grad[i]), accumulate ? LD(acc[i]) : (REAL)0, divide, divisor,
                              accumulate, steps, wide_grad);
        if (accumulate)
            acc[i] = ST((REAL)0);
        g = FN(clip1)(g, clip_mode, ca, cb, wide_scale, wide_clip);
        /* update_step's cast of the gradient to the variable's dtype */
        if (divide || accumulate || clip_mode)
            g = RN(g);
        REAL v = LD(var[i]);
        if (weight_decay)
            v = RN(v - RN(RN(v * wd) * lr));
        REAL old_ag = LD(ag[i]), old_ad = LD(ad[i]);
        REAL new_ag = RN(RN(rho * old_ag) + RN(omr * RN(g * g)));
        REAL delta = -RN(RN(RN(SQRT(RN(old_ad + eps))) * g) / RN(SQRT(RN(new_ag + eps))));
        REAL new_ad = RN(RN(rho * old_ad) + RN(omr * RN(delta * delta)));
        v = RN(v + RN(lr * delta));
        ag[i] = ST(new_ag);
        ad[i] = ST(new_ad);
        if (ema) {
            REAL a = RN(RN(m * LD(avg[i])) + RN(om * v));
            avg[i] = ST(a);
            v = overwrite ? a : v;
        }
        var[i] = ST(v);
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

static void FN(step)(const PARAMS *p, int64_t n, ELEM *restrict var, const ELEM *restrict grad,
                     ELEM *restrict acc, ELEM *restrict ag, ELEM *restrict ad,
                     ELEM *restrict avg)
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

/* The squares are in the gradient's dtype (float32 when p->wide_grad),
 * added in double. */
ALWAYS_INLINE double FN(sum_squares_body)(const PARAMS *p, int64_t n, const ELEM *restrict grad,
                                          const ELEM *restrict acc, const int divide,
                                          const int accumulate)
{
    const int wide = p->wide_grad;
    double lane[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
#pragma omp simd
        for (int j = 0; j < SUM_LANES; j++) {
            REAL g = FN(prepare1)(LD(grad[i + j]), accumulate ? LD(acc[i + j]) : (REAL)0, divide,
                                  p->divisor, accumulate, p->steps, wide);
            lane[j] += (double)RN_IF(g * g, wide);
        }
    }
    for (int j = 0; i < n; i++, j++) {
        REAL g = FN(prepare1)(LD(grad[i]), accumulate ? LD(acc[i]) : (REAL)0, divide,
                              p->divisor, accumulate, p->steps, wide);
        lane[j] += (double)RN_IF(g * g, wide);
    }
    double s = 0.0;
    for (int j = 0; j < SUM_LANES; j++)
        s += lane[j];
    return s;
}

static double FN(sum_squares)(const PARAMS *p, int64_t n, const ELEM *restrict grad,
                              const ELEM *restrict acc)
{
    if (p->accumulate)
        return p->divide ? FN(sum_squares_body)(p, n, grad, acc, 1, 1)
                         : FN(sum_squares_body)(p, n, grad, acc, 0, 1);
    return p->divide ? FN(sum_squares_body)(p, n, grad, acc, 1, 0)
                     : FN(sum_squares_body)(p, n, grad, acc, 0, 0);
}

/* The accumulator is in the variable's dtype: the sum is rounded to it. */
static void FN(accumulate)(const PARAMS *p, int64_t n, const ELEM *restrict grad,
                           ELEM *restrict acc)
{
    const int wide = p->wide_grad;
    if (p->divide) {
        const REAL d = p->divisor;
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = ST(RN(RN_IF(LD(grad[i]) / d, wide) + LD(acc[i])));
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            acc[i] = ST(RN(LD(grad[i]) + LD(acc[i])));
    }
}

/* out = prepared gradient, the MPI layer's contribution: in the dtype (a
 * value of it in float32 for the 16-bit ones), or float32 where Keras
 * computes it in float32 (p->wide_grad). */
static void FN(prepare)(const PARAMS *p, int64_t n, const ELEM *restrict grad,
                        const ELEM *restrict acc, WORD *restrict out)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = (WORD)FN(prepare1)(LD(grad[i]), accumulate ? LD(acc[i]) : (REAL)0, divide,
                                    p->divisor, accumulate, p->steps, p->wide_grad);
}

/* The gradient update_step casts, from the mean of the contributions: the
 * mean of gradients of the dtype is rounded to it (a float32 one is kept),
 * then divided (p->divide: by the accumulation steps) and clipped as the
 * fused step would, and cast to the dtype. The step then runs on it
 * without divide or clip. */
ALWAYS_INLINE void FN(narrow_body)(const PARAMS *p, int64_t n, const WORD *restrict mean,
                                   ELEM *restrict out, const int divide, const int mode)
{
    const int wide = p->wide_grad, wide_clip = p->wide_clip;
    const REAL divisor = p->divisor, ca = p->clip_a, cb = p->clip_b;
    const double wide_scale = p->clip_wide;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = RN_IF((REAL)mean[i], wide);
        g = FN(prepare1)(g, (REAL)0, divide, divisor, 0, (REAL)1, wide);
        g = FN(clip1)(g, mode, ca, cb, wide_scale, wide_clip);
        out[i] = ST(RN(g));
    }
}

/* One loop per clip mode and divide (constants: vector loops). */
#define NARROW_CASE(M)                                                        \
    case M:                                                                   \
        d ? FN(narrow_body)(p, n, mean, out, 1, M) : FN(narrow_body)(p, n, mean, out, 0, M); \
        return;
static void FN(narrow)(const PARAMS *p, int64_t n, const WORD *restrict mean,
                       ELEM *restrict out)
{
    const int d = p->divide != 0;
    switch (p->clip & 7) {
        NARROW_CASE(ADADELTA_CLIP_SCALE)
        NARROW_CASE(ADADELTA_CLIP_NORM)
        NARROW_CASE(ADADELTA_CLIP_VALUE)
        NARROW_CASE(ADADELTA_CLIP_SCALE_WIDE)
    default:
        d ? FN(narrow_body)(p, n, mean, out, 1, ADADELTA_CLIP_NONE)
          : FN(narrow_body)(p, n, mean, out, 0, ADADELTA_CLIP_NONE);
    }
}
#undef NARROW_CASE

/* The same in place: g = prepared g (a gradient already in the buffer the
 * MPI layer reduces). */
static void FN(prepare_inplace)(const PARAMS *p, int64_t n, ELEM *restrict g,
                                const ELEM *restrict acc)
{
    const int divide = p->divide != 0, accumulate = p->accumulate != 0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        g[i] = ST(RN(FN(prepare1)(LD(g[i]), accumulate ? LD(acc[i]) : (REAL)0, divide,
                                  p->divisor, accumulate, p->steps, p->wide_grad)));
}

static void FN(ema)(const PARAMS *p, int64_t n, ELEM *restrict var, ELEM *restrict avg)
{
    const REAL m = p->ema_m, om = p->ema_one_minus_m;
    if (p->ema_overwrite) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            REAL a = RN(RN(m * LD(avg[i])) + RN(om * LD(var[i])));
            avg[i] = ST(a);
            var[i] = ST(a);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            avg[i] = ST(RN(RN(m * LD(avg[i])) + RN(om * LD(var[i]))));
    }
}

static int FN(all_finite)(int64_t n, const ELEM *restrict x)
{
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; i++)
        bad |= !isfinite(LD(x[i]));
    return !bad;
}

#undef RN_IF
