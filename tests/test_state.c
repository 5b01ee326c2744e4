#define _GNU_SOURCE /* memmem */
/* test_state.c - checkpoints: exact resume with every feature on, corrupted
 * files refused without touching the optimizer, a writer killed mid-write
 * leaves the previous file loadable, and the numpy reader reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adadelta.h"
#include "harness.h"
#include "peak_memory.h"

enum { NV = 3, CALLS = 11, SPLIT = 4 };
static const int64_t sizes[NV] = {5, 20000, 1};

/* Every feature at once: loss scaling (dynamic), accumulation over 3 calls,
 * global clipnorm, weight decay, EMA with overwrite, a schedule. */
static void full_config(adadelta_config *cfg)
{
    adadelta_config_default(cfg);
    adadelta_lr_cosine_decay(&cfg->learning_rate, 1.0, 8, 0.1, ADADELTA_UNSET, 0);
    cfg->gradient_accumulation_steps = 3;
    cfg->global_clipnorm = 0.5;
    cfg->weight_decay = 0.02;
    cfg->use_ema = 1;
    cfg->ema_momentum = 0.9;
    cfg->ema_overwrite_frequency = 2;
    cfg->dynamic_loss_scale = 1;
    cfg->initial_scale = 64;
    cfg->dynamic_growth_steps = 2;
}

static float *vars[NV];

static adadelta *build(void)
{
    adadelta_config cfg;
    full_config(&cfg);
    adadelta *opt;
    assert_int_equal(adadelta_create(&cfg, &opt), 0);
    for (int v = 0; v < NV; v++) {
        vars[v] = realloc(vars[v], (size_t)sizes[v] * sizeof(float));
        for (int64_t i = 0; i < sizes[v]; i++)
            vars[v][i] = (float)sin(1.0 + (double)i * 0.3 + v);
        char name[16];
        snprintf(name, sizeof name, "layer%d/w", v);
        assert_int_equal(adadelta_add_variable(opt, name, ADADELTA_F32, vars[v], 1, &sizes[v]),
                         v);
    }
    return opt;
}

/* Call k's gradients; call 5 holds an Inf so loss scaling skips it. */
static void apply_call(adadelta *opt, int k)
{
    static float g[NV][20000];
    const float *grads[NV];
    for (int v = 0; v < NV; v++) {
        for (int64_t i = 0; i < sizes[v]; i++)
            g[v][i] = (float)(40.0 * cos((double)i * 0.7 + k + v));
        grads[v] = (v == 2 && k % 4 == 1) ? NULL : g[v];
    }
    if (k == 5)
        g[1][7] = INFINITY;
    assert_int_equal(adadelta_apply(opt, grads), 0);
}

static void same_state(adadelta *a, adadelta *b)
{
    assert_int_equal(adadelta_iterations(a), adadelta_iterations(b));
    assert_true(adadelta_dynamic_scale(a) == adadelta_dynamic_scale(b));
    assert_int_equal(adadelta_step_counter(a), adadelta_step_counter(b));
    for (int v = 0; v < NV; v++) {
        size_t bytes = (size_t)sizes[v] * sizeof(float);
        assert_memory_equal(adadelta_variable_data(a, v), adadelta_variable_data(b, v), bytes);
        for (int k = 0; k < 4; k++)
            assert_memory_equal(adadelta_slot(a, v, k), adadelta_slot(b, v, k), bytes);
    }
}

static void resume_is_byte_exact_with_every_feature(void **state)
{
    (void)state;
    /* the uninterrupted run, kept in its own buffers */
    adadelta *whole = build();
    float *keep[NV];
    memcpy(keep, vars, sizeof keep);
    memset(vars, 0, sizeof vars);
    for (int k = 0; k < CALLS; k++)
        apply_call(whole, k);
    /* 64, x2 after calls 1 and 3, /2 at the Inf of call 5, x2 after 7 and 9 */
    assert_true(adadelta_dynamic_scale(whole) == 512.0f);

    adadelta *first = build();
    for (int k = 0; k < SPLIT; k++) /* stops mid-accumulation (4 % 3 != 0) */
        apply_call(first, k);
    const char *path = th_path("ckpt.safetensors");
    assert_int_equal(adadelta_save(first, path), 0);
    adadelta_destroy(first);

    adadelta *resumed = NULL;
    assert_int_equal(adadelta_create_from_state(path, NULL, &resumed), 0);
    assert_int_equal(adadelta_iterations(resumed), SPLIT);
    for (int k = SPLIT; k < CALLS; k++)
        apply_call(resumed, k);
    same_state(whole, resumed);

    /* adadelta_load into an optimizer built by the user gives the same. */
    adadelta *loaded = build();
    assert_int_equal(adadelta_load(loaded, path), 0);
    for (int k = SPLIT; k < CALLS; k++)
        apply_call(loaded, k);
    same_state(whole, loaded);

    adadelta_destroy(resumed);
    adadelta_destroy(loaded);
    adadelta_destroy(whole);
    for (int v = 0; v < NV; v++)
        free(keep[v]);
}

static void corrupted_byte_anywhere_is_refused_and_changes_nothing(void **state)
{
    (void)state;
    adadelta *opt = build();
    for (int k = 0; k < 3; k++)
        apply_call(opt, k);
    const char *good = th_path("good.safetensors"), *bad = th_path("bad.safetensors");
    assert_int_equal(adadelta_save(opt, good), 0);
    size_t n;
    unsigned char *bytes = th_read_file(good, &n);
    assert_non_null(bytes);

    adadelta *target = build(); /* fresh state, iterations 0 */
    float before = ((float *)adadelta_variable_data(target, 1))[3];
    /* Small variables only, so the sweep stays fast: a file of its own. */
    int refused = 0;
    for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 997)) {
        bytes[i] ^= 0xFF;
        th_write_bytes("bad.safetensors", bytes, n);
        bytes[i] ^= 0xFF;
        int rc = adadelta_load(target, bad);
        if (rc != ADADELTA_EFORMAT)
            fprintf(stderr, "byte %zu flipped:\n", i);
        th_assert_refused(rc, ADADELTA_EFORMAT, NULL);
        refused++;
    }
    assert_true(refused > 4000);
    assert_int_equal(adadelta_iterations(target), 0);
    assert_true(((float *)adadelta_variable_data(target, 1))[3] == before);
    assert_true(((float *)adadelta_slot(target, 1, ADADELTA_SLOT_ACCUMULATED_GRAD))[3] == 0.0f);
    /* truncated anywhere */
    for (size_t len = 0; len < n; len += (len < 2048 ? 1 : 4093)) {
        th_write_bytes("bad.safetensors", bytes, len);
        th_assert_refused(adadelta_load(target, bad), ADADELTA_EFORMAT, NULL);
    }
    assert_int_equal(adadelta_iterations(target), 0);
    /* and the intact file loads */
    assert_int_equal(adadelta_load(target, good), 0);
    assert_int_equal(adadelta_iterations(target), 3);
    free(bytes);
    adadelta_destroy(opt);
    adadelta_destroy(target);
}

static void mismatched_optimizer_is_refused_untouched(void **state)
{
    (void)state;
    adadelta *opt = build();
    apply_call(opt, 0);
    const char *path = th_path("m.safetensors");
    assert_int_equal(adadelta_save(opt, path), 0);
    adadelta_destroy(opt);

    adadelta_config cfg;
    full_config(&cfg);
    adadelta *other;
    assert_int_equal(adadelta_create(&cfg, &other), 0);
    float a[5] = {1, 2, 3, 4, 5};
    int64_t five = 5;
    adadelta_add_variable(other, "not_layer0", ADADELTA_F32, a, 1, &five);
    th_assert_refused(adadelta_load(other, path), ADADELTA_EMISMATCH,
                      "holds 3 variables, the optimizer has 1");
    assert_true(a[0] == 1 && a[4] == 5);
    assert_int_equal(adadelta_iterations(other), 0);
    adadelta_destroy(other);

    /* same variables, a config without EMA: its tensors would not fit */
    adadelta_config_default(&cfg);
    th_assert_refused(adadelta_create_from_state(path, &cfg, &other), ADADELTA_EMISMATCH, NULL);
    assert_null(other);
}

static void killed_writer_leaves_previous_checkpoint(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt;
    assert_int_equal(adadelta_create(&cfg, &opt), 0);
    int64_t n = 1 << 24; /* 64 MB: a save takes a while */
    float *w = calloc((size_t)n, sizeof(float));
    adadelta_add_variable(opt, "big", ADADELTA_F32, w, 1, &n);
    const char *path = th_path("big.safetensors");
    assert_int_equal(adadelta_save(opt, path), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (int64_t i = 0; i < n; i++)
            w[i] = 1.0f;
        for (;;)
            adadelta_save(opt, path);
    }
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    adadelta *back;
    assert_int_equal(adadelta_create_from_state(path, NULL, &back), 0);
    float first = ((float *)adadelta_variable_data(back, 0))[0];
    float last = ((float *)adadelta_variable_data(back, 0))[n - 1];
    assert_true(first == last); /* one whole version, old (0) or new (1) */
    adadelta_destroy(back);
    adadelta_destroy(opt);
    free(w);
}

static float half(void *user)
{
    (void)user;
    return 0.5f;
}

static void callback_learning_rate_state_loads_back(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_from_callback(&cfg.learning_rate, half, NULL);
    adadelta *a, *b;
    assert_int_equal(adadelta_create(&cfg, &a), 0);
    assert_int_equal(adadelta_create(&cfg, &b), 0);
    float wa = 1, wb = 0, g = 1;
    adadelta_add_variable(a, "w", ADADELTA_F32, &wa, 0, NULL);
    adadelta_add_variable(b, "w", ADADELTA_F32, &wb, 0, NULL);
    const float *grads[1] = {&g};
    adadelta_apply(a, grads);
    const char *path = th_path("cb.safetensors");
    assert_int_equal(adadelta_save(a, path), 0); /* its config has learning_rate null */
    assert_int_equal(adadelta_load(b, path), 0);
    assert_true(wb == wa);
    assert_int_equal(adadelta_iterations(b), 1);
    assert_string_equal(adadelta_load_report(b), "");
    /* without the learning rate given again, a fresh optimizer can't be
     * made (the file cannot hold a callback); with it, it resumes */
    adadelta *c = NULL;
    th_assert_refused(adadelta_create_from_state(path, NULL, &c), ADADELTA_EINVAL,
                      "callback learning rate");
    adadelta_config again = cfg;
    assert_int_equal(adadelta_create_from_state(path, &again, &c), 0);
    assert_true(*(float *)adadelta_variable_data(c, 0) == wa);
    assert_int_equal(adadelta_apply(a, grads), 0);
    assert_int_equal(adadelta_apply(c, grads), 0);
    assert_true(*(float *)adadelta_variable_data(c, 0) == wa);
    adadelta_destroy(c);
    /* a load whose saved hyperparameters differ is reported, not silent */
    adadelta_config other = cfg;
    other.rho = 0.9;
    adadelta *d;
    assert_int_equal(adadelta_create(&other, &d), 0);
    float wd = 0;
    adadelta_add_variable(d, "w", ADADELTA_F32, &wd, 0, NULL);
    assert_int_equal(adadelta_load(d, path), 0);
    assert_non_null(strstr(adadelta_load_report(d), "rho 0.9 (saved 0.95)"));
    adadelta_destroy(d);
    adadelta_destroy(a);
    adadelta_destroy(b);
}

/* A refused load changes nothing, not even the build: variables can still
 * be added after it. A named pipe is refused at once, not waited on. */
static void refused_loads_leave_the_optimizer_unbuilt(void **state)
{
    (void)state;
    adadelta *a = build();
    for (int k = 0; k < 3; k++)
        apply_call(a, k);
    const char *ok = th_path("unbuilt_ok.safetensors");
    assert_int_equal(adadelta_save(a, ok), 0);
    adadelta_destroy(a);

    adadelta_config cfg;
    full_config(&cfg);
    adadelta *b;
    assert_int_equal(adadelta_create(&cfg, &b), 0);
    float w0[5] = {0}, w1[7] = {0}, extra[1] = {0};
    const int64_t s0[1] = {5}, s1[1] = {7}, s2[1] = {1};
    assert_int_equal(adadelta_add_variable(b, "layer0/w", ADADELTA_F32, w0, 1, s0), 0);
    assert_int_equal(adadelta_add_variable(b, "layer1/w", ADADELTA_F32, w1, 1, s1), 1);
    assert_int_equal(adadelta_add_variable(b, "layer2/w", ADADELTA_F32, extra, 1, s2), 2);
    th_assert_refused(adadelta_load(b, ok), ADADELTA_EMISMATCH, "layer1/w");
    const char *fifo = th_path("pipe.safetensors");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    th_assert_refused(adadelta_load(b, fifo), ADADELTA_EIO, "not a regular file");
    adadelta *c = NULL;
    th_assert_refused(adadelta_create_from_state(fifo, NULL, &c), ADADELTA_EIO,
                      "not a regular file");
    float more[1] = {0};
    assert_int_equal(adadelta_add_variable(b, "later/w", ADADELTA_F32, more, 1, s2), 3);
    assert_true(w0[0] == 0 && w1[0] == 0);
    adadelta_destroy(b);
}

/* The version-2 checksum covers the header too: a file whose header was
 * edited (two same-shaped slots swapped, rho changed in the stored config)
 * with the data and the old checksum kept is refused; version-1 files
 * (data-only checksum) still load. */
static unsigned char *file_bytes(const char *path, size_t *n)
{
    unsigned char *b = th_read_file(path, n);
    assert_non_null(b);
    return b;
}

static void write_with_header(const char *name, const unsigned char *old, size_t old_n,
                              const char *header)
{
    uint64_t old_h = 0;
    for (int i = 7; i >= 0; i--)
        old_h = old_h << 8 | old[i];
    size_t h = strlen(header), padded = (h + 7) & ~(size_t)7;
    size_t data = old_n - 8 - (size_t)old_h, n = 8 + padded + data;
    unsigned char *b = malloc(n);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', padded - h);
    memcpy(b + 8 + padded, old + 8 + old_h, data);
    th_write_bytes(name, b, n);
    free(b);
}

static void header_edits_are_refused(void **state)
{
    (void)state;
    adadelta *a = build();
    for (int k = 0; k < 2; k++)
        apply_call(a, k);
    const char *path = th_path("v2.safetensors");
    assert_int_equal(adadelta_save(a, path), 0);
    size_t n;
    unsigned char *raw = file_bytes(path, &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | raw[i];
    json_error_t err;
    json_t *hdr = json_loadb((const char *)raw + 8, (size_t)h, 0, &err);
    assert_non_null(hdr);
    /* the two Adadelta slots of layer1/w trade names */
    const char *g = "optimizer/accumulated_grad/layer1/w",
               *d = "optimizer/accumulated_delta_var/layer1/w";
    json_t *tg = json_incref(json_object_get(hdr, g)), *td = json_incref(json_object_get(hdr, d));
    json_object_set_new(hdr, g, td);
    json_object_set_new(hdr, d, tg);
    char *swapped = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    write_with_header("swapped.safetensors", raw, n, swapped);
    free(swapped);
    adadelta *b = build();
    th_assert_refused(adadelta_load(b, th_path("swapped.safetensors")), ADADELTA_EFORMAT,
                      "checksum");
    /* rho 0.95 -> 0.15 inside the stored config, same length */
    unsigned char *at = memmem(raw, (size_t)(8 + h), "rho\\\": 0.95", 11);
    assert_non_null(at);
    at[9] = '1'; /* 0.95 -> 0.15 */
    th_write_bytes("rho.safetensors", raw, n);
    th_assert_refused(adadelta_load(b, th_path("rho.safetensors")), ADADELTA_EFORMAT, "checksum");
    assert_int_equal(adadelta_load(b, path), 0);
    free(raw);
    adadelta_destroy(a);
    adadelta_destroy(b);
    /* a version-1 file (tests/golden: written before version 2) loads */
    const char *src = getenv("ADADELTA_SRCDIR");
    char v1[1024];
    snprintf(v1, sizeof v1, "%s/tests/golden/keras_kitchen_sink.safetensors", src ? src : "..");
    adadelta *c = NULL;
    assert_int_equal(adadelta_create_from_state(v1, NULL, &c), 0);
    assert_true(adadelta_iterations(c) == 12);
    adadelta_destroy(c);
}

/* A saved file gets the permissions any new file gets under the umask
 * (it was always 0644, widening a 0600 policy). */
static void saved_files_follow_the_umask(void **state)
{
    (void)state;
    adadelta *a = build();
    const mode_t masks[2] = {077, 022}, want[2] = {0600, 0644};
    for (int i = 0; i < 2; i++) {
        mode_t old = umask(masks[i]);
        char name[32];
        snprintf(name, sizeof name, "mask%d.safetensors", i);
        int rc = adadelta_save(a, th_path(name));
        umask(old);
        assert_int_equal(rc, 0);
        struct stat st;
        assert_int_equal(stat(th_path(name), &st), 0);
        assert_int_equal(st.st_mode & 0777, want[i]);
    }
    adadelta_destroy(a);
}

static void python_reader_prints_the_state(void **state)
{
    (void)state;
    const char *src = getenv("ADADELTA_SRCDIR");
    char probe[512];
    snprintf(probe, sizeof probe, "for p in python3 /usr/bin/python3; do "
                                  "$p -c 'import numpy' 2>/dev/null && echo $p && exit 0; "
                                  "done; exit 1");
    FILE *pp = popen(probe, "r");
    char py[256] = "";
    if (!pp || !fgets(py, sizeof py, pp)) {
        if (pp)
            pclose(pp);
        skip(); /* no numpy here */
    }
    pclose(pp);
    py[strcspn(py, "\n")] = '\0';
    adadelta *opt = build();
    apply_call(opt, 0);
    const char *path = th_path("py.safetensors");
    char cmd[1024];
    assert_int_equal(adadelta_save(opt, path), 0);
    snprintf(cmd, sizeof cmd, "%s '%s/tools/read_state.py' '%s'", py, src ? src : "..", path);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    char line[4096];
    int saw_iter = 0, saw_slot = 0, saw_config = 0;
    while (fgets(line, sizeof line, out)) {
        saw_iter |= strstr(line, "optimizer/iterations int64 [] min 1 ") != NULL;
        saw_slot |= strstr(line, "optimizer/gradient_accumulator/layer1/w float32 [20000]") != NULL;
        saw_config |= strstr(line, "\"gradient_accumulation_steps\": 3") != NULL;
    }
    assert_int_equal(pclose(out), 0);
    assert_true(saw_iter && saw_slot && saw_config);
    adadelta_destroy(opt);
}

/* A 64 MiB state (2^22 elements, every slot) saves and loads with at most
 * the checkpoint buffer (1 MiB here) and change above the resident size:
 * neither holds the file (a load that read it whole added 64 MiB). */
static void save_and_load_hold_no_copy_of_the_file(void **state)
{
    (void)state;
    if (!reset_peak())
        skip();
    adadelta_config cfg;
    full_config(&cfg);
    adadelta *opt;
    assert_int_equal(adadelta_create(&cfg, &opt), 0);
    int64_t n = (int64_t)1 << 22;
    float *w = malloc((size_t)n * sizeof *w), *g = malloc((size_t)n * sizeof *g);
    assert_true(w && g);
    for (int64_t i = 0; i < n; i++) {
        w[i] = (float)(i % 101) / 101.0f;
        g[i] = (float)(i % 7) / 64.0f;
    }
    assert_int_equal(adadelta_add_variable(opt, "big", ADADELTA_F32, w, 1, &n), 0);
    assert_int_equal(adadelta_set_checkpoint_buffer(opt, 1u << 20), 0);
    const float *gp[1] = {g};
    assert_int_equal(adadelta_apply(opt, gp), 0);
    const char *path = th_path("big.safetensors");
    assert_int_equal(adadelta_save(opt, path), 0); /* warm: every buffer once */
    assert_int_equal(adadelta_load(opt, path), 0);
    long long steady = status_bytes("VmRSS");
    reset_peak();
    assert_int_equal(adadelta_save(opt, path), 0);
    long long save_peak = status_bytes("VmHWM");
    reset_peak();
    assert_int_equal(adadelta_load(opt, path), 0);
    long long load_peak = status_bytes("VmHWM");
    assert_true(save_peak <= steady + (8ll << 20));
    assert_true(load_peak <= steady + (8ll << 20));
    adadelta_destroy(opt);
    free(w);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resume_is_byte_exact_with_every_feature),
        cmocka_unit_test(corrupted_byte_anywhere_is_refused_and_changes_nothing),
        cmocka_unit_test(mismatched_optimizer_is_refused_untouched),
        cmocka_unit_test(killed_writer_leaves_previous_checkpoint),
        cmocka_unit_test(callback_learning_rate_state_loads_back),
        cmocka_unit_test(refused_loads_leave_the_optimizer_unbuilt),
        cmocka_unit_test(header_edits_are_refused),
        cmocka_unit_test(saved_files_follow_the_umask),
        cmocka_unit_test(python_reader_prints_the_state),
        cmocka_unit_test(save_and_load_hold_no_copy_of_the_file),
    };
    int failed = cmocka_run_group_tests(tests, th_group_setup, th_group_teardown);
    for (int v = 0; v < NV; v++)
        free(vars[v]);
    return failed ? 1 : 0;
}
