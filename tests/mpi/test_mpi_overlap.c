/* test_mpi_overlap - the overlapped step and the reduction engines, under
 * mpirun with 2, 3 and 4 ranks:
 *  - begin_step + grad_ready x n + end_step gives the bytes of
 *    adadelta_mpi_apply with the same gradients, in both modes, for
 *    several bucket sizes and orders (a different order on every rank),
 *    with None gradients, clipping, EMA, accumulation and a loss-scale skip;
 *  - the shared-memory and the MPI-collective engines give the same bytes,
 *    the latter also in chunks of a few elements;
 *  - gradients written into the layer's buffers (zero copy) too;
 *  - misuse fails on every rank with the same status and changes nothing:
 *    a variable reported twice, one never reported, ranks reporting
 *    different variables, apply inside an open step, calls outside one. */
#include "mpi_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rich_config(adadelta_config *cfg, int variant)
{
    adadelta_config_default(cfg);
    adadelta_lr_constant(&cfg->learning_rate, 0.5);
    if (variant == 0) {
        cfg->global_clipnorm = 3.0;
        cfg->weight_decay = 0.01;
        cfg->use_ema = 1;
        cfg->ema_overwrite_frequency = 3;
    } else if (variant == 1) {
        cfg->gradient_accumulation_steps = 2;
        cfg->clipnorm = 0.7;
    } else {
        cfg->dynamic_loss_scale = 1;
        cfg->initial_scale = 8;
        cfg->dynamic_growth_steps = 2;
    }
}

static const int flags_of[3] = {NONE_ODD, NONE_ODD, INF_LAST};

/* The variables in a rank-dependent order for call k: order 0 backward,
 * 1 forward, 2 shuffled (differently on every rank and call). */
static void make_order(int *seq, int k, int order)
{
    for (int i = 0; i < NV; i++)
        seq[i] = order == 1 ? i : NV - 1 - i;
    if (order == 2)
        for (int i = NV - 1; i > 0; i--) {
            int j = (int)(((unsigned)(k * 7 + me * 13 + i * 5)) % (unsigned)(i + 1));
            int t = seq[i];
            seq[i] = seq[j];
            seq[j] = t;
        }
}

static int run_overlapped(adadelta_mpi *o, model *m, int calls, int flags, int order)
{
    grads g;
    grads_init(&g, m);
    int rc = 0;
    for (int k = 0; k < calls && !rc; k++) {
        grads_fill(&g, m, k, flags);
        int seq[NV];
        make_order(seq, k, order);
        rc = adadelta_mpi_begin_step(o);
        for (int i = 0; i < NV && !rc; i++)
            rc = adadelta_mpi_grad_ready(o, seq[i], g.gp[seq[i]]);
        int end = adadelta_mpi_end_step(o);
        rc = rc ? rc : end;
    }
    grads_free(&g);
    return rc;
}

static void test_overlap_equals_apply(void **state)
{
    (void)state;
    const int64_t buckets[] = {1, 40000, 1 << 30};
    for (int variant = 0; variant < 3; variant++)
        for (int mode = 0; mode < 2; mode++) {
            adadelta_config cfg;
            rich_config(&cfg, variant);
            char *ref = strdup(path_of("apply.st"));
            AGREE(run_and_save(&cfg, (adadelta_mpi_mode)mode, 6, flags_of[variant], 0, ref,
                               NULL) == 0);
            for (int b = 0; b < 3; b++)
                for (int order = 0; order < 3; order++) {
                    model m;
                    model_init(&m);
                    adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
                    AGREE(o && adadelta_mpi_set_bucket_bytes(o, buckets[b]) == 0);
                    AGREE(run_overlapped(o, &m, 6, flags_of[variant], order) == 0);
                    AGREE(adadelta_mpi_save(o, path_of("overlap.st")) == 0);
                    AGREE(same_files(ref, path_of("overlap.st")));
                    adadelta_mpi_destroy(o);
                    model_free(&m);
                }
            free(ref);
        }
}

/* The gradients written into the layer's buffers (zero copy), stepped by
 * apply or by the overlap API: the same bytes, also where the contribution
 * is made in place (loss scale, accumulation) and with an Inf that the
 * loss-scale check must see before the in-place division. */
static int run_zero_copy(adadelta_mpi *o, model *m, int calls, int flags, int overlapped)
{
    grads g;
    grads_init(&g, m);
    int rc = 0;
    for (int k = 0; k < calls && !rc; k++) {
        grads_fill(&g, m, k, flags);
        const float *gp[NV];
        for (int v = 0; v < NV; v++) {
            float *buf = adadelta_mpi_gradient_buffer(o, v);
            if (!buf)
                return -100;
            if (m->size[v])
                memcpy(buf, g.gp[v] ? g.gp[v] : g.g[v], (size_t)m->size[v] * sizeof(float));
            gp[v] = g.gp[v] ? buf : NULL;
        }
        if (!overlapped) {
            rc = adadelta_mpi_apply(o, gp);
            continue;
        }
        rc = adadelta_mpi_begin_step(o);
        for (int v = NV - 1; v >= 0 && !rc; v--)
            rc = adadelta_mpi_grad_ready(o, v, gp[v]);
        int end = adadelta_mpi_end_step(o);
        rc = rc ? rc : end;
    }
    grads_free(&g);
    return rc;
}

static void test_zero_copy_gradients(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++)
        for (int mode = 0; mode < 2; mode++)
            for (int overlapped = 0; overlapped < 2; overlapped++) {
                adadelta_config cfg;
                rich_config(&cfg, variant);
                char *ref = strdup(path_of("copy.st"));
                AGREE(run_and_save(&cfg, (adadelta_mpi_mode)mode, 6, flags_of[variant], 0, ref,
                                   NULL) == 0);
                model m;
                model_init(&m);
                adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
                AGREE(o && adadelta_mpi_gradient_buffer(o, NV) == NULL);
                AGREE(run_zero_copy(o, &m, 6, flags_of[variant], overlapped) == 0);
                AGREE(adadelta_mpi_save(o, path_of("zero_copy.st")) == 0);
                AGREE(same_files(ref, path_of("zero_copy.st")));
                adadelta_mpi_destroy(o);
                model_free(&m);
                free(ref);
            }
}

/* Runs 5 calls with the engine the environment asks for and saves them. */
static void run_with_env(const adadelta_config *cfg, int mode, const engine_env *env,
                         const char *file)
{
    engine_env_begin(env);
    model m;
    model_init(&m);
    adadelta_mpi *o = make(cfg, (adadelta_mpi_mode)mode, &m);
    AGREE(o && run(o, &m, 0, 5, NONE_ODD) == 0);
    AGREE(!strcmp(adadelta_mpi_engine(o), env->want));
    AGREE(adadelta_mpi_save(o, file) == 0);
    adadelta_mpi_destroy(o);
    model_free(&m);
    engine_env_end();
}

static void test_engines_equal(void **state)
{
    (void)state;
    for (int variant = 0; variant < 2; variant++)
        for (int mode = 0; mode < 2; mode++) {
            adadelta_config cfg;
            rich_config(&cfg, variant);
            char *a = strdup(path_of("shm.st")), *b = strdup(path_of("p2p.st")),
                 *c = strdup(path_of("chunked.st")), *h = strdup(path_of("hier.st")),
                 *hc = strdup(path_of("hier_chunked.st"));
            /* mpirun here puts every rank on this machine: one node */
            run_with_env(&cfg, mode, &(engine_env){"1", NULL, NULL, R > 1 ? "shm" : "p2p"}, a);
            run_with_env(&cfg, mode, &(engine_env){"0", NULL, NULL, "p2p"}, b);
            run_with_env(&cfg, mode, &(engine_env){"0", "1000", NULL, "p2p"}, c);
            AGREE(same_files(a, b));
            AGREE(same_files(a, c));
            if (R > 1) {
                /* pretend nodes: 1 + 1, 2 + 1, 2 + 2 ranks */
                char node_ranks[16];
                snprintf(node_ranks, sizeof node_ranks, "%d", (R + 1) / 2);
                run_with_env(&cfg, mode, &(engine_env){"1", NULL, node_ranks, "hier"}, h);
                run_with_env(&cfg, mode, &(engine_env){"1", "1000", node_ranks, "hier"}, hc);
                AGREE(same_files(a, h));
                AGREE(same_files(a, hc));
            }
            free(a);
            free(b);
            free(c);
            free(h);
            free(hc);
        }
}

/* One overlapped call where `bad_rank` misbehaves as `how`; every rank
 * must get `want` from end_step with `words` in the message, and the
 * optimizer must be unchanged and usable. */
enum { TWICE, MISSING, OTHER_NONE };

static void misuse_case(int how, int bad_rank, int want, const char *words)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        grads g;
        grads_init(&g, &m);
        grads_fill(&g, &m, 0, 0);
        AGREE(adadelta_mpi_begin_step(o) == 0);
        int local = 0;
        for (int v = NV - 1; v >= 0; v--) {
            if (how == MISSING && me == bad_rank && v == 2)
                continue;
            const float *gv = how == OTHER_NONE && me == bad_rank && v == 1 ? NULL : g.gp[v];
            local |= adadelta_mpi_grad_ready(o, v, gv) != 0;
            if (how == TWICE && me == bad_rank && v == 0)
                local |= adadelta_mpi_grad_ready(o, v, gv) == ADADELTA_EINVAL ? 2 : 1;
        }
        AGREE(local == (how == TWICE && me == bad_rank ? 2 : 0));
        AGREE(adadelta_mpi_end_step(o) == want);
        AGREE(strstr(adadelta_mpi_last_error(), words) != NULL);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 0);
        AGREE(adadelta_mpi_check_identical(o) == 0);
        AGREE(run(o, &m, 0, 2, 0) == 0); /* still usable */
        grads_free(&g);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

static void test_misuse_fails_everywhere(void **state)
{
    (void)state;
    misuse_case(TWICE, R - 1, ADADELTA_EINVAL, "reported twice");
    misuse_case(MISSING, 0, ADADELTA_EINVAL, "was not reported");
    misuse_case(OTHER_NONE, R - 1, ADADELTA_EMISMATCH, "dense/bias");
}

static void test_calls_outside_a_step(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make(&cfg, ADADELTA_MPI_SHARDED, &m);
    grads g;
    grads_init(&g, &m);
    grads_fill(&g, &m, 0, 0);
    AGREE(adadelta_mpi_grad_ready(o, 0, g.gp[0]) == ADADELTA_ESTATE);
    AGREE(adadelta_mpi_end_step(o) == ADADELTA_ESTATE);
    AGREE(adadelta_mpi_begin_step(o) == 0);
    AGREE(adadelta_mpi_begin_step(o) == ADADELTA_ESTATE);
    AGREE(adadelta_mpi_apply(o, g.gp) == ADADELTA_ESTATE);
    AGREE(strstr(adadelta_mpi_last_error(), "open") != NULL);
    AGREE(adadelta_mpi_grad_ready(o, NV, g.gp[0]) == ADADELTA_EINVAL);
    for (int v = 0; v < NV; v++)
        AGREE(adadelta_mpi_grad_ready(o, v, g.gp[v]) == 0);
    /* the out-of-range index fails the step everywhere */
    AGREE(adadelta_mpi_end_step(o) == ADADELTA_EINVAL);
    AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 0);
    AGREE(run(o, &m, 0, 1, 0) == 0);
    AGREE(adadelta_mpi_agreements(o) == 2);
    grads_free(&g);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlap_equals_apply),
        cmocka_unit_test(test_engines_equal),
        cmocka_unit_test(test_zero_copy_gradients),
        cmocka_unit_test(test_misuse_fails_everywhere),
        cmocka_unit_test(test_calls_outside_a_step),
    };
    return RUN_MPI_TESTS(argc, argv, tests);
}
