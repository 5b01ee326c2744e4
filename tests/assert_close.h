/* assert_close.h - float comparisons for cmocka 1.1.5 (which has no
 * assert_double_equal): |got - want| <= rtol * |want| + atol, NaN == NaN. */
#ifndef ASSERT_CLOSE_H
#define ASSERT_CLOSE_H

#include <math.h>
#include <stdio.h>

static inline int close_enough(double got, double want, double rtol, double atol)
{
    if (isnan(got) || isnan(want))
        return isnan(got) && isnan(want);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= rtol * fabs(want) + atol;
}

#define assert_close(got, want, rtol, atol)                                         \
    do {                                                                             \
        double g_ = (got), w_ = (want);                                              \
        if (!close_enough(g_, w_, (rtol), (atol))) {                                 \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g\n", __FILE__, __LINE__, \
                    #got, g_, w_);                                                   \
            fail();                                                                  \
        }                                                                            \
    } while (0)

#endif
