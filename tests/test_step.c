/* test_step.c - the Adadelta step against hand derivations, None
 * gradients, scalars, and identical bytes for every thread count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adadelta.h"
#include "assert_close.h"

static adadelta *make(const adadelta_config *cfg)
{
    adadelta *opt;
    assert_int_equal(adadelta_create(cfg, &opt), 0);
    return opt;
}

/* One step by hand, rho 0.95, eps 1e-7, lr 1, var 1, g 0.5:
 *   acc_g = 0.05 * 0.25 = 0.0125
 *   delta = -sqrt(0 + 1e-7) * 0.5 / sqrt(0.0125 + 1e-7) = -1.41420793e-3
 *   acc_d = 0.05 * delta^2 = 1.0000e-7 (approximately)
 *   var   = 1 + delta = 0.998585792 */
static void first_step_matches_hand_derivation(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    adadelta *opt = make(&cfg);
    float w = 1.0f, g = 0.5f;
    int64_t shape[1] = {1};
    assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F32, &w, 1, shape), 0);
    const float *grads[1] = {&g};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    double acc_g = 0.0125;
    double delta = -sqrt(1e-7) * 0.5 / sqrt(acc_g + 1e-7);
    assert_close(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[0], acc_g, 1e-6, 0);
    assert_close(((float *)adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR))[0],
                 0.05 * delta * delta, 1e-5, 0);
    assert_close(w, 1 + delta, 1e-7, 0);
    assert_close(w, 0.998585792, 1e-7, 0);
    assert_int_equal(adadelta_iterations(opt), 1);
    adadelta_destroy(opt);
}

/* Three steps of the recurrence in double against the float32 library, on
 * a vector with the paper's settings (rho 0.9, eps 1e-6, lr 1). */
static void three_steps_follow_the_recurrence(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.rho = 0.9;
    cfg.epsilon = 1e-6;
    adadelta *opt = make(&cfg);
    enum { N = 5 };
    float w[N] = {1, -2, 0.5f, 0, 3};
    double x[N], eg[N] = {0}, ed[N] = {0};
    for (int i = 0; i < N; i++)
        x[i] = w[i];
    int64_t shape[1] = {N};
    adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, shape);
    for (int step = 0; step < 3; step++) {
        float g[N];
        for (int i = 0; i < N; i++)
            g[i] = (float)(0.1 * (i + 1) * (step + 1) - 0.3);
        const float *grads[1] = {g};
        assert_int_equal(adadelta_apply(opt, grads), 0);
        for (int i = 0; i < N; i++) {
            eg[i] = 0.9 * eg[i] + 0.1 * g[i] * g[i];
            double d = -sqrt(ed[i] + 1e-6) / sqrt(eg[i] + 1e-6) * g[i];
            ed[i] = 0.9 * ed[i] + 0.1 * d * d;
            x[i] += d;
        }
    }
    for (int i = 0; i < N; i++)
        assert_close(w[i], x[i], 1e-5, 1e-7);
    adadelta_destroy(opt);
}

static void none_gradient_leaves_the_variable_and_its_slots(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt = make(&cfg);
    float a[3] = {1, 2, 3}, b[2] = {4, 5}, ga[3] = {1, 1, 1};
    int64_t sa[1] = {3}, sb[1] = {2};
    adadelta_add_variable(opt, "a", ADADELTA_F32, a, 1, sa);
    adadelta_add_variable(opt, "b", ADADELTA_F32, b, 1, sb);
    const float *grads[2] = {ga, NULL};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    assert_true(b[0] == 4 && b[1] == 5);
    assert_true(((float *)adadelta_slot(opt, 1, ADADELTA_SLOT_ACCUMULATED_GRAD))[0] == 0);
    assert_true(a[0] != 1);
    assert_int_equal(adadelta_iterations(opt), 1);
    adadelta_destroy(opt);
}

static void all_none_is_keras_error_and_changes_nothing(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt = make(&cfg);
    float a[3] = {1, 2, 3};
    int64_t sa[1] = {3};
    adadelta_add_variable(opt, "a", ADADELTA_F32, a, 1, sa);
    const float *grads[1] = {NULL};
    assert_int_equal(adadelta_apply(opt, grads), ADADELTA_ENOGRAD);
    assert_non_null(strstr(adadelta_last_error(), "No gradients provided") ?
                        strstr(adadelta_last_error(), "No gradients provided") :
                        strstr(adadelta_last_error(), "no gradients provided"));
    assert_int_equal(adadelta_iterations(opt), 0);
    assert_true(a[0] == 1 && a[2] == 3);
    adadelta_destroy(opt);
}

static void scalar_variable_steps(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    adadelta *opt = make(&cfg);
    float s = 2.0f, g = -0.5f;
    assert_int_equal(adadelta_add_variable(opt, "scale", ADADELTA_F32, &s, 0, NULL), 0);
    assert_int_equal(adadelta_variable_size(opt, 0), 1);
    const float *grads[1] = {&g};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    /* Same numbers as the hand derivation with the sign of g flipped. */
    assert_close(s, 2.0 + sqrt(1e-7) * 0.5 / sqrt(0.0125 + 1e-7), 1e-7, 0);
    adadelta_destroy(opt);
}

static void variables_after_first_apply_are_refused(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt = make(&cfg);
    float a = 1, g = 1;
    adadelta_add_variable(opt, "a", ADADELTA_F32, &a, 0, NULL);
    assert_int_equal(adadelta_add_variable(opt, "a", ADADELTA_F32, &a, 0, NULL),
                     ADADELTA_EINVAL); /* duplicate name */
    int64_t bad[1] = {-1};
    assert_int_equal(adadelta_add_variable(opt, "b", ADADELTA_F32, &a, 1, bad), ADADELTA_EINVAL);
    assert_non_null(strstr(adadelta_last_error(), "shape[0] = -1"));
    assert_int_equal(adadelta_add_variable(opt, "b", (adadelta_dtype)4, &a, 0, NULL),
                     ADADELTA_EINVAL);
    assert_non_null(strstr(adadelta_last_error(), "dtype 4 is not supported"));
    /* names that would collide with the saved state's own, or not be JSON */
    assert_int_equal(adadelta_add_variable(opt, "optimizer/accumulated_grad/a", ADADELTA_F32, &a,
                                           0, NULL),
                     ADADELTA_EINVAL);
    assert_int_equal(adadelta_add_variable(opt, "__metadata__", ADADELTA_F32, &a, 0, NULL),
                     ADADELTA_EINVAL);
    assert_int_equal(adadelta_add_variable(opt, "bad\xff", ADADELTA_F32, &a, 0, NULL),
                     ADADELTA_EINVAL);
    float e = 2;
    assert_int_equal(adadelta_add_variable(opt, "caf\xc3\xa9/w", ADADELTA_F32, &e, 0, NULL), 1);
    const float *grads[2] = {&g, NULL};
    adadelta_apply(opt, grads);
    assert_int_equal(adadelta_add_variable(opt, "c", ADADELTA_F32, &a, 0, NULL), ADADELTA_ESTATE);
    assert_int_equal(adadelta_num_variables(opt), 2);
    adadelta_destroy(opt);
}

/* Many variables of awkward sizes (several shards, tiny ones, a scalar)
 * with every reduction on: the bytes must not depend on the thread count. */
enum { NV = 9 };
static const int64_t sizes[NV] = {1, 3, 16384, 16385, 40000, 7, 100000, 0, 33};

static void run(int threads, float **vars_out)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_exponential_decay(&cfg.learning_rate, 1.0, 3, 0.8, 0);
    cfg.global_clipnorm = 2.0;
    cfg.weight_decay = 0.01;
    cfg.use_ema = 1;
    cfg.ema_momentum = 0.9;
    cfg.ema_overwrite_frequency = 3;
    cfg.gradient_accumulation_steps = 2;
    adadelta *opt = make(&cfg);
    assert_int_equal(adadelta_set_threads(opt, threads), 0);
    assert_int_equal(adadelta_threads(opt), threads);
    float *grads[NV];
    for (int v = 0; v < NV; v++) {
        vars_out[v] = malloc((size_t)(sizes[v] + 1) * sizeof(float));
        grads[v] = malloc((size_t)(sizes[v] + 1) * sizeof(float));
        for (int64_t i = 0; i < sizes[v]; i++)
            vars_out[v][i] = (float)sin(0.37 * (double)i + v);
        char name[16];
        snprintf(name, sizeof name, "v%d", v);
        assert_true(adadelta_add_variable(opt, name, ADADELTA_F32, vars_out[v], 1,
                                          &sizes[v]) == v);
    }
    for (int step = 0; step < 6; step++) {
        const float *g[NV];
        for (int v = 0; v < NV; v++) {
            for (int64_t i = 0; i < sizes[v]; i++)
                grads[v][i] = (float)cos(0.11 * (double)i * (step + 1) + v);
            g[v] = (v == 5 && step % 2) ? NULL : grads[v];
        }
        assert_int_equal(adadelta_apply(opt, g), 0);
    }
    for (int v = 0; v < NV; v++)
        free(grads[v]);
    adadelta_destroy(opt);
}

static void thread_counts_give_identical_bytes(void **state)
{
    (void)state;
    float *ref[NV];
    run(1, ref);
    const int counts[] = {2, 3, 4, 7};
    for (int c = 0; c < 4; c++) {
        float *got[NV];
        run(counts[c], got);
        for (int v = 0; v < NV; v++) {
            assert_memory_equal(ref[v], got[v], (size_t)sizes[v] * sizeof(float));
            free(got[v]);
        }
    }
    for (int v = 0; v < NV; v++)
        free(ref[v]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_step_matches_hand_derivation),
        cmocka_unit_test(three_steps_follow_the_recurrence),
        cmocka_unit_test(none_gradient_leaves_the_variable_and_its_slots),
        cmocka_unit_test(all_none_is_keras_error_and_changes_nothing),
        cmocka_unit_test(scalar_variable_steps),
        cmocka_unit_test(variables_after_first_apply_are_refused),
        cmocka_unit_test(thread_counts_give_identical_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
