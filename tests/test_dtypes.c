/* test_dtypes.c - float64 variables beside float32 ones: the step in the
 * variable's dtype against a hand-written double recurrence (Keras's op
 * order), slots and EMA in that dtype, a float32 variable unchanged by a
 * float64 neighbour, saves and loads of F64 tensors, refusals of other
 * dtypes, and identical bytes for every thread count. (The float64 runs of
 * every feature against numpy are data/f64, in test_conformance.) */
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
#include "harness.h"
#include "safetensors.h"

#define N 1000

static adadelta *make(const adadelta_config *cfg)
{
    adadelta *opt;
    assert_int_equal(adadelta_create(cfg, &opt), 0);
    return opt;
}

static double grad_at(int k, int i) { return sin(0.37 * i + 1.3 * k) * (1 + 0.01 * i); }

/* Keras's update_step in float64, literally: lr = f64(f32(lr)), rho and
 * 1 - rho and epsilon as doubles. */
static void reference_step(double *w, double *ag, double *ad, const double *g, int n,
                           double lr32, double rho, double eps)
{
    for (int i = 0; i < n; i++) {
        ag[i] = rho * ag[i] + (1 - rho) * (g[i] * g[i]);
        double delta = -((sqrt(ad[i] + eps) * g[i]) / sqrt(ag[i] + eps));
        ad[i] = rho * ad[i] + (1 - rho) * (delta * delta);
        w[i] = w[i] + lr32 * delta;
    }
}

static void float64_steps_follow_keras_in_double(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 0.1); /* not a float32: f64(f32(0.1)) */
    cfg.rho = 0.9;
    adadelta *opt = make(&cfg);
    static double w[N], g[N], rw[N], rag[N], rad[N];
    for (int i = 0; i < N; i++)
        w[i] = rw[i] = cos(0.1 * i);
    int64_t shape[1] = {N};
    assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F64, w, 1, shape), 0);
    assert_int_equal(adadelta_variable_dtype(opt, 0), ADADELTA_F64);
    const double *grads[1] = {g};
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < N; i++)
            g[i] = grad_at(k, i);
        assert_int_equal(adadelta_apply(opt, grads), 0);
        reference_step(rw, rag, rad, g, N, (double)0.1f, 0.9, 1e-7);
    }
    assert_memory_equal(w, rw, sizeof w);
    double *ag = adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD);
    double *ad = adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR);
    assert_memory_equal(ag, rag, sizeof rag);
    assert_memory_equal(ad, rad, sizeof rad);
    /* f64(f32(lr)) is not the double 0.1: the step would differ */
    assert_true((double)0.1f != 0.1);
    adadelta_destroy(opt);
}

/* A float32 variable's bytes do not depend on a float64 one beside it (no
 * cross-variable feature: each computes in its own dtype). */
static void float32_variable_is_unchanged_by_a_float64_neighbour(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.weight_decay = 0.01;
    cfg.clipnorm = 0.5;
    cfg.use_ema = 1;
    cfg.gradient_accumulation_steps = 2;
    adadelta *alone = make(&cfg), *mixed = make(&cfg);
    static float a[N], b[N], ga[N];
    static double d[N], gd[N];
    for (int i = 0; i < N; i++) {
        a[i] = b[i] = (float)cos(0.2 * i);
        d[i] = cos(0.3 * i);
    }
    int64_t shape[1] = {N};
    assert_int_equal(adadelta_add_variable(alone, "a", ADADELTA_F32, a, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(mixed, "d", ADADELTA_F64, d, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(mixed, "a", ADADELTA_F32, b, 1, shape), 1);
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < N; i++) {
            ga[i] = (float)grad_at(k, i);
            gd[i] = grad_at(k + 7, i);
        }
        const void *g1[1] = {ga}, *g2[2] = {gd, ga};
        assert_int_equal(adadelta_apply(alone, g1), 0);
        assert_int_equal(adadelta_apply(mixed, g2), 0);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(adadelta_slot(alone, 0, ADADELTA_SLOT_EMA),
                        adadelta_slot(mixed, 1, ADADELTA_SLOT_EMA), sizeof a);
    adadelta_destroy(alone);
    adadelta_destroy(mixed);
}

/* use_ema: the average of a float64 variable is float64 (1 - momentum in
 * float64), and finalize copies it whole. */
static void float64_ema_and_finalize(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.use_ema = 1;
    cfg.ema_momentum = 0.9;
    adadelta *opt = make(&cfg);
    static double w[N], g[N], avg[N];
    for (int i = 0; i < N; i++)
        w[i] = cos(0.1 * i);
    int64_t shape[1] = {N};
    assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F64, w, 1, shape), 0);
    const double *grads[1] = {g};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++)
            g[i] = grad_at(k, i);
        assert_int_equal(adadelta_apply(opt, grads), 0);
        double m = (k != 0) * 0.9;
        for (int i = 0; i < N; i++)
            avg[i] = m * avg[i] + (1 - m) * w[i];
    }
    assert_memory_equal(adadelta_slot(opt, 0, ADADELTA_SLOT_EMA), avg, sizeof avg);
    assert_int_equal(adadelta_finalize_variable_values(opt), 0);
    assert_memory_equal(w, avg, sizeof avg);
    adadelta_destroy(opt);
}

static void nonfinite_float64_gradient_is_refused_with_check_finite(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    cfg.check_finite = 1;
    adadelta *opt = make(&cfg);
    double w[3] = {1, 2, 3}, g[3] = {0.5, NAN, 1};
    int64_t shape[1] = {3};
    assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F64, w, 1, shape), 0);
    const double *grads[1] = {g};
    assert_int_equal(adadelta_apply(opt, grads), ADADELTA_ENONFINITE);
    assert_true(w[0] == 1 && w[1] == 2 && w[2] == 3);
    assert_int_equal(adadelta_iterations(opt), 0);
    adadelta_destroy(opt);
}

static void other_dtypes_are_refused(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt = make(&cfg);
    uint16_t h[2] = {0};
    int64_t shape[1] = {2};
    th_assert_refused(adadelta_add_variable(opt, "h", (adadelta_dtype)4, h, 1, shape),
                      ADADELTA_EINVAL, "ADADELTA_F16 or ADADELTA_BF16");
    th_assert_refused(adadelta_add_variable(opt, "b", (adadelta_dtype)-1, h, 1, shape),
                      ADADELTA_EINVAL, "dtype -1");
    assert_int_equal(adadelta_num_variables(opt), 0);
    adadelta_destroy(opt);
}

/* tools/read_state.py (numpy) reads the F64 tensors of a state; skipped
 * without a Python that has numpy. */
static void read_state_shows_float64(const char *path)
{
    char *text = th_read_state_output(path);
    if (!text)
        return;
    assert_true(strncmp(text, "format", 6) == 0 && strstr(text, "\nw float64 [1000]") &&
                strstr(text, "\noptimizer/ema/w float64 [1000]") &&
                strstr(text, "\noptimizer/ema/f float32 [7]"));
    free(text);
}

/* The saved state holds F64 tensors for the float64 variable and its slots;
 * a load and a create_from_state resume bit for bit. */
static void float64_state_saves_and_resumes_exactly(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.use_ema = 1;
    cfg.gradient_accumulation_steps = 2;
    static double w[N], w2[N], g[N];
    static float f[7], f2[7], gf[7];
    for (int i = 0; i < N; i++)
        w[i] = cos(0.1 * i);
    for (int i = 0; i < 7; i++)
        f[i] = (float)i;
    int64_t shape[1] = {N}, fshape[1] = {7};
    adadelta *a = make(&cfg);
    assert_int_equal(adadelta_add_variable(a, "w", ADADELTA_F64, w, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(a, "f", ADADELTA_F32, f, 1, fshape), 1);
    const void *grads[2] = {g, gf};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < N; i++)
            g[i] = grad_at(k, i);
        for (int i = 0; i < 7; i++)
            gf[i] = (float)grad_at(k, i);
        assert_int_equal(adadelta_apply(a, grads), 0);
    }
    const char *path = th_path("f64.safetensors");
    assert_int_equal(adadelta_save(a, path), 0);

    adadelta_st_file *file;
    assert_int_equal(adadelta_st_read(path, &file), 0);
    const char *f64_names[] = {"w", "optimizer/accumulated_grad/w",
                               "optimizer/accumulated_delta_var/w", "optimizer/ema/w",
                               "optimizer/gradient_accumulator/w"};
    for (int i = 0; i < 5; i++) {
        const adadelta_st_tensor *t = adadelta_st_find(file, f64_names[i]);
        assert_non_null(t);
        assert_int_equal(t->dtype, ADADELTA_ST_F64);
        assert_int_equal(t->nbytes, sizeof w);
    }
    assert_int_equal(adadelta_st_find(file, "optimizer/ema/f")->dtype, ADADELTA_ST_F32);
    adadelta_st_free(file);

    /* load into an optimizer of the same variables */
    adadelta *b = make(&cfg);
    memcpy(w2, w, sizeof w);
    assert_int_equal(adadelta_add_variable(b, "w", ADADELTA_F64, w2, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(b, "f", ADADELTA_F32, f2, 1, fshape), 1);
    memset(w2, 0, sizeof w2);
    assert_int_equal(adadelta_load(b, path), 0);
    assert_memory_equal(w2, w, sizeof w);
    /* a float32 optimizer does not load it */
    adadelta *c = make(&cfg);
    static float wf[N];
    assert_int_equal(adadelta_add_variable(c, "w", ADADELTA_F32, wf, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(c, "f", ADADELTA_F32, f2, 1, fshape), 1);
    th_assert_refused(adadelta_load(c, path), ADADELTA_EMISMATCH, "dtype");
    adadelta_destroy(c);
    /* and create_from_state makes a float64 variable */
    adadelta *d;
    assert_int_equal(adadelta_create_from_state(path, NULL, &d), 0);
    assert_int_equal(adadelta_variable_dtype(d, 0), ADADELTA_F64);
    assert_int_equal(adadelta_variable_dtype(d, 1), ADADELTA_F32);
    for (int k = 3; k < 6; k++) {
        for (int i = 0; i < N; i++)
            g[i] = grad_at(k, i);
        for (int i = 0; i < 7; i++)
            gf[i] = (float)grad_at(k, i);
        assert_int_equal(adadelta_apply(a, grads), 0);
        assert_int_equal(adadelta_apply(b, grads), 0);
        assert_int_equal(adadelta_apply(d, grads), 0);
    }
    assert_memory_equal(w2, w, sizeof w);
    assert_memory_equal(adadelta_variable_data(d, 0), w, sizeof w);
    assert_memory_equal(adadelta_variable_data(d, 1), f, sizeof f);
    assert_memory_equal(adadelta_slot(d, 0, ADADELTA_SLOT_EMA),
                        adadelta_slot(a, 0, ADADELTA_SLOT_EMA), sizeof w);
    read_state_shows_float64(path);
    adadelta_destroy(a);
    adadelta_destroy(b);
    adadelta_destroy(d);
}

/* Several shards of a float64 variable beside float32 ones, every feature
 * with a norm: the same bytes for 1, 2, 3 and 5 threads. */
static void float64_bytes_do_not_depend_on_threads(void **state)
{
    (void)state;
    enum { M = 40000 };
    static double ref[M], w[M], g[M];
    static float ref32[M], w32[M], g32[M];
    const int threads[] = {1, 2, 3, 5};
    for (int mode = 0; mode < 2; mode++)
        for (int t = 0; t < 4; t++) {
            adadelta_config cfg;
            adadelta_config_default(&cfg);
            adadelta_lr_constant(&cfg.learning_rate, 1.0);
            if (mode)
                cfg.clipnorm = 3.0;
            else
                cfg.global_clipnorm = 3.0;
            cfg.use_ema = 1;
            adadelta *opt = make(&cfg);
            assert_int_equal(adadelta_set_threads(opt, threads[t]), 0);
            for (int i = 0; i < M; i++) {
                w[i] = cos(0.001 * i);
                w32[i] = (float)sin(0.001 * i);
            }
            int64_t shape[1] = {M};
            assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F64, w, 1, shape), 0);
            assert_int_equal(adadelta_add_variable(opt, "v", ADADELTA_F32, w32, 1, shape), 1);
            const void *grads[2] = {g, g32};
            for (int k = 0; k < 3; k++) {
                for (int i = 0; i < M; i++) {
                    g[i] = grad_at(k, i);
                    g32[i] = (float)grad_at(k + 1, i);
                }
                assert_int_equal(adadelta_apply(opt, grads), 0);
            }
            if (t == 0) {
                memcpy(ref, w, sizeof w);
                memcpy(ref32, w32, sizeof w32);
            } else {
                assert_memory_equal(w, ref, sizeof w);
                assert_memory_equal(w32, ref32, sizeof w32);
            }
            adadelta_destroy(opt);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float64_steps_follow_keras_in_double),
        cmocka_unit_test(float32_variable_is_unchanged_by_a_float64_neighbour),
        cmocka_unit_test(float64_ema_and_finalize),
        cmocka_unit_test(nonfinite_float64_gradient_is_refused_with_check_finite),
        cmocka_unit_test(other_dtypes_are_refused),
        cmocka_unit_test(float64_state_saves_and_resumes_exactly),
        cmocka_unit_test(float64_bytes_do_not_depend_on_threads),
    };
    return cmocka_run_group_tests(tests, th_group_setup, th_group_teardown) ? 1 : 0;
}
