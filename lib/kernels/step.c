/* step.c - the hot loops. Compiled with -O3 -fno-math-errno (so sqrtf and
 * sqrt vectorise) and -ffp-contract=off (no fused multiply-add: the same
 * bits on every instruction set, and Keras's own unfused order). Never
 * -ffast-math.
 *
 * The loops are written once, in step_body.h, and instantiated here per
 * variable dtype (the dtype list below is the one place naming them; the
 * 16-bit ones compute in float32 and round every op, half.h). Each
 * loop is one always-inline body specialised for constant flags, so the
 * compiler emits a branch-free vector loop per feature combination. The file
 * is compiled once per instruction set (-mavx512f, -mavx2, baseline) with
 * ADADELTA_KERNEL_ISA naming the table it defines (dispatch.c picks one). */
#include "kernel.h"
#include "half.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifndef ADADELTA_KERNEL_ISA
#define ADADELTA_KERNEL_ISA default
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)
#define KERNEL(name) CAT(CAT(name, _), ADADELTA_KERNEL_ISA)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Lanes of the sum of squares: a fixed number, so the order of additions is
 * the same whatever vector width the clone uses. */
#define SUM_LANES 16

/* The dtypes: stored element, computed type, conversions, rounding, square
 * root, name suffix. */
#define IDENTITY(x) (x)
#define ELEM float
#define REAL float
#define PARAMS adadelta_step_params
#define LD IDENTITY
#define ST IDENTITY
#define RN IDENTITY
#define RN_WIDE(d) ((float)(d))
#define SQRT sqrtf
#define FN(name) KERNEL(CAT(name, _f32))
#define WORD float
#include "step_body.h"
#undef ELEM
#undef REAL
#undef PARAMS
#undef RN_WIDE
#undef SQRT
#undef FN

#define ELEM double
#define REAL double
#define PARAMS adadelta_step_params_f64
#define RN_WIDE(d) (d)
#define SQRT sqrt
#define FN(name) KERNEL(CAT(name, _f64))
#undef WORD
#define WORD double
#include "step_body.h"
#undef WORD
#undef ELEM
#undef REAL
#undef PARAMS
#undef LD
#undef ST
#undef RN
#undef RN_WIDE
#undef SQRT
#undef FN

#define ELEM uint16_t
#define REAL float
#define PARAMS adadelta_step_params
#define SQRT sqrtf
#define WORD float

#define LD f16_widen
#define ST f16_narrow
#define RN f16_round
#define RN_WIDE f16_round_double
#define FN(name) KERNEL(CAT(name, _f16))
#include "step_body.h"
#undef LD
#undef ST
#undef RN
#undef RN_WIDE
#undef FN

#define LD bf16_widen
#define ST bf16_narrow
#define RN bf16_round_in_loop
#define RN_WIDE bf16_round_double
#define FN(name) KERNEL(CAT(name, _bf16))
#include "step_body.h"
#undef LD
#undef ST
#undef RN
#undef RN_WIDE
#undef FN
#undef ELEM
#undef REAL
#undef PARAMS
#undef SQRT

#if defined(__AVX512FP16__)
/* With AVX512-FP16 a float16 step computes in float16 registers: each
 * hardware op is the correctly rounded one, the same bits as the float32
 * op rounded once (half.h). Only the float16-throughout step and EMA are
 * native; a step with float32 parts (wide_grad, wide_clip, a float64
 * scale) and the other loops use the float32 instantiation above. */
static inline __attribute__((always_inline)) _Float16 fp16_load(uint16_t b)
{
    _Float16 h;
    memcpy(&h, &b, 2);
    return h;
}

static inline __attribute__((always_inline)) uint16_t fp16_store(_Float16 h)
{
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#define ELEM uint16_t
#define REAL _Float16
#define PARAMS adadelta_step_params
#define LD fp16_load
#define ST fp16_store
#define RN IDENTITY
#define RN_WIDE(d) ((_Float16)(d)) /* not taken: such steps are not native */
#define SQRT __builtin_sqrtf16
#define FN(name) KERNEL(CAT(name, _f16native))
#include "step_body.h"
#undef ELEM
#undef REAL
#undef PARAMS
#undef LD
#undef ST
#undef RN
#undef RN_WIDE
#undef SQRT
#undef FN
#undef WORD
#pragma GCC diagnostic pop

static void KERNEL(step_f16hw)(const adadelta_step_params *p, int64_t n, uint16_t *restrict var,
                               const uint16_t *restrict grad, uint16_t *restrict acc,
                               uint16_t *restrict ag, uint16_t *restrict ad,
                               uint16_t *restrict avg)
{
    if (p->wide_grad || p->wide_clip || (p->clip & 7) == ADADELTA_CLIP_SCALE_WIDE)
        KERNEL(step_f16)(p, n, var, grad, acc, ag, ad, avg);
    else
        KERNEL(step_f16native)(p, n, var, grad, acc, ag, ad, avg);
}

#define KERNEL_SET_F16                                                        \
    {                                                                         \
        KERNEL(step_f16hw), KERNEL(sum_squares_f16), KERNEL(accumulate_f16),  \
            KERNEL(prepare_f16), KERNEL(narrow_f16), KERNEL(prepare_inplace_f16), \
            KERNEL(ema_f16native), KERNEL(all_finite_f16)                     \
    }
#else
#undef WORD
#define KERNEL_SET_F16 KERNEL_SET(f16)
#endif

#define KERNEL_SET(sfx)                                                       \
    {                                                                         \
        KERNEL(step_##sfx), KERNEL(sum_squares_##sfx), KERNEL(accumulate_##sfx), \
            KERNEL(prepare_##sfx), KERNEL(narrow_##sfx), KERNEL(prepare_inplace_##sfx), \
            KERNEL(ema_##sfx), KERNEL(all_finite_##sfx)                       \
    }

const adadelta_kernels KERNEL(adadelta__kernels) = {
    STR(ADADELTA_KERNEL_ISA),
    KERNEL_SET(f32),
    KERNEL_SET(f64),
    KERNEL_SET_F16,
    KERNEL_SET(bf16),
};
