/* kernel.h - the per-element loops of the Adadelta step. They live in
 * step.c, compiled once per instruction set with -ffp-contract=off, so
 * every variant computes the same bits; dispatch.c chooses one table per
 * process (ADADELTA_KERNEL can pin it) and the adadelta_kernel_* calls below
 * go through it. */
#ifndef ADADELTA_KERNEL_H
#define ADADELTA_KERNEL_H

#include <stdint.h>

enum {
    ADADELTA_CLIP_NONE = 0,   /* g */
    ADADELTA_CLIP_SCALE = 1,  /* g * a            (global_clipnorm) */
    ADADELTA_CLIP_NORM = 2,   /* (g * a) / b      (clipnorm) */
    ADADELTA_CLIP_VALUE = 3   /* clip(g, -a, a)   (clipvalue) */
};

/* Everything one step needs per element, as float32 constants. */
typedef struct adadelta_step_params {
    float rho, one_minus_rho, epsilon, lr;
    int divide;          /* g = g / divisor (loss scale) */
    float divisor;
    int accumulate;      /* g = (g + acc) / steps; acc = 0 */
    float steps;
    int clip;            /* ADADELTA_CLIP_* */
    float clip_a, clip_b;
    int weight_decay;    /* var = var - var * wd * lr */
    float wd;
    int ema;             /* avg = m * avg + (1 - m) * var */
    float ema_m, ema_one_minus_m;
    int ema_overwrite;   /* var = avg afterwards */
} adadelta_step_params;

typedef struct adadelta_kernels {
    const char *name; /* "avx512f", "avx2", "default" */
    /* The fused step over n elements: gradient preparation, clipping,
     * weight decay, Adadelta, EMA, in Keras's order; one pass over memory.
     * acc and avg may be NULL when their flags are off. */
    void (*step)(const adadelta_step_params *p, int64_t n, float *restrict var,
                 const float *restrict grad, float *restrict acc, float *restrict acc_grad,
                 float *restrict acc_delta, float *restrict avg);
    /* Sum of squares (in double, in a fixed order independent of the
     * vector width) of the prepared gradient (divide, accumulate as in p). */
    double (*sum_squares)(const adadelta_step_params *p, int64_t n, const float *restrict grad,
                          const float *restrict acc);
    /* acc = g / divisor + acc (divide only if p->divide). */
    void (*accumulate)(const adadelta_step_params *p, int64_t n, const float *restrict grad,
                       float *restrict acc);
    /* out = prepared gradient (divide and accumulate as in p; acc kept). */
    void (*prepare)(const adadelta_step_params *p, int64_t n, const float *restrict grad,
                    const float *restrict acc, float *restrict out);
    /* The same in place: g = prepared g. */
    void (*prepare_inplace)(const adadelta_step_params *p, int64_t n, float *restrict g,
                            const float *restrict acc);
    /* EMA of variables without a step this call. */
    void (*ema)(const adadelta_step_params *p, int64_t n, float *restrict var,
                float *restrict avg);
    /* 1 if every element is finite. */
    int (*all_finite)(int64_t n, const float *restrict x);
} adadelta_kernels;

/* One table per instruction set compiled in (step.c). */
extern const adadelta_kernels adadelta__kernels_default;
#if defined(ADADELTA_HAVE_X86_KERNELS)
extern const adadelta_kernels adadelta__kernels_avx2, adadelta__kernels_avx512f;
#endif

/* The table this process uses (dispatch.c). */
const adadelta_kernels *adadelta__kernels(void);

#define adadelta_kernel_step(...) (adadelta__kernels()->step(__VA_ARGS__))
#define adadelta_kernel_sum_squares(...) (adadelta__kernels()->sum_squares(__VA_ARGS__))
#define adadelta_kernel_accumulate(...) (adadelta__kernels()->accumulate(__VA_ARGS__))
#define adadelta_kernel_prepare(...) (adadelta__kernels()->prepare(__VA_ARGS__))
#define adadelta_kernel_prepare_inplace(...) (adadelta__kernels()->prepare_inplace(__VA_ARGS__))
#define adadelta_kernel_ema(...) (adadelta__kernels()->ema(__VA_ARGS__))
#define adadelta_kernel_all_finite(...) (adadelta__kernels()->all_finite(__VA_ARGS__))

#endif
