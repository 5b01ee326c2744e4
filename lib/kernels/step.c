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

#define ELEM uint16_t
#define REAL float
#define PARAMS adadelta_step_params
#define SQRT sqrtf

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
#define RN bf16_round
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

#define KERNEL_SET(sfx)                                                       \
    {                                                                         \
        KERNEL(step_##sfx), KERNEL(sum_squares_##sfx), KERNEL(accumulate_##sfx), \
            KERNEL(prepare_##sfx), KERNEL(prepare_inplace_##sfx), KERNEL(ema_##sfx), \
            KERNEL(all_finite_##sfx)                                          \
    }

const adadelta_kernels KERNEL(adadelta__kernels) = {
    STR(ADADELTA_KERNEL_ISA),
    KERNEL_SET(f32),
    KERNEL_SET(f64),
    KERNEL_SET(f16),
    KERNEL_SET(bf16),
};
