/* test_conformance.c - adadelta-replay over every case in data/keras,
 * data/torch, data/f64 (float64 and mixed cases from numpy, made by
 * data/make_f64_vectors.py, compared bit for bit) and data/f16, data/bf16
 * (numpy's float16 and torch's bfloat16, data/make_half_vectors.py, bit for
 * bit), compared with the
 * expected states within each case's tolerance, once per kernel the machine
 * runs (ADADELTA_KERNEL), with the output files byte-identical across the
 * kernels; and byte-identical for 1, 2, 3, 4, 7 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adadelta.h"
#include "harness.h"
#include "safetensors.h"

static const char *data_dir(void)
{
    const char *d = getenv("ADADELTA_TEST_DATA");
    return d ? d : "data";
}

static int setup(void **state)
{
    (void)state;
    return th_replay_check() == 0 && th_tmpdir_create(NULL) == 0 ? 0 : -1;
}

/* Runs the replay driver on one case; returns its exit status, printing
 * its stderr when it fails. */
static int run_case(const char *dir, int threads, const char *out)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_error_t err;
    json_t *c = json_load_file(path, 0, &err);
    assert_non_null(c);
    char params[1100], grads[1100], config[1100], nthreads[16], exclude[512] = "";
    snprintf(params, sizeof params, "%s/params.safetensors", dir);
    snprintf(grads, sizeof grads, "%s/grads.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    const char *args[16] = {"--params", params, "--grads", grads, "--config", config,
                            "--out",    out,    "--threads", nthreads};
    int n = 10;
    if (json_is_true(json_object_get(c, "finalize")))
        args[n++] = "--finalize";
    json_t *ex = json_object_get(c, "exclude_from_weight_decay");
    if (json_is_array(ex) && json_array_size(ex)) {
        for (size_t i = 0; i < json_array_size(ex); i++) {
            if (i)
                strcat(exclude, ",");
            strncat(exclude, json_string_value(json_array_get(ex, i)), 64);
        }
        args[n++] = "--exclude-from-weight-decay";
        args[n++] = exclude;
    }
    args[n] = NULL;
    char stderr_text[4096];
    int st = th_replay(args, stderr_text, sizeof stderr_text);
    if (st != 0)
        fprintf(stderr, "  %s: exit %d: %s", dir, st, stderr_text);
    json_decref(c);
    return st;
}

/* The 16-bit formats decoded from their definitions (not the library's
 * code): sign, exponent, fraction. */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

static double bf16_value(uint16_t h)
{
    int e = (h >> 7) & 255, m = h & 0x7f;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return h & 0x8000 ? -v : v;
}

static double get(const adadelta_st_tensor *t, int64_t i)
{
    if (t->dtype == ADADELTA_ST_F16 || t->dtype == ADADELTA_ST_BF16) {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        return t->dtype == ADADELTA_ST_F16 ? f16_value(h) : bf16_value(h);
    }
    if (t->dtype == ADADELTA_ST_F32) {
        float x;
        memcpy(&x, t->data + 4 * i, 4);
        return x;
    }
    if (t->dtype == ADADELTA_ST_F64) {
        double x;
        memcpy(&x, t->data + 8 * i, 8);
        return x;
    }
    int64_t x;
    memcpy(&x, t->data + 8 * i, 8);
    return (double)x;
}

/* Every expected tensor must be in the output and within tolerance
 * (the rule of ../shared/conformance/README.md). Returns failures. */
static int compare(const char *expected_path, const char *got_path, double rtol, double atol)
{
    adadelta_st_file *exp, *got;
    assert_int_equal(adadelta_st_read(expected_path, &exp), 0);
    assert_int_equal(adadelta_st_read(got_path, &got), 0);
    int failures = 0;
    for (int i = 0; i < exp->n; i++) {
        const adadelta_st_tensor *e = &exp->t[i], *g = adadelta_st_find(got, e->name);
        if (!g || g->numel != e->numel || g->dtype != e->dtype) {
            fprintf(stderr, "  %s: missing or wrong size or dtype\n", e->name);
            failures++;
            continue;
        }
        int64_t bad = 0;
        for (int64_t k = 0; k < e->numel; k++) {
            double x = get(g, k), y = get(e, k);
            /* rtol = atol = 0: the same number (the f64 suite) */
            int ok = e->dtype == ADADELTA_ST_I64 ? x == y
                     : isnan(y)                 ? isnan(x)
                     : rtol == 0 && atol == 0   ? x == y && signbit(x) == signbit(y)
                                                : fabs(x - y) <= rtol * (fabs(y) + atol / rtol);
            bad += !ok;
        }
        if (bad) {
            fprintf(stderr, "  %s: %lld of %lld elements outside tolerance\n", e->name,
                    (long long)bad, (long long)e->numel);
            failures++;
        }
    }
    adadelta_st_free(exp);
    adadelta_st_free(got);
    return failures;
}

/* The kernels of adadelta.h; which of them this machine runs. */
static const char *const kernels[] = {"default", "avx2", "avx512f", "avx512fp16"};
#define N_KERNELS 4

/* 1 if the replay driver runs kernel k when asked (its --version says). */
static int kernel_runs(const char *k)
{
    char cmd[1200], line[256] = "", want[64];
    snprintf(cmd, sizeof cmd, "ADADELTA_KERNEL=%s '%s' --version", k, th_replay_path());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    assert_int_equal(pclose(p), 0);
    snprintf(want, sizeof want, "(kernel %s)", k);
    return strstr(line, want) != NULL;
}

static void check_suite_with(const char *suite, const char *kernel, int *n_cases);

/* Every case of a suite with every kernel; outputs equal across kernels. */
static void check_suite(const char *suite, int *n_cases)
{
    int ran = 0;
    for (int k = 0; k < N_KERNELS; k++) {
        if (!kernel_runs(kernels[k])) {
            fprintf(stderr, "%s: kernel %s: not supported here\n", suite, kernels[k]);
            continue;
        }
        setenv("ADADELTA_KERNEL", kernels[k], 1);
        int n = 0;
        check_suite_with(suite, kernels[k], &n);
        unsetenv("ADADELTA_KERNEL");
        assert_true(ran == 0 || n == *n_cases);
        *n_cases = n;
        ran++;
    }
    assert_true(ran >= 1); /* default always runs */
    fprintf(stderr, "%s: %d case(s) with %d kernel(s), outputs byte-identical\n", suite,
            *n_cases, ran);
}

/* Output file of a case with a kernel; the first kernel's is the reference. */
static void output_path(char *buf, size_t n, const char *kernel, const char *name)
{
    snprintf(buf, n, "%s/%s-%s.safetensors", th_tmpdir(), kernel, name);
}

static void same_as_default_kernel(const char *kernel, const char *name)
{
    if (!strcmp(kernel, "default"))
        return;
    char ref_path[1400], got_path[1400];
    output_path(ref_path, sizeof ref_path, "default", name);
    output_path(got_path, sizeof got_path, kernel, name);
    size_t ref_len, len;
    unsigned char *ref = th_read_file(ref_path, &ref_len), *got = th_read_file(got_path, &len);
    assert_non_null(ref);
    assert_non_null(got);
    if (len != ref_len || memcmp(ref, got, len) != 0)
        fail_msg("%s: kernel %s writes other bytes than kernel default", name, kernel);
    free(ref);
    free(got);
}

static void check_suite_with(const char *suite, const char *kernel, int *n_cases)
{
    char dirpath[1024];
    snprintf(dirpath, sizeof dirpath, "%s/%s", data_dir(), suite);
    DIR *d = opendir(dirpath);
    assert_non_null(d);
    struct dirent *e;
    int failures = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char dir[1400], out[1400], casefile[1500];
        snprintf(dir, sizeof dir, "%s/%s", dirpath, e->d_name);
        output_path(out, sizeof out, kernel, e->d_name);
        snprintf(casefile, sizeof casefile, "%s/case.json", dir);
        json_error_t err;
        json_t *c = json_load_file(casefile, 0, &err);
        assert_non_null(c);
        json_t *tol = json_object_get(c, "tolerance");
        double rtol = json_number_value(json_object_get(tol, "rtol"));
        double atol = json_number_value(json_object_get(tol, "atol"));
        json_decref(c);
        int st = run_case(dir, 2, out);
        char expected[1500];
        snprintf(expected, sizeof expected, "%s/expected.safetensors", dir);
        int f = st == 0 ? compare(expected, out, rtol, atol) : 1;
        fprintf(stderr, "%s/%s (kernel %s): %s\n", suite, e->d_name, kernel, f ? "FAIL" : "ok");
        failures += f != 0;
        if (!f)
            same_as_default_kernel(kernel, e->d_name);
        (*n_cases)++;
    }
    closedir(d);
    assert_int_equal(failures, 0);
}

static void keras_cases_match_expected_states(void **state)
{
    (void)state;
    int n = 0;
    check_suite("keras", &n);
    assert_true(n >= 20);
}

static void torch_cases_match_expected_states(void **state)
{
    (void)state;
    int n = 0;
    check_suite("torch", &n);
    assert_true(n >= 5);
}

static void f64_cases_match_numpy_bit_for_bit(void **state)
{
    (void)state;
    int n = 0;
    check_suite("f64", &n);
    assert_true(n >= 19);
}

static void f16_cases_match_numpy_bit_for_bit(void **state)
{
    (void)state;
    int n = 0;
    check_suite("f16", &n);
    assert_true(n >= 22);
}

static void bf16_cases_match_torch_bit_for_bit(void **state)
{
    (void)state;
    int n = 0;
    check_suite("bf16", &n);
    assert_true(n >= 24);
}

static void output_bytes_do_not_depend_on_threads(void **state)
{
    (void)state;
    const char *cases[] = {"keras/kitchen_sink", "keras/loss_scale_optimizer", "keras/clipnorm",
                           "f64/kitchen_sink", "f64/global_clipnorm_mixed", "f64/clipnorm",
                           "f16/kitchen_sink", "f16/loss_scale_optimizer_clip_accum",
                           "bf16/kitchen_sink", "bf16/global_clipnorm"};
    for (int c = 0; c < (int)(sizeof cases / sizeof *cases); c++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", data_dir(), cases[c]);
        const char *ref_path = th_path("t1.safetensors");
        assert_int_equal(run_case(dir, 1, ref_path), 0);
        size_t ref_len;
        unsigned char *ref = th_read_file(ref_path, &ref_len);
        assert_non_null(ref);
        const int threads[] = {2, 3, 4, 7};
        for (int t = 0; t < 4; t++) {
            char name[32];
            snprintf(name, sizeof name, "t%d.safetensors", threads[t]);
            const char *out = th_path(name);
            assert_int_equal(run_case(dir, threads[t], out), 0);
            size_t len;
            unsigned char *got = th_read_file(out, &len);
            assert_non_null(got);
            assert_int_equal(len, ref_len);
            assert_memory_equal(got, ref, len);
            free(got);
        }
        free(ref);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keras_cases_match_expected_states),
        cmocka_unit_test(torch_cases_match_expected_states),
        cmocka_unit_test(f64_cases_match_numpy_bit_for_bit),
        cmocka_unit_test(f16_cases_match_numpy_bit_for_bit),
        cmocka_unit_test(bf16_cases_match_torch_bit_for_bit),
        cmocka_unit_test(output_bytes_do_not_depend_on_threads),
    };
    return cmocka_run_group_tests(tests, setup, th_group_teardown) ? 1 : 0;
}
