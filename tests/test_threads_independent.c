/* test_threads_independent.c - adadelta.h's promise: distinct optimizers
 * may be used from different threads at the same time. Two optimizers
 * (different configs, variables, thread counts) are stepped concurrently
 * from two pthreads and must end with the same bytes (variables, every
 * slot, iterations, saved state file) as when run one after the other; and
 * adadelta_last_error() is per thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adadelta.h"
#include "harness.h"

#define N_CALLS 40
#define MAX_VARS 3

typedef struct {
    int which;      /* 0 or 1: the model and config */
    int omp_threads;
    pthread_barrier_t *barrier; /* NULL when run alone */
    /* results */
    adadelta *opt;
    float *vars[MAX_VARS];
    int64_t sizes[MAX_VARS];
    int n_vars;
    int status;
    char error_seen[256];
    char saved[256];
} job;

static float lr_callback(void *user)
{
    int *calls = user;
    return 1.0f / (float)(1 + (*calls)++ % 7);
}

static void fill(float *x, int64_t n, uint32_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 23);
    }
}

static void *run_job(void *arg)
{
    job *j = arg;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    int cb_calls = 0;
    static const int64_t shapes[2][MAX_VARS][2] = {{{257, 33}, {33, 0}, {1000, 0}},
                                                    {{64, 64}, {5, 7}, {0, 0}}};
    static const int ndims[2][MAX_VARS] = {{2, 1, 1}, {2, 2, 0}};
    if (j->which == 0) {
        adadelta_lr_exponential_decay(&cfg.learning_rate, 1.0, 5, 0.9, 0);
        cfg.global_clipnorm = 3.0;
        cfg.use_ema = 1;
        cfg.ema_overwrite_frequency = 7;
        cfg.weight_decay = 0.01;
    } else {
        adadelta_lr_from_callback(&cfg.learning_rate, lr_callback, &cb_calls);
        cfg.rho = 0.8;
        cfg.epsilon = 1e-5;
        cfg.clipvalue = 0.5;
        cfg.gradient_accumulation_steps = 3;
        cfg.dynamic_loss_scale = 1;
        cfg.initial_scale = 8;
        cfg.dynamic_growth_steps = 4;
    }
    j->status = adadelta_create(&cfg, &j->opt);
    if (j->status)
        return NULL;
    adadelta_set_threads(j->opt, j->omp_threads);
    j->n_vars = MAX_VARS;
    float *grads[MAX_VARS];
    for (int v = 0; v < MAX_VARS; v++) {
        int64_t n = 1;
        for (int d = 0; d < ndims[j->which][v]; d++)
            n *= shapes[j->which][v][d];
        j->sizes[v] = n;
        j->vars[v] = malloc((size_t)n * sizeof(float));
        grads[v] = malloc((size_t)n * sizeof(float) * N_CALLS);
        fill(j->vars[v], n, 17u * (unsigned)v + 1000u * (unsigned)j->which);
        fill(grads[v], n * N_CALLS, 31u * (unsigned)v + 7u + 999u * (unsigned)j->which);
        char name[32];
        snprintf(name, sizeof name, "m%d/v%d", j->which, v);
        int rc = adadelta_add_variable(j->opt, name, ADADELTA_F32, j->vars[v],
                                       ndims[j->which][v], shapes[j->which][v]);
        if (rc < 0)
            j->status = rc;
    }
    for (int k = 0; k < N_CALLS && !j->status; k++) {
        const float *g[MAX_VARS];
        for (int v = 0; v < MAX_VARS; v++)
            g[v] = (k + v) % 5 == 4 ? NULL : grads[v] + (size_t)k * (size_t)j->sizes[v];
        if (j->which == 1 && k % 9 == 8)
            grads[0][(size_t)k * (size_t)j->sizes[0]] = 1.0f / 0.0f; /* scale halves */
        if (j->which == 1 && k % 9 == 8)
            g[0] = grads[0] + (size_t)k * (size_t)j->sizes[0];
        int rc = adadelta_apply(j->opt, g);
        if (rc) {
            j->status = rc;
            break;
        }
        if (j->barrier && k % 10 == 0)
            pthread_barrier_wait(j->barrier); /* keep both threads in step */
        /* An error in this thread must be the message this thread sees. */
        if (k == N_CALLS / 2) {
            if (adadelta_slot(j->opt, j->which ? 1001 : 1000, ADADELTA_SLOT_EMA) != NULL)
                j->status = -100;
            if (j->barrier)
                pthread_barrier_wait(j->barrier); /* both have failed now */
            snprintf(j->error_seen, sizeof j->error_seen, "%s", adadelta_last_error());
        }
    }
    if (j->barrier && j->status)
        fprintf(stderr, "thread %d failed: %d %s\n", j->which, j->status,
                adadelta_last_error());
    if (!j->status) {
        adadelta_finalize_variable_values(j->opt);
        snprintf(j->saved, sizeof j->saved, "%s/%s-%d.safetensors", th_tmpdir(),
                 j->barrier ? "together" : "alone", j->which);
        j->status = adadelta_save(j->opt, j->saved);
    }
    for (int v = 0; v < MAX_VARS; v++)
        free(grads[v]);
    return NULL;
}

static void free_job(job *j)
{
    adadelta_destroy(j->opt);
    for (int v = 0; v < j->n_vars; v++)
        free(j->vars[v]);
}

static void same_job(const job *a, const job *b)
{
    assert_int_equal(a->status, 0);
    assert_int_equal(b->status, 0);
    assert_int_equal(adadelta_iterations(a->opt), adadelta_iterations(b->opt));
    assert_true(adadelta_dynamic_scale(a->opt) == adadelta_dynamic_scale(b->opt) ||
                !adadelta_get_config(a->opt)->dynamic_loss_scale);
    for (int v = 0; v < a->n_vars; v++) {
        assert_memory_equal(a->vars[v], b->vars[v], (size_t)a->sizes[v] * sizeof(float));
        for (int s = 0; s < 4; s++) {
            const float *x = adadelta_slot(a->opt, v, (adadelta_slot_kind)s);
            const float *y = adadelta_slot(b->opt, v, (adadelta_slot_kind)s);
            assert_true((x == NULL) == (y == NULL));
            if (x && a->sizes[v])
                assert_memory_equal(x, y, (size_t)a->sizes[v] * sizeof(float));
        }
    }
    size_t na, nb;
    unsigned char *fa = th_read_file(a->saved, &na), *fb = th_read_file(b->saved, &nb);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa);
    free(fb);
}

static void run_pair(int omp0, int omp1)
{
    job alone[2], together[2];
    memset(alone, 0, sizeof alone);
    memset(together, 0, sizeof together);
    for (int w = 0; w < 2; w++) {
        alone[w].which = together[w].which = w;
        alone[w].omp_threads = together[w].omp_threads = w ? omp1 : omp0;
        run_job(&alone[w]); /* one after the other, on this thread */
        assert_int_equal(alone[w].status, 0);
    }
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
    pthread_t th[2];
    for (int w = 0; w < 2; w++) {
        together[w].barrier = &barrier;
        assert_int_equal(pthread_create(&th[w], NULL, run_job, &together[w]), 0);
    }
    for (int w = 0; w < 2; w++)
        assert_int_equal(pthread_join(th[w], NULL), 0);
    pthread_barrier_destroy(&barrier);
    for (int w = 0; w < 2; w++) {
        same_job(&alone[w], &together[w]);
        /* Each thread saw its own error message. */
        if (!strstr(together[w].error_seen, w ? "index 1001" : "index 1000"))
            fprintf(stderr, "thread %d saw '%s'\n", w, together[w].error_seen);
        assert_non_null(strstr(together[w].error_seen, w ? "index 1001" : "index 1000"));
        free_job(&alone[w]);
        free_job(&together[w]);
    }
}

static void two_threads_one_omp_thread_each(void **state)
{
    (void)state;
    run_pair(1, 1);
}

static void two_threads_with_omp_teams(void **state)
{
    (void)state;
    run_pair(2, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_threads_one_omp_thread_each),
        cmocka_unit_test(two_threads_with_omp_teams),
    };
    return cmocka_run_group_tests(tests, th_group_setup, th_group_teardown);
}
