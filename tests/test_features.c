/* test_features.c - each Keras argument and its subtleties, with expected
 * values derived by hand or from the formulas in double precision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adadelta.h"
#include "assert_close.h"

#define EPS 1e-7

static adadelta *make(const adadelta_config *cfg)
{
    adadelta *opt;
    assert_int_equal(adadelta_create(cfg, &opt), 0);
    return opt;
}

static adadelta_config lr_one(void)
{
    adadelta_config c;
    adadelta_config_default(&c);
    adadelta_lr_constant(&c.learning_rate, 1.0);
    return c;
}

/* First Adadelta step from a zero state, in double: the change of var. */
static double first_delta(double g, double rho, double lr)
{
    double acc = (1 - rho) * g * g;
    return -lr * sqrt(EPS) * g / sqrt(acc + EPS);
}

static void one_minus_rho_is_a_double_subtraction(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    adadelta *opt = make(&c);
    float w = 0, g = 1;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *grads[1] = {&g};
    adadelta_apply(opt, grads);
    float acc = ((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0];
    /* acc = rho * 0 + (1 - rho) * 1 with 1 - rho = 0.05 rounded once */
    assert_true(acc == (float)(1.0 - 0.95));
    assert_true(acc != 1.0f - 0.95f); /* the float32 subtraction differs */
    adadelta_destroy(opt);
}

static void clipnorm_zero_gradient_stays_zero(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.clipnorm = 1.0;
    adadelta *opt = make(&c);
    float w[2] = {1, 2}, g[2] = {0, 0};
    int64_t n = 2;
    adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, &n);
    const float *grads[1] = {g};
    adadelta_apply(opt, grads);
    assert_true(w[0] == 1 && w[1] == 2); /* no NaN from 0/0 */
    adadelta_destroy(opt);
}

static void clipnorm_scales_each_variable_to_its_norm(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.clipnorm = 1.0;
    adadelta *opt = make(&c);
    float a[2] = {0, 0}, ga[2] = {3, 4}; /* norm 5 -> (0.6, 0.8) */
    float b = 0, gb = 0.5f;              /* norm 0.5 < 1: unchanged */
    int64_t n = 2;
    adadelta_add_variable(opt, "a", ADADELTA_F32, a, 1, &n);
    adadelta_add_variable(opt, "b", ADADELTA_F32, &b, 0, NULL);
    const float *grads[2] = {ga, &gb};
    adadelta_apply(opt, grads);
    assert_close(a[0], first_delta(0.6, 0.95, 1), 1e-5, 0);
    assert_close(a[1], first_delta(0.8, 0.95, 1), 1e-5, 0);
    assert_close(b, first_delta(0.5, 0.95, 1), 1e-5, 0);
    adadelta_destroy(opt);
}

static void global_clipnorm_uses_the_norm_of_all_variables(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.global_clipnorm = 1.0;
    adadelta *opt = make(&c);
    float a = 0, ga = 3, b = 0, gb = 4; /* global norm 5: scale 0.2 */
    adadelta_add_variable(opt, "a", ADADELTA_F32, &a, 0, NULL);
    adadelta_add_variable(opt, "b", ADADELTA_F32, &b, 0, NULL);
    const float *grads[2] = {&ga, &gb};
    adadelta_apply(opt, grads);
    assert_close(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0], 0.05 * 0.36, 1e-5, 0);
    assert_close(((float *)adadelta_slot(opt, 1, ADADELTA_SLOT_ACCUMULATED_GRAD))[0], 0.05 * 0.64, 1e-5, 0);
    adadelta_destroy(opt);
}

static void global_clipnorm_with_inf_makes_every_gradient_nan(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.global_clipnorm = 1.0;
    adadelta *opt = make(&c);
    float a = 1, ga = INFINITY, b = 2, gb = 0.1f, z = 3;
    adadelta_add_variable(opt, "a", ADADELTA_F32, &a, 0, NULL);
    adadelta_add_variable(opt, "b", ADADELTA_F32, &b, 0, NULL);
    adadelta_add_variable(opt, "z", ADADELTA_F32, &z, 0, NULL);
    const float *grads[3] = {&ga, &gb, NULL};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    assert_true(isnan(a) && isnan(b));
    assert_true(z == 3); /* no gradient, no step */
    adadelta_destroy(opt);
}

static void unclipped_global_scale_is_c_times_one_over_c(void **state)
{
    (void)state;
    /* Find a clipnorm whose float32 c * f32(1/c) is not 1: Keras applies
     * that scale even when the norm is below c. */
    double c = 0;
    for (int k = 1; k < 2000 && !c; k++) {
        double t = k / 37.0;
        if ((float)t * (float)(1.0 / t) != 1.0f)
            c = t;
    }
    assert_true(c != 0);
    float s = (float)c * (float)(1.0 / c);
    adadelta_config cfg = lr_one();
    cfg.global_clipnorm = c;
    adadelta *opt = make(&cfg);
    float w = 0, g = 1e-3f;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *grads[1] = {&g};
    adadelta_apply(opt, grads);
    float gs = g * s;
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0] ==
                (float)(1.0 - 0.95) * (gs * gs));
    adadelta_destroy(opt);
}

static void clipvalue_clamps_elementwise(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.clipvalue = 1.0;
    adadelta *opt = make(&c);
    float w[3] = {0, 0, 0}, g[3] = {-3, 0.5f, 2};
    int64_t n = 3;
    adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, &n);
    const float *grads[1] = {g};
    adadelta_apply(opt, grads);
    assert_close(w[0], first_delta(-1, 0.95, 1), 1e-5, 0);
    assert_close(w[1], first_delta(0.5, 0.95, 1), 1e-5, 0);
    assert_close(w[2], first_delta(1, 0.95, 1), 1e-5, 0);
    adadelta_destroy(opt);
}

static void weight_decay_uses_the_current_learning_rate_and_exclusions(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    double b[1] = {0}, v[2] = {0.5, 0.25}; /* lr 0.5 at step 0, 0.25 after */
    adadelta_lr_piecewise_constant_decay(&c.learning_rate, 1, b, v);
    c.weight_decay = 0.1;
    adadelta *opt = make(&c);
    float k = 2, bias = 2, other = 2, idx = 2, g = 0; /* g 0: only decay moves */
    adadelta_add_variable(opt, "dense/kernel", ADADELTA_F32, &k, 0, NULL);
    adadelta_add_variable(opt, "dense/bias", ADADELTA_F32, &bias, 0, NULL);
    adadelta_add_variable(opt, "bias_block/kernel", ADADELTA_F32, &other, 0, NULL);
    adadelta_add_variable(opt, "x", ADADELTA_F32, &idx, 0, NULL);
    const char *names[] = {"bias$", "gamma"};
    int indices[] = {3};
    assert_int_equal(adadelta_exclude_from_weight_decay(opt, indices, 1, names, 2), 0);
    assert_int_equal(adadelta_uses_weight_decay(opt, 0), 1);
    assert_int_equal(adadelta_uses_weight_decay(opt, 1), 0);
    assert_int_equal(adadelta_uses_weight_decay(opt, 2), 1); /* short name is "kernel" */
    assert_int_equal(adadelta_uses_weight_decay(opt, 3), 0);
    const float *grads[4] = {&g, &g, &g, &g};
    adadelta_apply(opt, grads);
    assert_close(k, 2 - 2 * 0.1 * 0.5, 1e-7, 0);
    assert_true(bias == 2 && idx == 2);
    assert_close(other, 1.9, 1e-7, 0);
    adadelta_apply(opt, grads);
    assert_close(k, 1.9 - 1.9 * 0.1 * 0.25, 1e-6, 0);
    const char *bad[] = {"("};
    assert_int_equal(adadelta_exclude_from_weight_decay(opt, NULL, 0, bad, 1), ADADELTA_ESTATE);
    adadelta_destroy(opt);
}

static void ema_starts_at_the_variable_and_covers_variables_without_gradient(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.use_ema = 1;
    c.ema_momentum = 0.9;
    c.ema_overwrite_frequency = 3;
    adadelta *opt = make(&c);
    float w = 1, z = 5, g = 0.5f;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    adadelta_add_variable(opt, "z", ADADELTA_F32, &z, 0, NULL);
    const float *grads[2] = {&g, NULL};
    adadelta_apply(opt, grads); /* iteration 0: momentum 0, avg = var */
    float *avg_w = adadelta_slot(opt, 0, ADADELTA_SLOT_EMA);
    float *avg_z = adadelta_slot(opt, 1, ADADELTA_SLOT_EMA);
    assert_true(*avg_w == w);
    assert_true(*avg_z == 5); /* averaged although it had no gradient */
    float w1 = w;
    adadelta_apply(opt, grads);
    assert_close(*avg_w, 0.9 * w1 + 0.1 * w, 1e-6, 0);
    float before_overwrite = w;
    (void)before_overwrite;
    adadelta_apply(opt, grads); /* iteration 2: (2 + 1) % 3 == 0 -> overwrite */
    assert_true(w == *avg_w);
    w = 7; /* finalize copies the averages back */
    assert_int_equal(adadelta_finalize_variable_values(opt), 0);
    assert_true(w == *avg_w);
    adadelta_destroy(opt);
}

static void accumulation_averages_then_steps_with_the_raw_iteration_schedule(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    double b[1] = {0}, v[2] = {1.0, 0.5}; /* raw iteration 1 -> lr 0.5 */
    adadelta_lr_piecewise_constant_decay(&c.learning_rate, 1, b, v);
    c.gradient_accumulation_steps = 2;
    c.use_ema = 1;
    c.ema_momentum = 0.5;
    adadelta *opt = make(&c);
    float w = 0, g1 = 1, g2 = 3;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *call1[1] = {&g1}, *call2[1] = {&g2};
    adadelta_apply(opt, call1);
    assert_true(w == 0);
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_GRADIENT_ACCUMULATOR))[0] == 1);
    assert_int_equal(adadelta_iterations(opt), 1);
    adadelta_apply(opt, call2); /* (3 + 1) / 2 = 2, lr 0.5 */
    assert_close(w, first_delta(2, 0.95, 0.5), 1e-5, 0);
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_GRADIENT_ACCUMULATOR))[0] == 0);
    /* EMA used the accumulated iteration count: still 0 here, so avg = w */
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_EMA))[0] == w);
    adadelta_destroy(opt);
}

static void loss_scale_factor_divides_the_gradients(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.loss_scale_factor = 4;
    adadelta *opt = make(&c);
    float w = 0, g = 8;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *grads[1] = {&g};
    adadelta_apply(opt, grads);
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0] ==
                (float)(1.0 - 0.95) * 4.0f);
    adadelta_destroy(opt);
}

static void loss_scale_optimizer_skips_nonfinite_and_grows(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.dynamic_loss_scale = 1;
    c.initial_scale = 8;
    c.dynamic_growth_steps = 2;
    adadelta *opt = make(&c);
    assert_true(adadelta_dynamic_scale(opt) == 8);
    float w = 1, g = NAN;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *grads[1] = {&g};
    adadelta_apply(opt, grads);
    assert_true(w == 1);
    assert_int_equal(adadelta_iterations(opt), 0);
    assert_true(adadelta_dynamic_scale(opt) == 4);
    g = 8; /* unscaled: 8 / 4 = 2 */
    adadelta_apply(opt, grads);
    assert_close(w, 1 + first_delta(2, 0.95, 1), 1e-6, 0);
    assert_int_equal(adadelta_step_counter(opt), 1);
    adadelta_apply(opt, grads);
    assert_true(adadelta_dynamic_scale(opt) == 8);
    assert_int_equal(adadelta_step_counter(opt), 0);
    adadelta_destroy(opt);
}

static int lr_calls;
static float counting_lr(void *user)
{
    (void)user;
    lr_calls++;
    return 0.5f;
}

static void callback_learning_rate_is_called_once_per_apply(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    adadelta_lr_from_callback(&c.learning_rate, counting_lr, NULL);
    c.weight_decay = 0.1; /* uses the learning rate too */
    adadelta *opt = make(&c);
    float w = 1, g = 1;
    adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 0, NULL);
    const float *grads[1] = {&g};
    lr_calls = 0;
    for (int i = 0; i < 3; i++)
        adadelta_apply(opt, grads);
    assert_int_equal(lr_calls, 3);
    adadelta_destroy(opt);
}

static void check_finite_refuses_before_any_change(void **state)
{
    (void)state;
    adadelta_config c = lr_one();
    c.check_finite = 1;
    adadelta *opt = make(&c);
    float w[2] = {1, 2}, g[2] = {0.5f, INFINITY};
    int64_t n = 2;
    adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, &n);
    const float *grads[1] = {g};
    assert_int_equal(adadelta_apply(opt, grads), ADADELTA_ENONFINITE);
    assert_true(w[0] == 1 && w[1] == 2);
    assert_int_equal(adadelta_iterations(opt), 0);
    /* not even built: variables can still be added */
    float z = 0;
    assert_int_equal(adadelta_add_variable(opt, "z", ADADELTA_F32, &z, 0, NULL), 1);
    assert_true(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0] == 0);
    adadelta_destroy(opt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_minus_rho_is_a_double_subtraction),
        cmocka_unit_test(clipnorm_zero_gradient_stays_zero),
        cmocka_unit_test(clipnorm_scales_each_variable_to_its_norm),
        cmocka_unit_test(global_clipnorm_uses_the_norm_of_all_variables),
        cmocka_unit_test(global_clipnorm_with_inf_makes_every_gradient_nan),
        cmocka_unit_test(unclipped_global_scale_is_c_times_one_over_c),
        cmocka_unit_test(clipvalue_clamps_elementwise),
        cmocka_unit_test(weight_decay_uses_the_current_learning_rate_and_exclusions),
        cmocka_unit_test(ema_starts_at_the_variable_and_covers_variables_without_gradient),
        cmocka_unit_test(accumulation_averages_then_steps_with_the_raw_iteration_schedule),
        cmocka_unit_test(loss_scale_factor_divides_the_gradients),
        cmocka_unit_test(loss_scale_optimizer_skips_nonfinite_and_grows),
        cmocka_unit_test(callback_learning_rate_is_called_once_per_apply),
        cmocka_unit_test(check_finite_refuses_before_any_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
