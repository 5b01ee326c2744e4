/* test_mpi_api - libadadelta_mpi through its API, run under mpirun with 2, 3
 * and 4 ranks (any R works).
 *
 * Every assertion is agreed over the ranks first (all pass or all fail
 * together), so a failure never leaves a rank waiting in a collective. Rank
 * 0 alone prints cmocka's output.
 *
 *  - replicated mode equals the single-process core applied to the mean of
 *    the ranks' gradients, bit for bit;
 *  - sharded mode equals replicated mode bit for bit (states saved to files
 *    and compared byte by byte), over clipping, weight decay, EMA with
 *    overwrite and finalize, accumulation, dynamic loss scaling with an Inf
 *    on one rank only, None gradients, variables split over several ranks,
 *    and a model of one shard (one rank owns it all);
 *  - every rank ends every call with the same variables and state (the
 *    checksum debug option is on throughout);
 *  - optimizer-state memory per rank in sharded mode is about 1/R;
 *  - save in one mode, load in the other, continue: equals the run that
 *    never stopped;
 *  - disagreements fail on every rank with ADADELTA_EMISMATCH: config,
 *    variable names, shapes, which gradients are None, a diverged rank;
 *    check_finite refuses on every rank when one rank has an Inf; a state
 *    file missing on one rank fails the load everywhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "adadelta_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_harness.h"

/* ---------------------------------------------------------------- tests */

/* Replicated over R ranks == one process given the mean gradient. */
static void test_replicated_equals_serial_mean(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.clipnorm = 0.5;
    cfg.weight_decay = 0.01;
    cfg.use_ema = 1;
    cfg.ema_overwrite_frequency = 4;
    model a, b;
    model_init(&a);
    model_init(&b);
    adadelta_mpi *o = make(&cfg, ADADELTA_MPI_REPLICATED, &a);
    AGREE(o != NULL);
    adadelta *serial;
    assert_int_equal(adadelta_create(&cfg, &serial), 0);
    for (int v = 0; v < NV; v++)
        assert_int_equal(adadelta_add_variable(serial, names[v], ADADELTA_F32, b.data[v],
                                               nd[v], shapes[v]), v);
    AGREE(run(o, &a, 0, 9, NONE_ODD) == 0);
    float *g[NV];
    for (int v = 0; v < NV; v++)
        g[v] = malloc((size_t)b.size[v] * sizeof(float));
    for (int k = 0; k < 9; k++) {
        for (int v = 0; v < NV; v++)
            for (int64_t i = 0; i < b.size[v]; i++) {
                float s = grad(0, k, v, i);
                for (int r = 1; r < R; r++)
                    s += grad(r, k, v, i);
                g[v][i] = s / (float)R;
            }
        const float *gp[NV] = {g[0], k % 2 ? NULL : g[1], g[2], g[3]};
        assert_int_equal(adadelta_apply(serial, gp), 0);
    }
    int same = 1;
    for (int v = 0; v < NV; v++)
        same &= !memcmp(a.data[v], b.data[v], (size_t)a.size[v] * 4) &&
                !memcmp(adadelta_slot(adadelta_mpi_core(o), v, ADADELTA_SLOT_EMA),
                        adadelta_slot(serial, v, ADADELTA_SLOT_EMA), (size_t)a.size[v] * 4);
    AGREE(same);
    for (int v = 0; v < NV; v++)
        free(g[v]);
    adadelta_destroy(serial);
    adadelta_mpi_destroy(o);
    model_free(&a);
    model_free(&b);
}

static void check_modes_equal(const adadelta_config *cfg, int flags, int finalize,
                              const char *tag)
{
    char a[64], b[64];
    snprintf(a, sizeof a, "%s_rep.st", tag);
    snprintf(b, sizeof b, "%s_shd.st", tag);
    char *pa = strdup(path_of(a)), *pb = strdup(path_of(b));
    AGREE(run_and_save(cfg, ADADELTA_MPI_REPLICATED, 10, flags, finalize, pa, NULL) == 0);
    AGREE(run_and_save(cfg, ADADELTA_MPI_SHARDED, 10, flags, finalize, pb, NULL) == 0);
    AGREE(same_files(pa, pb));
    free(pa);
    free(pb);
}

static void test_sharded_equals_replicated(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    check_modes_equal(&cfg, 0, 0, "defaults");
    check_modes_equal(&cfg, NONE_ODD, 0, "none");

    cfg.clipnorm = 0.1;
    cfg.weight_decay = 0.02;
    cfg.use_ema = 1;
    cfg.ema_overwrite_frequency = 3;
    check_modes_equal(&cfg, NONE_ODD, 1, "clip_ema");

    adadelta_config_default(&cfg);
    adadelta_lr_exponential_decay(&cfg.learning_rate, 1.0, 5, 0.9, 0);
    cfg.global_clipnorm = 0.5;
    cfg.gradient_accumulation_steps = 3;
    cfg.use_ema = 1;
    cfg.ema_overwrite_frequency = 2;
    check_modes_equal(&cfg, 0, 0, "accum");
    cfg.gradient_accumulation_steps = 4; /* 10 calls: ends mid-cycle */
    check_modes_equal(&cfg, NONE_ODD, 1, "accum_mid");

    adadelta_config_default(&cfg);
    cfg.clipvalue = 0.3;
    check_modes_equal(&cfg, 0, 0, "clipvalue");
}

/* LossScaleOptimizer: an Inf on one rank makes every rank skip. */
static void test_dynamic_loss_scale_skip(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    cfg.dynamic_loss_scale = 1;
    cfg.initial_scale = 1024;
    cfg.dynamic_growth_steps = 4;
    float s1 = 0, s2 = 0;
    char *pa = strdup(path_of("dls_rep.st")), *pb = strdup(path_of("dls_shd.st"));
    AGREE(run_and_save(&cfg, ADADELTA_MPI_REPLICATED, 10, INF_LAST, 0, pa, &s1) == 0);
    AGREE(run_and_save(&cfg, ADADELTA_MPI_SHARDED, 10, INF_LAST, 0, pb, &s2) == 0);
    AGREE(same_files(pa, pb));
    /* 3 steps, a skip (1024 -> 512), 6 steps: one growth after 4 -> 1024. */
    AGREE(s1 == 1024.0f && s2 == 1024.0f);
    free(pa);
    free(pb);
}

static void test_check_finite_everywhere(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    cfg.check_finite = 1;
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(o != NULL);
        AGREE(run(o, &m, 0, 3, 0) == 0);
        AGREE(run(o, &m, 3, 4, INF_LAST) == ADADELTA_ENONFINITE);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 3);
        AGREE(adadelta_mpi_check_identical(o) == 0);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

/* Optimizer-state bytes per rank: about 1/R in sharded mode, on a model of
 * 2^20 + 1000 elements (65 shards). */
static void test_state_bytes(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    cfg.use_ema = 1;
    const int64_t big[1] = {1 << 20}, small[1] = {1000};
    long long bytes[2] = {0, 0}, most = 0, sum = 0;
    for (int mode = 0; mode < 2; mode++) {
        float *a = calloc((size_t)big[0], 4), *b = calloc((size_t)small[0], 4);
        adadelta_mpi *o = NULL;
        AGREE(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &o) == 0);
        AGREE(adadelta_mpi_add_variable(o, "big", ADADELTA_F32, a, 1, big) == 0 &&
              adadelta_mpi_add_variable(o, "small", ADADELTA_F32, b, 1, small) == 1);
        const float *g[2] = {a, b}; /* zero gradients are fine here */
        AGREE(adadelta_mpi_apply(o, g) == 0);
        bytes[mode] = (long long)adadelta_mpi_state_bytes(o);
        adadelta_mpi_destroy(o);
        free(a);
        free(b);
    }
    MPI_Allreduce(&bytes[1], &sum, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&bytes[1], &most, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (me == 0)
        printf("state bytes: replicated %lld per rank; sharded %lld at most per rank "
               "(%.3f of replicated, 1/R = %.3f), %lld over all ranks\n",
               bytes[0], most, (double)most / (double)bytes[0], 1.0 / R, sum);
    AGREE(sum == bytes[0]);
    /* 1/R, give or take one 16384-element shard of each of the 3 slots. */
    AGREE(most <= bytes[0] / R + 3 * 16384 * 4);
}

/* Save at call 6 in one mode, load in the other, continue to 10: the same
 * bytes as the run that never stopped. */
static void test_save_load_resume(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.gradient_accumulation_steps = 2;
    cfg.use_ema = 1;
    cfg.global_clipnorm = 1.0;
    char *whole = strdup(path_of("whole.st"));
    AGREE(run_and_save(&cfg, ADADELTA_MPI_REPLICATED, 10, NONE_ODD, 0, whole, NULL) == 0);
    for (int from = 0; from < 2; from++) {
        char *mid = strdup(path_of("mid.st")), *end = strdup(path_of("end.st"));
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)from, &m);
        AGREE(run(o, &m, 0, 6, NONE_ODD) == 0);
        AGREE(adadelta_mpi_save(o, mid) == 0);
        adadelta_mpi_destroy(o);
        model_free(&m);

        model_init(&m); /* fresh variables: the load must set them */
        for (int v = 0; v < NV; v++)
            memset(m.data[v], 0, (size_t)m.size[v] * 4);
        o = make(&cfg, (adadelta_mpi_mode)!from, &m);
        AGREE(adadelta_mpi_load(o, mid) == 0);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 6);
        AGREE(run(o, &m, 6, 10, NONE_ODD) == 0);
        AGREE(adadelta_mpi_save(o, end) == 0);
        AGREE(same_files(whole, end));
        adadelta_mpi_destroy(o);
        model_free(&m);
        free(mid);
        free(end);
    }
    free(whole);
}

static void test_load_failures_agree(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    char *good = strdup(path_of("good.st"));
    AGREE(run_and_save(&cfg, ADADELTA_MPI_SHARDED, 2, 0, 0, good, NULL) == 0);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(run(o, &m, 0, 1, 0) == 0);
        /* Missing on the last rank only: every rank fails, nothing changes. */
        int rc = adadelta_mpi_load(o, me == R - 1 ? path_of("missing.st") : good);
        AGREE(rc == ADADELTA_EIO);
        AGREE(strlen(adadelta_mpi_last_error()) > 0);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 1);
        AGREE(adadelta_mpi_check_identical(o) == 0);
        /* Different failures on different ranks (rank 0 a corrupt file,
         * rank 1 a missing one): the same status everywhere, rank 0's,
         * with every failing rank's reason in the message. */
        if (R >= 2) {
            if (me == 0) {
                FILE *fp = fopen(path_of("corrupt.st"), "wb");
                fputs("not a state file, not even safetensors", fp);
                fclose(fp);
            }
            MPI_Barrier(MPI_COMM_WORLD);
            rc = adadelta_mpi_load(o, me == 0   ? path_of("corrupt.st")
                                      : me == 1 ? path_of("missing.st")
                                                : good);
            AGREE(rc == ADADELTA_EFORMAT);
            AGREE(strstr(adadelta_mpi_last_error(), "rank 0: ") != NULL);
            AGREE(strstr(adadelta_mpi_last_error(), "rank 1: ") != NULL);
            AGREE(strstr(adadelta_mpi_last_error(), "missing.st") != NULL);
            AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 1);
        }
        AGREE(adadelta_mpi_load(o, good) == 0);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 2);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
    free(good);
}

/* One small variable: a single shard, so one rank owns everything and the
 * others nothing. Norm clipping must neither hang nor differ. */
static void test_one_shard(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        adadelta_config cfg;
        adadelta_config_default(&cfg);
        adadelta_lr_constant(&cfg.learning_rate, 1.0);
        if (kind == 0)
            cfg.global_clipnorm = 0.3;
        else
            cfg.clipnorm = 0.2;
        cfg.use_ema = 1;
        char *files[2] = {strdup(path_of("one_rep.st")), strdup(path_of("one_shd.st"))};
        for (int mode = 0; mode < 2; mode++) {
            float data[100], g[100];
            for (int i = 0; i < 100; i++)
                data[i] = hashf(1, 2, 3, (uint32_t)i);
            int64_t shape[1] = {100};
            adadelta_mpi *o = NULL;
            AGREE(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &o) == 0);
            AGREE(adadelta_mpi_add_variable(o, "w", ADADELTA_F32, data, 1, shape) == 0);
            adadelta_mpi_set_check_identical(o, 1);
            int rc = 0;
            for (int k = 0; k < 6 && !rc; k++) {
                for (int i = 0; i < 100; i++)
                    g[i] = grad(me, k, 0, i);
                const float *gp[1] = {g};
                rc = adadelta_mpi_apply(o, gp);
            }
            AGREE(rc == 0);
            AGREE(adadelta_mpi_finalize_variable_values(o) == 0);
            AGREE(adadelta_mpi_save(o, files[mode]) == 0);
            adadelta_mpi_destroy(o);
        }
        AGREE(same_files(files[0], files[1]));
        free(files[0]);
        free(files[1]);
    }
}

static void test_config_mismatch(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    if (me == R - 1)
        cfg.rho = 0.9;
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(o != NULL);
        AGREE(adadelta_mpi_check_agreement(o) == ADADELTA_EMISMATCH);
        AGREE(strstr(adadelta_mpi_last_error(), "config") != NULL);
        /* the differing key, with rank 0's value: on every rank */
        AGREE(strstr(adadelta_mpi_last_error(), "rho 0.9 (rank 0 0.95)") != NULL);
        /* The first apply refuses too, on every rank, and changes nothing. */
        AGREE(run(o, &m, 0, 1, 0) == ADADELTA_EMISMATCH);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 0);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

static void test_variables_mismatch(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    for (int what = 0; what < 3; what++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = NULL;
        AGREE(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_SHARDED, &o) == 0);
        int added = 1; /* local: ranks add different numbers of variables */
        for (int v = 0; v < NV; v++) {
            const char *name = names[v];
            int64_t shape[2] = {shapes[v][0], shapes[v][1]};
            if (me == R - 1 && v == 2) {
                if (what == 0)
                    name = "conv/kernel_renamed";
                else if (what == 1) {
                    shape[0] = 100; /* same size, other shape */
                    shape[1] = 10;
                }
            }
            if (what == 2 && me == R - 1 && v == 3)
                break; /* one variable fewer */
            added &= adadelta_mpi_add_variable(o, name, ADADELTA_F32, m.data[v], nd[v], shape) ==
                     v;
        }
        AGREE(added);
        AGREE(adadelta_mpi_check_agreement(o) == ADADELTA_EMISMATCH);
        AGREE(strstr(adadelta_mpi_last_error(), "variables") != NULL);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

static void test_mode_mismatch(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_mpi *o = NULL;
    int rc = adadelta_mpi_create(MPI_COMM_WORLD, &cfg,
                                 me == 0 ? ADADELTA_MPI_SHARDED : ADADELTA_MPI_REPLICATED, &o);
    AGREE(rc == ADADELTA_EMISMATCH && o == NULL);
    /* An invalid config on one rank fails creation everywhere. */
    if (me == R - 1)
        cfg.rho = 2.0;
    rc = adadelta_mpi_create(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_REPLICATED, &o);
    AGREE(rc == ADADELTA_EINVAL && o == NULL);
    /* A bad mode on rank 0 only: rank 0 sees EINVAL, the others a mode
     * mismatch; all return rank 0's status. */
    adadelta_config_default(&cfg);
    rc = adadelta_mpi_create(MPI_COMM_WORLD, &cfg,
                             me == 0 ? (adadelta_mpi_mode)7 : ADADELTA_MPI_REPLICATED, &o);
    AGREE(rc == ADADELTA_EINVAL && o == NULL);
    AGREE(strstr(adadelta_mpi_last_error(), "rank 0: ") != NULL);
}

static void test_presence_mismatch(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(run(o, &m, 0, 1, NONE_RANK0) == ADADELTA_EMISMATCH);
        AGREE(strstr(adadelta_mpi_last_error(), "dense/bias") != NULL);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 0);
        /* Still usable after the refusal. */
        AGREE(run(o, &m, 0, 2, 0) == 0);
        AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 2);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

static void test_divergence_detected(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make(&cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(run(o, &m, 0, 2, 0) == 0);
        AGREE(adadelta_mpi_check_identical(o) == 0);
        if (me == R - 1)
            m.data[0][123] += 1.0f; /* a rank drifts */
        AGREE(adadelta_mpi_check_identical(o) == ADADELTA_EMISMATCH);
        AGREE(strstr(adadelta_mpi_last_error(), "diverged") != NULL);
        /* With the option on, the next apply reports it too (replicated; in
         * sharded mode the allgather restores the owner's value). */
        if (mode == ADADELTA_MPI_REPLICATED)
            AGREE(run(o, &m, 2, 3, 0) == ADADELTA_EMISMATCH);
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
}

/* optimizer.learning_rate = x on every rank: the same everywhere or
 * refused everywhere; the wrapped core refuses its own setter; the Fortran
 * handle of the communicator works for wrapping. */
static void test_learning_rate_change(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    model m;
    model_init(&m);
    adadelta *core = NULL;
    AGREE(adadelta_create(&cfg, &core) == 0);
    for (int v = 0; v < NV; v++)
        AGREE(adadelta_add_variable(core, names[v], ADADELTA_F32, m.data[v], nd[v], shapes[v]) ==
              v);
    adadelta_mpi *o = NULL;
    AGREE(adadelta_mpi_wrap_fortran((int)MPI_Comm_c2f(MPI_COMM_WORLD), core,
                                    ADADELTA_MPI_SHARDED, &o) == 0);
    AGREE(run(o, &m, 0, 1, 0) == 0);
    AGREE(adadelta_mpi_set_learning_rate_json(o, "0.5") == 0);
    AGREE(adadelta_current_learning_rate(adadelta_mpi_core(o)) == 0.5f);
    AGREE(adadelta_mpi_set_learning_rate_json(o, me == R - 1 ? "0.25" : "0.125") ==
          ADADELTA_EMISMATCH);
    AGREE(adadelta_current_learning_rate(adadelta_mpi_core(o)) == 0.5f);
    AGREE(adadelta_mpi_set_learning_rate_json(o, me == 0 ? "-" : "0.125") == ADADELTA_EINVAL);
    adadelta_learning_rate lr;
    adadelta_lr_constant(&lr, 0.125);
    AGREE(adadelta_set_learning_rate((adadelta *)adadelta_mpi_core(o), &lr) == ADADELTA_ESTATE);
    AGREE(adadelta_current_learning_rate(adadelta_mpi_core(o)) == 0.5f);
    AGREE(run(o, &m, 1, 2, 0) == 0);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicated_equals_serial_mean),
        cmocka_unit_test(test_sharded_equals_replicated),
        cmocka_unit_test(test_dynamic_loss_scale_skip),
        cmocka_unit_test(test_check_finite_everywhere),
        cmocka_unit_test(test_state_bytes),
        cmocka_unit_test(test_save_load_resume),
        cmocka_unit_test(test_load_failures_agree),
        cmocka_unit_test(test_one_shard),
        cmocka_unit_test(test_config_mismatch),
        cmocka_unit_test(test_variables_mismatch),
        cmocka_unit_test(test_mode_mismatch),
        cmocka_unit_test(test_presence_mismatch),
        cmocka_unit_test(test_divergence_detected),
        cmocka_unit_test(test_learning_rate_change),
    };
    return RUN_MPI_TESTS(argc, argv, tests);
}
