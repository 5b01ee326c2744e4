/* test_mpi_checkpoint - parallel checkpoints and initial values, run under
 * mpirun with 1 to 4 ranks (any R works).
 *
 *  - the file N ranks write (in parallel, by rank 0 alone, or by each to
 *    its own path; either mode) is byte for byte the one a single process
 *    writes for the same state (the single-process core, run here on the
 *    same variables and gradients, is the reference);
 *  - loaded by a group of another size in the other mode, resumed: the same
 *    bytes as the single process that never stopped;
 *  - a write failing on one rank mid-save (its file-size limit) fails the
 *    save with one status on every rank and leaves the previous file and no
 *    temporary file;
 *  - a corrupted byte in the slice of the checksum any one rank checks
 *    fails the load on every rank and changes nothing;
 *  - no rank's peak memory grows during a save or a load by more than the
 *    checkpoint buffer and small change (the file is never held);
 *  - adadelta_mpi_broadcast_variables makes differing initial values equal
 *    to the root's (and the EMA with them); without it the first apply
 *    fails on every rank, unless the check is turned off.
 *
 * Gradients are the same on every rank and small multiples of 1/64, so the
 * mean over any number of ranks is exact and N ranks compute the bits of
 * one process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "adadelta_mpi.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mpi_harness.h"
#include "peak_memory.h"

/* Every slot kind and the loss-scale counters; odd call counts end in the
 * middle of an accumulation cycle. */
static void full_config(adadelta_config *cfg)
{
    adadelta_config_default(cfg);
    adadelta_lr_constant(&cfg->learning_rate, 1.0);
    cfg->use_ema = 1;
    cfg->gradient_accumulation_steps = 2;
    cfg->dynamic_loss_scale = 1;
}

/* Call k's gradient of variable v, the same on every rank. */
static float same_grad(int k, int v, int64_t i)
{
    return (float)(int)(64.0f * hashf(11, (uint32_t)k, (uint32_t)v, (uint32_t)i)) / 64.0f;
}

static void fill(grads *g, const model *m, int k)
{
    for (int v = 0; v < NV; v++) {
        for (int64_t i = 0; i < m->size[v]; i++)
            g->g[v][i] = same_grad(k, v, i);
        g->gp[v] = g->g[v];
    }
}

static int run_same(adadelta_mpi *o, model *m, int from, int to)
{
    grads g;
    grads_init(&g, m);
    int rc = 0;
    for (int k = from; k < to && !rc; k++) {
        fill(&g, m, k);
        rc = adadelta_mpi_apply(o, (const void *const *)g.gp);
    }
    grads_free(&g);
    return rc;
}

/* The single-process reference: calls [0, calls) then a save (rank 0). */
static int serial_reference(int calls, const char *path)
{
    int rc = 0;
    if (me == 0) {
        adadelta_config cfg;
        full_config(&cfg);
        model m;
        model_init(&m);
        adadelta *a;
        rc = adadelta_create(&cfg, &a);
        for (int v = 0; !rc && v < NV; v++)
            rc = adadelta_add_variable(a, names[v], ADADELTA_F32, m.data[v], nd[v], shapes[v]) ==
                         v
                     ? 0
                     : -100;
        grads g;
        grads_init(&g, &m);
        for (int k = 0; !rc && k < calls; k++) {
            fill(&g, &m, k);
            rc = adadelta_apply(a, (const void *const *)g.gp);
        }
        if (!rc)
            rc = adadelta_save(a, path);
        grads_free(&g);
        adadelta_destroy(a);
        model_free(&m);
    }
    return all_true(rc == 0);
}

/* The file's name of rank r in a save_each (rank-dependent paths). */
static char *each_path(const char *stem, int r)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%d.st", stem, r);
    return path_of(name);
}

/* N ranks in both modes, three ways of writing: the reference's bytes. */
static void test_same_bytes_as_one_process(void **state)
{
    (void)state;
    const char *ref = strdup(path_of("ref5.st"));
    AGREE(serial_reference(5, ref));
    adadelta_config cfg;
    full_config(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(o != NULL);
        AGREE(run_same(o, &m, 0, 5) == 0);
        const char *par = path_of("parallel.st");
        AGREE(adadelta_mpi_save(o, par) == 0);
        AGREE(same_files(par, ref));
        setenv("ADADELTA_MPI_CHECKPOINT", "root", 1);
        const char *alone = path_of("root.st");
        AGREE(adadelta_mpi_save(o, alone) == 0);
        unsetenv("ADADELTA_MPI_CHECKPOINT");
        AGREE(same_files(alone, ref));
        AGREE(adadelta_mpi_save_each(o, each_path("each", me)) == 0);
        for (int r = 0; r < R; r++)
            AGREE(same_files(each_path("each", r), ref));
        adadelta_mpi_destroy(o);
        model_free(&m);
    }
    free((void *)ref);
}

/* Saved by all R ranks after 5 calls; loaded by groups of about R/2 in the
 * other mode; 4 more calls; saved: the bytes of 9 calls in one process. */
static void test_resume_at_another_rank_count(void **state)
{
    (void)state;
    const char *ref = strdup(path_of("ref9.st"));
    AGREE(serial_reference(9, ref));
    adadelta_config cfg;
    full_config(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m;
        model_init(&m);
        adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(o != NULL);
        AGREE(run_same(o, &m, 0, 5) == 0);
        const char *mid = strdup(path_of("mid.st"));
        AGREE(adadelta_mpi_save(o, mid) == 0);
        adadelta_mpi_destroy(o);
        model_free(&m);

        int group = R > 1 && me >= R / 2;
        MPI_Comm half;
        MPI_Comm_split(MPI_COMM_WORLD, group, me, &half);
        model fresh;
        model_init(&fresh);
        for (int64_t i = 0; i < fresh.size[0]; i++)
            fresh.data[0][i] = 9.0f; /* the load must set them */
        adadelta_mpi *p = make_on(half, &cfg, (adadelta_mpi_mode)(1 - mode), &fresh);
        AGREE(p != NULL);
        AGREE(adadelta_mpi_load(p, mid) == 0);
        AGREE(run_same(p, &fresh, 5, 9) == 0);
        char name[32];
        snprintf(name, sizeof name, "resumed%d.st", group);
        const char *end = strdup(path_of(name));
        AGREE(adadelta_mpi_save(p, end) == 0);
        AGREE(same_files(end, ref));
        snprintf(name, sizeof name, "resumed%d.st", R > 1);
        AGREE(same_files(path_of(name), ref));
        adadelta_mpi_destroy(p);
        MPI_Comm_free(&half);
        model_free(&fresh);
        free((void *)mid);
        free((void *)end);
    }
    free((void *)ref);
}

/* Temporary files the writers left in the test folder. */
static int leftover_temporaries(const char *dir)
{
    int n = 0;
    if (me == 0) {
        DIR *d = opendir(dir);
        for (struct dirent *e; d && (e = readdir(d));)
            n += strstr(e->d_name, ".tmp.") != NULL;
        if (d)
            closedir(d);
    }
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return n;
}

static char *dir_of(const char *path)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    return dir;
}

/* One rank's writes fail past 4 KiB (its file-size limit; SIGXFSZ
 * ignored, so the write returns EFBIG) in each way of saving. */
static void test_failure_on_one_rank_keeps_the_old_file(void **state)
{
    (void)state;
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_SHARDED, &m);
    AGREE(o != NULL);
    AGREE(run_same(o, &m, 0, 3) == 0);
    const char *good = strdup(path_of("good.st")), *copy = strdup(path_of("good.copy.st"));
    AGREE(adadelta_mpi_save(o, good) == 0);
    AGREE(adadelta_mpi_save(o, copy) == 0);
    AGREE(adadelta_mpi_save_each(o, each_path("good", me)) == 0);
    AGREE(run_same(o, &m, 3, 5) == 0);
    for (int way = 0; way < 3; way++) {
        /* parallel: the last rank fails; rank 0 alone or each: rank 0 */
        int victim = way == 0 ? R - 1 : 0;
        struct rlimit old;
        getrlimit(RLIMIT_FSIZE, &old);
        if (me == victim) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit low = {4096, old.rlim_max};
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
        }
        if (way == 1)
            setenv("ADADELTA_MPI_CHECKPOINT", "root", 1);
        int rc = way == 2 ? adadelta_mpi_save_each(o, each_path("good", me))
                          : adadelta_mpi_save(o, good);
        unsetenv("ADADELTA_MPI_CHECKPOINT");
        if (me == victim)
            setrlimit(RLIMIT_FSIZE, &old);
        int lo = rc, hi = rc;
        MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        AGREE(lo == ADADELTA_EIO && hi == ADADELTA_EIO);
        char want[32];
        snprintf(want, sizeof want, "rank %d", victim);
        AGREE(R == 1 || me == victim || strstr(adadelta_mpi_last_error(), want) != NULL);
        AGREE(same_files(good, copy));
        for (int r = 0; r < R; r++)
            AGREE(same_files(each_path("good", r), copy));
        AGREE(leftover_temporaries(dir_of(good)) == 0);
    }
    adadelta_mpi_destroy(o);
    model_free(&m);
    free((void *)good);
    free((void *)copy);
}

/* Flips a bit of byte `at` (from the end when negative). */
static int flip_byte(const char *path, long at)
{
    int ok = 1;
    if (me == 0) {
        FILE *f = fopen(path, "r+b");
        ok = f && fseek(f, at, at < 0 ? SEEK_END : SEEK_SET) == 0;
        int c = ok ? fgetc(f) : EOF;
        ok = ok && c != EOF && fseek(f, -1, SEEK_CUR) == 0 && fputc(c ^ 0x10, f) != EOF;
        if (f)
            ok = fclose(f) == 0 && ok;
    }
    return all_true(ok);
}

static int copy_file(const char *from, const char *to)
{
    int ok = 1;
    if (me == 0) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
        ok = system(cmd) == 0;
    }
    return all_true(ok);
}

/* A byte of the first rank's slice, and of the last rank's: every rank
 * fails, nothing changes. */
static void test_corrupt_slice_fails_on_every_rank(void **state)
{
    (void)state;
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    AGREE(run_same(o, &m, 0, 3) == 0);
    const char *good = strdup(path_of("c.st"));
    AGREE(adadelta_mpi_save(o, good) == 0);
    AGREE(run_same(o, &m, 3, 4) == 0);
    float before = m.data[0][123];
    long where[2] = {200, -9}; /* in the header; near the end */
    for (int i = 0; i < 2; i++) {
        const char *bad = path_of("bad.st");
        AGREE(copy_file(good, bad));
        AGREE(flip_byte(bad, where[i]));
        int rc = adadelta_mpi_load(o, bad);
        AGREE(rc == ADADELTA_EFORMAT);
        AGREE(strstr(adadelta_mpi_last_error(), "checksum mismatch") != NULL);
        AGREE(m.data[0][123] == before && adadelta_iterations(adadelta_mpi_core(o)) == 4);
    }
    adadelta_mpi_destroy(o);
    model_free(&m);
    free((void *)good);
}

/* 2^22 elements, every slot (an 80 MiB file): a save and a load each add
 * at most the buffer (4 MiB here) and change to any rank's peak. */
static void test_memory_stays_bounded(void **state)
{
    (void)state;
    if (!all_true(reset_peak()))
        skip();
    adadelta_config cfg;
    full_config(&cfg);
    int64_t n = (int64_t)1 << 22, shape[1] = {n};
    float *w = malloc((size_t)n * sizeof *w), *g = malloc((size_t)n * sizeof *g);
    for (int64_t i = 0; i < n; i++) {
        w[i] = (float)(i % 1000) / 1000.0f;
        g[i] = (float)(i % 7) / 64.0f;
    }
    for (int mode = 0; mode < 2; mode++) {
        adadelta_mpi *o = NULL;
        AGREE(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &o) == 0);
        AGREE(adadelta_mpi_add_variable(o, "w", ADADELTA_F32, w, 1, shape) == 0);
        AGREE(adadelta_mpi_set_checkpoint_buffer(o, 4u << 20) == 0);
        const void *gp[1] = {g};
        const char *path = path_of("big.st");
        /* warm: every buffer of the step, a save and a load done once */
        AGREE(adadelta_mpi_apply(o, gp) == 0);
        AGREE(adadelta_mpi_save(o, path) == 0 && adadelta_mpi_load(o, path) == 0);
        AGREE(adadelta_mpi_apply(o, gp) == 0);
        long long steady = status_bytes("VmRSS");
        reset_peak();
        AGREE(adadelta_mpi_save(o, path) == 0);
        long long save_peak = status_bytes("VmHWM");
        reset_peak();
        AGREE(adadelta_mpi_load(o, path) == 0);
        long long load_peak = status_bytes("VmHWM");
        long long allowed = steady + (12ll << 20);
        if (me == 0)
            printf("mode %d: steady %lld MiB, save peak %lld MiB, load peak %lld MiB\n", mode,
                   steady >> 20, save_peak >> 20, load_peak >> 20);
        AGREE(save_peak <= allowed && load_peak <= allowed);
        adadelta_mpi_destroy(o);
    }
    free(w);
    free(g);
}

/* Rank-dependent initial values: the model's plus the rank. */
static void model_init_of(model *m, int r)
{
    model_init(m);
    for (int v = 0; v < NV; v++)
        for (int64_t i = 0; i < m->size[v]; i++)
            m->data[v][i] += (float)r;
}

static void test_broadcast_makes_variables_equal(void **state)
{
    (void)state;
    adadelta_config cfg;
    full_config(&cfg);
    for (int mode = 0; mode < 2; mode++) {
        model m, want;
        model_init_of(&m, me);
        model_init_of(&want, R - 1);
        adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, (adadelta_mpi_mode)mode, &m);
        AGREE(o != NULL);
        AGREE(adadelta_mpi_broadcast_variables(o, R - 1) == 0);
        int same = 1;
        for (int v = 0; v < NV; v++)
            same &= !memcmp(m.data[v], want.data[v], (size_t)m.size[v] * sizeof(float));
        AGREE(same);
        /* the EMA starts from the broadcast values, as a build makes it */
        const adadelta *core = adadelta_mpi_core(o);
        if (mode == ADADELTA_MPI_REPLICATED) {
            const float *ema = adadelta_slot(core, 0, ADADELTA_SLOT_EMA);
            AGREE(ema && !memcmp(ema, want.data[0], (size_t)want.size[0] * sizeof(float)));
        }
        AGREE(run_same(o, &m, 0, 3) == 0);
        AGREE(adadelta_mpi_check_identical(o) == 0);
        /* a root that is no rank: refused everywhere, nothing moves */
        AGREE(adadelta_mpi_broadcast_variables(o, R) == ADADELTA_EINVAL);
        adadelta_mpi_destroy(o);
        model_free(&m);
        model_free(&want);
    }
}

static void test_first_apply_catches_different_variables(void **state)
{
    (void)state;
    if (R < 2)
        skip();
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init_of(&m, me == R - 1);
    float before = m.data[0][0];
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_SHARDED, &m);
    AGREE(o != NULL);
    AGREE(run_same(o, &m, 0, 1) == ADADELTA_EMISMATCH);
    char want[32];
    snprintf(want, sizeof want, "rank %d", R - 1);
    AGREE(strstr(adadelta_mpi_last_error(), "different variables") != NULL &&
          strstr(adadelta_mpi_last_error(), want) != NULL);
    AGREE(m.data[0][0] == before && adadelta_iterations(adadelta_mpi_core(o)) == 0);
    /* turned off (collective now that the layer is set up) */
    adadelta_mpi_set_initial_check(o, 0);
    AGREE(run_same(o, &m, 0, 1) == 0);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

/* The review's cases: nothing hangs and every rank returns one status. */

/* Rank 0 resumed from a file (iterations 2), the others fresh: a broadcast
 * of the variables cannot make the states equal and says so everywhere. */
static void test_broadcast_refuses_states_apart(void **state)
{
    (void)state;
    if (R < 2)
        skip();
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    AGREE(run_same(o, &m, 0, 2) == 0);
    const char *path = strdup(path_of("two.st"));
    AGREE(adadelta_mpi_save(o, path) == 0);
    adadelta_mpi_destroy(o);
    adadelta *core = NULL;
    model fresh;
    model_init(&fresh);
    int rc = me == 0 ? adadelta_create_from_state(path, NULL, &core) : adadelta_create(&cfg, &core);
    for (int v = 0; !rc && me != 0 && v < NV; v++)
        rc = adadelta_add_variable(core, names[v], ADADELTA_F32, fresh.data[v], nd[v],
                                   shapes[v]) == v
                 ? 0
                 : -100;
    AGREE(rc == 0);
    AGREE(adadelta_mpi_wrap(MPI_COMM_WORLD, core, ADADELTA_MPI_REPLICATED, &o) == 0);
    AGREE(adadelta_mpi_broadcast_variables(o, 0) == ADADELTA_EMISMATCH);
    AGREE(strstr(adadelta_mpi_last_error(), "different iterations") != NULL);
    adadelta_mpi_destroy(o);
    model_free(&m);
    model_free(&fresh);
    free((void *)path);
}

/* The wishes are local at any time: one rank turning the first-apply
 * check off after the setup changes no rank's collectives. */
static void test_check_wishes_stay_local(void **state)
{
    (void)state;
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_SHARDED, &m);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_broadcast_variables(o, 0) == 0); /* the layer is set up */
    if (me == 0) {
        adadelta_mpi_set_initial_check(o, 0);
        adadelta_mpi_set_check_identical(o, 1);
    }
    AGREE(run_same(o, &m, 0, 3) == 0);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

/* Copies per rank (save_each) where one rank's is an older state: the load
 * refuses on every rank and changes nothing. */
static void test_load_refuses_different_copies(void **state)
{
    (void)state;
    if (R < 2)
        skip();
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    AGREE(run_same(o, &m, 0, 2) == 0);
    const char *old = strdup(path_of("old.st"));
    AGREE(adadelta_mpi_save(o, old) == 0);
    AGREE(run_same(o, &m, 2, 4) == 0);
    AGREE(adadelta_mpi_save_each(o, each_path("copy", me)) == 0);
    AGREE(copy_file(old, each_path("copy", R - 1)));
    float before = m.data[0][7];
    AGREE(adadelta_mpi_load(o, each_path("copy", me)) == ADADELTA_EMISMATCH);
    AGREE(strstr(adadelta_mpi_last_error(), "different files") != NULL);
    AGREE(m.data[0][7] == before && adadelta_iterations(adadelta_mpi_core(o)) == 4);
    adadelta_mpi_destroy(o);
    model_free(&m);
    free((void *)old);
}

/* A save, load or broadcast inside an open overlapped step is refused on
 * every rank; the step then ends as if nothing had happened. */
static void test_no_checkpoint_inside_a_step(void **state)
{
    (void)state;
    adadelta_config cfg;
    full_config(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, &cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    grads g;
    grads_init(&g, &m);
    fill(&g, &m, 0);
    AGREE(adadelta_mpi_begin_step(o) == 0);
    AGREE(adadelta_mpi_grad_ready(o, 0, g.gp[0]) == 0);
    const char *path = path_of("inside.st");
    AGREE(adadelta_mpi_save(o, path) == ADADELTA_ESTATE);
    AGREE(adadelta_mpi_load(o, path) == ADADELTA_ESTATE);
    AGREE(adadelta_mpi_broadcast_variables(o, 0) == ADADELTA_ESTATE);
    for (int v = 1; v < NV; v++)
        AGREE(adadelta_mpi_grad_ready(o, v, g.gp[v]) == 0);
    AGREE(adadelta_mpi_end_step(o) == 0);
    AGREE(run_same(o, &m, 1, 3) == 0);
    grads_free(&g);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_one_process),
        cmocka_unit_test(test_resume_at_another_rank_count),
        cmocka_unit_test(test_failure_on_one_rank_keeps_the_old_file),
        cmocka_unit_test(test_corrupt_slice_fails_on_every_rank),
        cmocka_unit_test(test_memory_stays_bounded),
        cmocka_unit_test(test_broadcast_makes_variables_equal),
        cmocka_unit_test(test_first_apply_catches_different_variables),
        cmocka_unit_test(test_broadcast_refuses_states_apart),
        cmocka_unit_test(test_check_wishes_stay_local),
        cmocka_unit_test(test_load_refuses_different_copies),
        cmocka_unit_test(test_no_checkpoint_inside_a_step),
    };
    return RUN_MPI_TESTS(argc, argv, tests);
}
