/* test_half.c - float16 and bfloat16 variables: the step against a
 * reference written here (each op in double, then rounded to the format by
 * rint at the format's quantum: a different method from the library's bit
 * tricks), NaN and overflow as Keras has them, a float32 neighbour
 * unchanged, saves and loads of F16/BF16 tensors, tools/read_state.py.
 * (Every feature against numpy's float16 and torch's bfloat16 is data/f16
 * and data/bf16, in test_conformance.) */
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

/* A 16-bit format: significand bits (with the leading one), the smallest
 * normal exponent, the largest finite value. */
typedef struct format {
    adadelta_dtype dtype;
    int p, emin;
    double max;
    int exp_bits;
} format;

static const format F16 = {ADADELTA_F16, 11, -14, 65504.0, 5};
static const format BF16 = {ADADELTA_BF16, 8, -126, 0x1.fep127, 8};

/* x rounded to the format: to nearest, ties to even (rint), with the
 * subnormal quantum below 2^emin; overflow to infinity. */
static double rnd(const format *f, double x)
{
    if (isnan(x) || isinf(x) || x == 0)
        return x;
    int e = ilogb(x);
    if (e < f->emin)
        e = f->emin;
    double q = ldexp(1.0, e - (f->p - 1));
    double r = rint(x / q) * q;
    return fabs(r) > f->max ? copysign(INFINITY, r) : r;
}

/* The format's bits from its definition. */
static uint16_t bits_of(const format *f, double x)
{
    int mant = f->p - 1, bias = (1 << (f->exp_bits - 1)) - 1;
    uint16_t s = signbit(x) ? 0x8000 : 0, inf = (uint16_t)(((1 << f->exp_bits) - 1) << mant);
    double a = fabs(x);
    if (isnan(x))
        return (uint16_t)(s | inf | (1 << (mant - 1)));
    if (isinf(x))
        return (uint16_t)(s | inf);
    if (a < ldexp(1.0, f->emin)) /* subnormal or zero */
        return (uint16_t)(s | (uint16_t)(a / ldexp(1.0, f->emin - mant)));
    int e = ilogb(a);
    double frac = a / ldexp(1.0, e) - 1.0;
    return (uint16_t)(s | ((e + bias) << mant) | (uint16_t)(frac * (1 << mant)));
}

static double value_of(const format *f, uint16_t h)
{
    int mant = f->p - 1, bias = (1 << (f->exp_bits - 1)) - 1;
    int e = (h >> mant) & ((1 << f->exp_bits) - 1), m = h & ((1 << mant) - 1);
    double v = e == 0 ? ldexp(m, f->emin - mant)
               : e == (1 << f->exp_bits) - 1 ? (m ? NAN : INFINITY)
                                             : ldexp((1 << mant) + m, e - bias - mant);
    return h & 0x8000 ? -v : v;
}

static adadelta *make(const adadelta_config *cfg)
{
    adadelta *opt;
    assert_int_equal(adadelta_create(cfg, &opt), 0);
    return opt;
}

static double grad_at(int k, int i) { return sin(0.37 * i + 1.3 * k) * (1 + 0.01 * i); }

/* Keras's update_step, weight decay and EMA, each op in double rounded to
 * the format: lr = T(f32(lr)), the Python floats T(x) from the double. */
typedef struct reference {
    double w[N], ag[N], ad[N], avg[N];
} reference;

static void reference_step(const format *f, reference *r, const double *g, double lr32,
                           double rho, double eps, double wd, double ema_m)
{
    double lr = rnd(f, lr32), rh = rnd(f, rho), omr = rnd(f, 1 - rho), ep = rnd(f, eps);
    double wdt = rnd(f, wd), m = rnd(f, ema_m), om = rnd(f, 1 - m);
    for (int i = 0; i < N; i++) {
        double v = r->w[i];
        v = rnd(f, v - rnd(f, rnd(f, v * wdt) * lr));
        double ag = rnd(f, rnd(f, rh * r->ag[i]) + rnd(f, omr * rnd(f, g[i] * g[i])));
        double num = rnd(f, rnd(f, sqrt(rnd(f, r->ad[i] + ep))) * g[i]);
        double delta = -rnd(f, num / rnd(f, sqrt(rnd(f, ag + ep))));
        r->ad[i] = rnd(f, rnd(f, rh * r->ad[i]) + rnd(f, omr * rnd(f, delta * delta)));
        r->ag[i] = ag;
        v = rnd(f, v + rnd(f, lr * delta));
        r->w[i] = v;
        r->avg[i] = rnd(f, rnd(f, m * r->avg[i]) + rnd(f, om * v));
    }
}

static void steps_round_every_op(const format *f)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 0.3); /* T(f32(0.3)) */
    cfg.rho = 0.9;
    cfg.weight_decay = 0.01;
    cfg.use_ema = 1;
    cfg.ema_momentum = 0.9;
    adadelta *opt = make(&cfg);
    static uint16_t w[N], g[N];
    static float neighbour[3] = {1, 2, 3}, ng[3] = {0.5f, 0.5f, 0.5f};
    static reference r;
    static double gd[N];
    for (int i = 0; i < N; i++) {
        r.w[i] = rnd(f, cos(0.1 * i) * 4.0);
        w[i] = bits_of(f, r.w[i]);
        r.ag[i] = r.ad[i] = 0;
        r.avg[i] = r.w[i];
    }
    int64_t shape[1] = {N}, nshape[1] = {3};
    assert_int_equal(adadelta_add_variable(opt, "w", f->dtype, w, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(opt, "n", ADADELTA_F32, neighbour, 1, nshape), 1);
    assert_int_equal(adadelta_variable_dtype(opt, 0), f->dtype);
    const void *grads[2] = {g, ng};
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < N; i++) {
            gd[i] = rnd(f, grad_at(k, i) * (k == 2 ? 1e-3 : 1.0)); /* subnormal squares */
            g[i] = bits_of(f, gd[i]);
        }
        assert_int_equal(adadelta_apply(opt, grads), 0);
        /* EMA momentum is 0 at the first step (iterations == 0) */
        reference_step(f, &r, gd, (double)0.3f, 0.9, 1e-7, 0.01, k == 0 ? 0.0 : 0.9);
    }
    const uint16_t *ag = adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD);
    const uint16_t *ad = adadelta_slot(opt, 0, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR);
    const uint16_t *avg = adadelta_slot(opt, 0, ADADELTA_SLOT_EMA);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += w[i] != bits_of(f, r.w[i]) || ag[i] != bits_of(f, r.ag[i]) ||
               ad[i] != bits_of(f, r.ad[i]) || avg[i] != bits_of(f, r.avg[i]);
    assert_int_equal(bad, 0);
    /* the values moved (a test that could fail) and the neighbour is float32 */
    assert_true(value_of(f, w[1]) != rnd(f, cos(0.1) * 4.0));
    assert_true(neighbour[0] != 1.0f && neighbour[0] > 0.0f);
    adadelta_destroy(opt);
}

static void float16_steps_round_every_op(void **state)
{
    (void)state;
    steps_round_every_op(&F16);
}

static void bfloat16_steps_round_every_op(void **state)
{
    (void)state;
    steps_round_every_op(&BF16);
}

/* A NaN gradient (check_finite off) makes NaN in the format; a float16
 * gradient whose square overflows under clipnorm is clipped to 0, leaving
 * its variable as it was (Keras: the sum of squares is Inf). */
static void nan_and_overflow_as_keras(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.clipnorm = 1.0;
    adadelta *opt = make(&cfg);
    uint16_t a[2] = {bits_of(&F16, 0.5), bits_of(&F16, -0.25)};
    uint16_t b[2] = {bits_of(&BF16, 0.5), bits_of(&BF16, -0.25)};
    uint16_t ga[2] = {bits_of(&F16, 300.0), bits_of(&F16, 1.0)}; /* 300^2 > 65504 */
    uint16_t gb[2] = {bits_of(&BF16, NAN), bits_of(&BF16, 1.0)};
    int64_t shape[1] = {2};
    assert_int_equal(adadelta_add_variable(opt, "a", ADADELTA_F16, a, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(opt, "b", ADADELTA_BF16, b, 1, shape), 1);
    const void *grads[2] = {ga, gb};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    assert_int_equal(a[0], bits_of(&F16, 0.5));
    assert_int_equal(a[1], bits_of(&F16, -0.25));
    assert_true(isnan(value_of(&BF16, b[0])) && isnan(value_of(&BF16, b[1])));
    adadelta_destroy(opt);
}

/* tools/read_state.py names the 16-bit dtypes; skipped without numpy. */
static void read_state_names_half_dtypes(const char *path)
{
    char *text = th_read_state_output(path);
    if (!text)
        return;
    assert_true(strstr(text, "\nh float16 [1000]") &&
                strstr(text, "\noptimizer/ema/b bfloat16 [1000]"));
    free(text);
}

/* F16 and BF16 tensors in the saved state; load and create_from_state
 * resume bit for bit. */
static void half_state_saves_and_resumes_exactly(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.use_ema = 1;
    cfg.gradient_accumulation_steps = 2;
    static uint16_t h[N], b[N], h2[N], b2[N], gh[N], gb[N];
    for (int i = 0; i < N; i++) {
        h[i] = bits_of(&F16, rnd(&F16, cos(0.1 * i)));
        b[i] = bits_of(&BF16, rnd(&BF16, sin(0.1 * i)));
    }
    int64_t shape[1] = {N};
    adadelta *a = make(&cfg);
    assert_int_equal(adadelta_add_variable(a, "h", ADADELTA_F16, h, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(a, "b", ADADELTA_BF16, b, 1, shape), 1);
    const void *grads[2] = {gh, gb};
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < N; i++) {
            gh[i] = bits_of(&F16, rnd(&F16, grad_at(k, i)));
            gb[i] = bits_of(&BF16, rnd(&BF16, grad_at(k + 1, i)));
        }
        assert_int_equal(adadelta_apply(a, grads), 0);
        if (k != 2)
            continue;
        const char *path = th_path("half.safetensors");
        assert_int_equal(adadelta_save(a, path), 0);
        adadelta_st_file *file;
        assert_int_equal(adadelta_st_read(path, &file), 0);
        assert_int_equal(adadelta_st_find(file, "h")->dtype, ADADELTA_ST_F16);
        assert_int_equal(adadelta_st_find(file, "optimizer/gradient_accumulator/h")->dtype,
                         ADADELTA_ST_F16);
        assert_int_equal(adadelta_st_find(file, "optimizer/ema/b")->dtype, ADADELTA_ST_BF16);
        assert_int_equal(adadelta_st_find(file, "b")->nbytes, sizeof b);
        adadelta_st_free(file);
        read_state_names_half_dtypes(path);
    }
    /* resume from the state saved after call 3: calls 4..6 again */
    adadelta *c = make(&cfg);
    assert_int_equal(adadelta_add_variable(c, "h", ADADELTA_F16, h2, 1, shape), 0);
    assert_int_equal(adadelta_add_variable(c, "b", ADADELTA_BF16, b2, 1, shape), 1);
    assert_int_equal(adadelta_load(c, th_path("half.safetensors")), 0);
    adadelta *d;
    assert_int_equal(adadelta_create_from_state(th_path("half.safetensors"), NULL, &d), 0);
    assert_int_equal(adadelta_variable_dtype(d, 0), ADADELTA_F16);
    assert_int_equal(adadelta_variable_dtype(d, 1), ADADELTA_BF16);
    for (int k = 3; k < 6; k++) {
        for (int i = 0; i < N; i++) {
            gh[i] = bits_of(&F16, rnd(&F16, grad_at(k, i)));
            gb[i] = bits_of(&BF16, rnd(&BF16, grad_at(k + 1, i)));
        }
        assert_int_equal(adadelta_apply(c, grads), 0);
        assert_int_equal(adadelta_apply(d, grads), 0);
    }
    assert_memory_equal(h2, h, sizeof h);
    assert_memory_equal(b2, b, sizeof b);
    assert_memory_equal(adadelta_variable_data(d, 0), h, sizeof h);
    assert_memory_equal(adadelta_slot(d, 1, ADADELTA_SLOT_EMA),
                        adadelta_slot(a, 1, ADADELTA_SLOT_EMA), sizeof b);
    adadelta_destroy(a);
    adadelta_destroy(c);
    adadelta_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(float16_steps_round_every_op),
        cmocka_unit_test(bfloat16_steps_round_every_op),
        cmocka_unit_test(nan_and_overflow_as_keras),
        cmocka_unit_test(half_state_saves_and_resumes_exactly),
    };
    return cmocka_run_group_tests(tests, th_group_setup, th_group_teardown) ? 1 : 0;
}
