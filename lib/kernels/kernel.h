/* kernel.h - the per-element loops of the Adadelta step. They live in
 * step_body.h, instantiated once per variable dtype (float32, float64,
 * float16, bfloat16; the 16-bit ones compute in float32 and round every op,
 * half.h) by
 * step.c, which is compiled once per instruction set with
 * -ffp-contract=off, so every variant computes the same bits; dispatch.c
 * chooses one table per process (ADADELTA_KERNEL can pin it) and the
 * adadelta_kernel_* calls below go through it. */
#ifndef ADADELTA_KERNEL_H
#define ADADELTA_KERNEL_H

#include <stdint.h>

enum {
    ADADELTA_CLIP_NONE = 0,   /* g */
    ADADELTA_CLIP_SCALE = 1,  /* g * a            (global_clipnorm) */
    ADADELTA_CLIP_NORM = 2,   /* (g * a) / b      (clipnorm) */
    ADADELTA_CLIP_VALUE = 3,  /* clip(g, -a, a)   (clipvalue) */
    /* T(double(g) * wide): a float32 gradient scaled by a float64 global
     * scale (Keras promotes it when a float64 variable takes part). */
    ADADELTA_CLIP_SCALE_WIDE = 4
};

/* Everything one step needs per element, as constants of the variable's
 * dtype T (the one list of fields for every dtype; the 16-bit dtypes use
 * float fields holding values of their type, or float32 values where Keras
 * computes in float32). */
#define ADADELTA_STEP_PARAMS_FIELDS(T)                                        \
    T rho, one_minus_rho, epsilon, lr;                                        \
    int divide;          /* g = g / divisor (loss scale) */                   \
    T divisor;                                                                \
    int accumulate;      /* g = (g + acc) / steps; acc = 0 */                 \
    T steps;                                                                  \
    int clip;            /* ADADELTA_CLIP_* */                                \
    T clip_a, clip_b;                                                         \
    double clip_wide;    /* ADADELTA_CLIP_SCALE_WIDE */                       \
    int weight_decay;    /* var = var - var * wd * lr */                      \
    T wd;                                                                     \
    int ema;             /* avg = m * avg + (1 - m) * var */                  \
    T ema_m, ema_one_minus_m;                                                 \
    int ema_overwrite;   /* var = avg afterwards */                         \
    /* 16-bit dtypes only: the gradient is float32 until the step casts it  \
     * (LossScaleOptimizer divides by its float32 scale), and the clip is   \
     * computed in float32 (a global norm stacked with wider dtypes). */    \
    int wide_grad, wide_clip;

typedef struct adadelta_step_params {
    ADADELTA_STEP_PARAMS_FIELDS(float)
} adadelta_step_params;

typedef struct adadelta_step_params_f64 {
    ADADELTA_STEP_PARAMS_FIELDS(double)
} adadelta_step_params_f64;

/* The loops of one dtype T with its params P; W is the type the MPI layer
 * reduces its gradients in (T, float for the 16-bit dtypes). */
#define ADADELTA_KERNEL_SET(T, W, P)                                          \
    struct {                                                                  \
        /* The fused step over n elements: gradient preparation, clipping,  \
         * weight decay, Adadelta, EMA, in Keras's order; one pass over      \
         * memory. acc and avg may be NULL when their flags are off. */      \
        void (*step)(const P *p, int64_t n, T *restrict var, const T *restrict grad, \
                     T *restrict acc, T *restrict acc_grad, T *restrict acc_delta,   \
                     T *restrict avg);                                        \
        /* Sum of squares (in double, in a fixed order independent of the   \
         * vector width) of the prepared gradient (divide, accumulate). */   \
        double (*sum_squares)(const P *p, int64_t n, const T *restrict grad,  \
                              const T *restrict acc);                         \
        /* acc = g / divisor + acc (divide only if p->divide). */            \
        void (*accumulate)(const P *p, int64_t n, const T *restrict grad,     \
                           T *restrict acc);                                  \
        /* out = prepared gradient (divide and accumulate as in p), in W:  \
         * a 16-bit one is float32 when p->wide_grad. */                     \
        void (*prepare)(const P *p, int64_t n, const T *restrict grad,        \
                        const T *restrict acc, W *restrict out);              \
        /* out = the gradient update_step uses, from a reduced mean in W:    \
         * rounded to T (unless p->wide_grad), divided, clipped, cast. */    \
        void (*narrow)(const P *p, int64_t n, const W *restrict mean,         \
                       T *restrict out);                                      \
        /* The same in place: g = prepared g. */                             \
        void (*prepare_inplace)(const P *p, int64_t n, T *restrict g,         \
                                const T *restrict acc);                       \
        /* EMA of variables without a step this call. */                     \
        void (*ema)(const P *p, int64_t n, T *restrict var, T *restrict avg); \
        /* 1 if every element is finite. */                                  \
        int (*all_finite)(int64_t n, const T *restrict x);                    \
    }

typedef struct adadelta_kernels {
    const char *name; /* "avx512fp16", "avx512f", "avx2", "default" */
    ADADELTA_KERNEL_SET(float, float, adadelta_step_params) f32;
    ADADELTA_KERNEL_SET(double, double, adadelta_step_params_f64) f64;
    /* float16 and bfloat16, as their bits */
    ADADELTA_KERNEL_SET(uint16_t, float, adadelta_step_params) f16;
    ADADELTA_KERNEL_SET(uint16_t, float, adadelta_step_params) bf16;
} adadelta_kernels;

/* One table per instruction set compiled in (step.c). */
extern const adadelta_kernels adadelta__kernels_default;
#if defined(ADADELTA_HAVE_X86_KERNELS)
extern const adadelta_kernels adadelta__kernels_avx2, adadelta__kernels_avx512f;
#endif
#if defined(ADADELTA_HAVE_FP16_KERNELS)
extern const adadelta_kernels adadelta__kernels_avx512fp16;
#endif

/* The table this process uses (dispatch.c). */
const adadelta_kernels *adadelta__kernels(void);

#define adadelta_kernel_step(...) (adadelta__kernels()->f32.step(__VA_ARGS__))
#define adadelta_kernel_sum_squares(...) (adadelta__kernels()->f32.sum_squares(__VA_ARGS__))
#define adadelta_kernel_accumulate(...) (adadelta__kernels()->f32.accumulate(__VA_ARGS__))
#define adadelta_kernel_prepare(...) (adadelta__kernels()->f32.prepare(__VA_ARGS__))
#define adadelta_kernel_prepare_inplace(...) (adadelta__kernels()->f32.prepare_inplace(__VA_ARGS__))
#define adadelta_kernel_ema(...) (adadelta__kernels()->f32.ema(__VA_ARGS__))
#define adadelta_kernel_all_finite(...) (adadelta__kernels()->f32.all_finite(__VA_ARGS__))

#endif
