/* test_schedule.c - the six schedules against their formulas evaluated
 * independently in double precision (values agree to float32 rounding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "adadelta.h"
#include "assert_close.h"

#define TOL 2e-6

static void exponential_decay_matches_formula(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_exponential_decay(&lr, 0.1, 10, 0.5, 0);
    for (int s = 0; s < 40; s += 3)
        assert_close(adadelta_lr_evaluate(&lr, s), 0.1 * pow(0.5, s / 10.0), TOL, 0);
    adadelta_lr_exponential_decay(&lr, 0.1, 10, 0.5, 1);
    assert_close(adadelta_lr_evaluate(&lr, 19), 0.05, TOL, 0);
    assert_close(adadelta_lr_evaluate(&lr, 20), 0.025, TOL, 0);
}

static void inverse_time_decay_matches_formula(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_inverse_time_decay(&lr, 1.0, 2, 0.7, 0);
    for (int s = 0; s < 20; s++)
        assert_close(adadelta_lr_evaluate(&lr, s), 1.0 / (1 + 0.7 * s / 2.0), TOL, 0);
    adadelta_lr_inverse_time_decay(&lr, 1.0, 2, 0.7, 1);
    assert_close(adadelta_lr_evaluate(&lr, 3), 1.0 / 1.7, TOL, 0);
}

static void polynomial_decay_clamps_or_cycles(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_polynomial_decay(&lr, 1.0, 4, 0.1, 2.0, 0);
    assert_close(adadelta_lr_evaluate(&lr, 0), 1.0, TOL, 0);
    assert_close(adadelta_lr_evaluate(&lr, 2), 0.9 * 0.25 + 0.1, TOL, 0);
    assert_close(adadelta_lr_evaluate(&lr, 9), 0.1, TOL, 0);
    adadelta_lr_polynomial_decay(&lr, 1.0, 4, 0.1, 2.0, 1);
    /* step 6: decay_steps becomes 4 * ceil(6/4) = 8, p = 0.75 */
    assert_close(adadelta_lr_evaluate(&lr, 6), 0.9 * 0.0625 + 0.1, TOL, 0);
    /* step 4: ceil(1) = 1, p = 1 -> end */
    assert_close(adadelta_lr_evaluate(&lr, 4), 0.1, TOL, 0);
}

static void piecewise_constant_uses_inclusive_upper_bounds(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    double b[] = {2, 5}, v[] = {1.0, 0.5, 0.1};
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 2, b, v), 0);
    double want[] = {1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1};
    for (int s = 0; s < 8; s++)
        assert_close(adadelta_lr_evaluate(&lr, s), want[s], TOL, 0);
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, -1, b, v), ADADELTA_EINVAL);
}

/* Keras's formula (learning_rate_schedule.py, 3.6.0): the boundaries cast
 * to the step's integer type, then the sum of indicator x value terms in
 * float32 (values[0] term, values[-1] term, then the middle ones). */
static void piecewise_constant_computes_as_keras(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    /* unsorted: the indicators overlap, as in Keras (7 gives 1 + 3) */
    double b[] = {10, 5}, v[] = {1, 2, 3};
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 2, b, v), 0);
    assert_true(adadelta_lr_evaluate(&lr, 3) == 1.0f);
    assert_true(adadelta_lr_evaluate(&lr, 7) == 4.0f);
    assert_true(adadelta_lr_evaluate(&lr, 12) == 3.0f);
    /* a boundary of -0.5 acts as 0 (int cast truncates): step 0 is <= it */
    double b2[] = {-0.5}, v2[] = {1, 2};
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 1, b2, v2), 0);
    assert_true(adadelta_lr_evaluate(&lr, 0) == 1.0f);
    assert_true(adadelta_lr_evaluate(&lr, 1) == 2.0f);
    /* a boundary of 2.9 acts as 2 */
    double b3[] = {2.9}, v3[] = {1, 2};
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 1, b3, v3), 0);
    assert_true(adadelta_lr_evaluate(&lr, 2) == 1.0f);
    assert_true(adadelta_lr_evaluate(&lr, 3) == 2.0f);
    /* a selected -0.0 comes out as 0.0 + 1 x -0.0 = +0.0 */
    double b4[] = {5}, v4[] = {-0.0, 1};
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 1, b4, v4), 0);
    float z = adadelta_lr_evaluate(&lr, 0);
    assert_true(z == 0.0f && !signbit(z));
    /* Keras indexes boundaries[0]: none is refused */
    assert_int_equal(adadelta_lr_piecewise_constant_decay(&lr, 0, b4, v4), ADADELTA_EINVAL);
}

static void cosine_decay_with_and_without_warmup(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_cosine_decay(&lr, 0.5, 10, 0.1, ADADELTA_UNSET, 0);
    for (int s = 0; s <= 14; s++) {
        double f = fmin(s, 10) / 10.0;
        double want = 0.5 * (0.9 * 0.5 * (1 + cos(M_PI * f)) + 0.1);
        assert_close(adadelta_lr_evaluate(&lr, s), want, TOL, 1e-7);
    }
    adadelta_lr_cosine_decay(&lr, 0.1, 6, 0.1, 1.0, 3);
    assert_close(adadelta_lr_evaluate(&lr, 0), 0.1, TOL, 0);
    assert_close(adadelta_lr_evaluate(&lr, 2), 0.1 + 0.9 * 2 / 3.0, TOL, 0);
    assert_close(adadelta_lr_evaluate(&lr, 3), 1.0, TOL, 0);
    double f = 3 / 6.0;
    assert_close(adadelta_lr_evaluate(&lr, 6), 1.0 * (0.9 * 0.5 * (1 + cos(M_PI * f)) + 0.1),
                 TOL, 1e-7);
    assert_close(adadelta_lr_evaluate(&lr, 100), 0.1, TOL, 1e-7);
}

static double restarts_reference(double step, double first, double t_mul, double m_mul,
                                 double alpha)
{
    /* Walk the periods one by one instead of Keras's closed form. */
    double start = 0, period = first, scale = 1;
    while (step >= start + period) {
        start += period;
        period *= t_mul;
        scale *= m_mul;
    }
    double f = (step - start) / period;
    return (1 - alpha) * 0.5 * scale * (1 + cos(M_PI * f)) + alpha;
}

static void cosine_decay_restarts_walks_the_periods(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_cosine_decay_restarts(&lr, 1.0, 3, 2.0, 0.5, 0.05);
    for (int s = 0; s < 30; s++)
        assert_close(adadelta_lr_evaluate(&lr, s), restarts_reference(s, 3, 2, 0.5, 0.05),
                     1e-5, 1e-6);
    adadelta_lr_cosine_decay_restarts(&lr, 2.0, 4, 1.0, 1.0, 0.0);
    for (int s = 0; s < 20; s++)
        assert_close(adadelta_lr_evaluate(&lr, s), 2.0 * restarts_reference(s, 4, 1, 1, 0),
                     1e-5, 1e-6);
}

static float calls;
static float twice_calls(void *user)
{
    (void)user;
    return 2.0f * ++calls;
}

static void callback_is_called_each_time(void **state)
{
    (void)state;
    adadelta_learning_rate lr;
    adadelta_lr_from_callback(&lr, twice_calls, NULL);
    assert_true(adadelta_lr_evaluate(&lr, 0) == 2.0f);
    assert_true(adadelta_lr_evaluate(&lr, 0) == 4.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exponential_decay_matches_formula),
        cmocka_unit_test(inverse_time_decay_matches_formula),
        cmocka_unit_test(polynomial_decay_clamps_or_cycles),
        cmocka_unit_test(piecewise_constant_uses_inclusive_upper_bounds),
        cmocka_unit_test(piecewise_constant_computes_as_keras),
        cmocka_unit_test(cosine_decay_with_and_without_warmup),
        cmocka_unit_test(cosine_decay_restarts_walks_the_periods),
        cmocka_unit_test(callback_is_called_each_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
