/* step.c - the hot loops. Compiled with -O3 -fno-math-errno (so sqrtf and
 * sqrt vectorise) and -ffp-contract=off (no fused multiply-add: the same
 * bits on every instruction set, and Keras's own unfused order). Never
 * -ffast-math.
 *
 * The loops are written once, in step_body.h, and instantiated here per
 * variable dtype (the dtype list below is the one place naming them). Each
 * loop is one always-inline body specialised for constant flags, so the
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

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Lanes of the sum of squares: a fixed number, so the order of additions is
 * the same whatever vector width the clone uses. */
#define SUM_LANES 16

/* The dtypes: element type, params, square root, name suffix. */
#define REAL float
#define PARAMS adadelta_step_params
#define SQRT sqrtf
#define FN(name) KERNEL(CAT(name, _f32))
#include "step_body.h"
#undef REAL
#undef PARAMS
#undef SQRT
#undef FN

#define REAL double
#define PARAMS adadelta_step_params_f64
#define SQRT sqrt
#define FN(name) KERNEL(CAT(name, _f64))
#include "step_body.h"
#undef REAL
#undef PARAMS
#undef SQRT
#undef FN

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
};
