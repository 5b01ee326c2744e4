/* kernel.h - the per-element loops of the Adadelta step. They live in
 * step.c, compiled for several instruction sets (chosen at run time) with
 * -ffp-contract=off, so every variant computes the same bits. */
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

/* The fused step over n elements: gradient preparation, clipping, weight
 * decay, Adadelta, EMA, in Keras's order; one pass over memory. acc and avg
 * may be NULL when their flags are off. */
void adadelta_kernel_step(const adadelta_step_params *p, int64_t n,
                          float *restrict var, const float *restrict grad,
                          float *restrict acc, float *restrict acc_grad,
                          float *restrict acc_delta, float *restrict avg);

/* Sum of squares (in double, in a fixed order independent of the vector
 * width) of the prepared gradient (divide and accumulate as in p). */
double adadelta_kernel_sum_squares(const adadelta_step_params *p, int64_t n,
                                   const float *restrict grad,
                                   const float *restrict acc);

/* acc = g / divisor + acc (divide only if p->divide). */
void adadelta_kernel_accumulate(const adadelta_step_params *p, int64_t n,
                                const float *restrict grad, float *restrict acc);

/* out = prepared gradient (divide and accumulate as in p; acc not reset). */
void adadelta_kernel_prepare(const adadelta_step_params *p, int64_t n,
                             const float *restrict grad,
                             const float *restrict acc, float *restrict out);

/* EMA of variables without a step this call. */
void adadelta_kernel_ema(const adadelta_step_params *p, int64_t n,
                         float *restrict var, float *restrict avg);

/* 1 if every element is finite. */
int adadelta_kernel_all_finite(int64_t n, const float *restrict x);

#endif
