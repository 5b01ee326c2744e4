/* test_mpi_compression - the compressed gradient exchange
 * (adadelta_mpi_set_compression), under mpirun with 2, 3 and 4 ranks:
 *  - bfloat16 and float16, both modes, every engine (shared memory, MPI
 *    collectives, also in chunks, and the several-node engine on pretend
 *    nodes), blocking and overlapped steps: the saved state equals the
 *    single-process library's after applying, at each call, the gradient
 *    this test computes itself: each rank's gradient rounded to the 16-bit
 *    type by the test's own rounding (written from the formats'
 *    definitions, in double arithmetic), summed in float32 in rank order,
 *    divided by R, rounded again;
 *  - gradients that need every rounding case: float16 subnormals, values
 *    of a few hundred, ties;
 *  - ranks that disagree on the compression (or on the bucket size) fail
 *    the first step on every rank with ADADELTA_EMISMATCH, naming the
 *    setting, and change nothing (no hang); a bad value is
 *    EINVAL and a change after the first step ESTATE, changing nothing. */
#include "mpi_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Gradient scales per variable: float16's subnormals (below 6.1e-5) for
 * conv/kernel, a few hundred for dense/kernel. */
static const float scale_of[NV] = {300.0f, 1.0f, 1e-5f, 1.0f};

static float gradient(int r, int k, int v, int64_t i)
{
    float g = grad(r, k, v, i) * scale_of[v];
    if (i % 97 == 5) /* an exact tie between two bfloat16 values */
        g = 1.0f + 1.0f / 256.0f;
    if (i % 89 == 3) /* an exact tie between two float16 values */
        g = 1.0f + 1.0f / 2048.0f;
    return g;
}

/* Round to nearest, ties to even, at `bits` bits of significand with the
 * smallest exponent `emin` (subnormals below it) and no overflow here
 * (the gradients stay far from either format's largest value). */
static float round_to(float x, int bits, int emin)
{
    if (x == 0 || isnan(x))
        return x;
    int e;
    frexp((double)x, &e); /* x = f * 2^e, 0.5 <= |f| < 1 */
    if (e - 1 < emin)
        e = emin + 1;
    double quantum = ldexp(1.0, e - bits);
    double q = (double)x / quantum, lo = floor(q), rest = q - lo;
    double n = rest > 0.5 ? lo + 1 : rest < 0.5 ? lo : fmod(lo, 2.0) == 0 ? lo : lo + 1;
    return (float)(n * quantum);
}

static float round16(int kind, float x)
{
    return kind == ADADELTA_MPI_COMPRESS_BF16 ? round_to(x, 8, -126) : round_to(x, 11, -14);
}

/* The state file the compressed run must match, from the single-process
 * library with the gradients computed here. */
static int reference(const adadelta_config *cfg, int kind, int calls, const char *file)
{
    model m;
    model_init(&m);
    adadelta *c = NULL;
    int rc = adadelta_create(cfg, &c);
    for (int v = 0; v < NV && !rc; v++)
        rc = adadelta_add_variable(c, names[v], ADADELTA_F32, m.data[v], nd[v], shapes[v]) == v
                 ? 0
                 : -1;
    float *g[NV];
    for (int v = 0; v < NV; v++)
        g[v] = calloc((size_t)(m.size[v] ? m.size[v] : 1), sizeof(float));
    for (int k = 0; k < calls && !rc; k++) {
        for (int v = 0; v < NV; v++)
            for (int64_t i = 0; i < m.size[v]; i++) {
                float s = round16(kind, gradient(0, k, v, i));
                for (int r = 1; r < R; r++)
                    s += round16(kind, gradient(r, k, v, i));
                g[v][i] = round16(kind, s / (float)R);
            }
        rc = adadelta_apply(c, (const void *const *)g);
    }
    if (!rc)
        rc = adadelta_save(c, file);
    for (int v = 0; v < NV; v++)
        free(g[v]);
    adadelta_destroy(c);
    model_free(&m);
    return rc;
}

/* The compressed run: `calls` steps, blocking or overlapped (the variables
 * reported last first), saved to file. */
static int compressed_run(const adadelta_config *cfg, int mode, int kind, int overlapped,
                          int calls, const char *file, const char **engine)
{
    model m;
    model_init(&m);
    adadelta_mpi *o = make(cfg, (adadelta_mpi_mode)mode, &m);
    int rc = o ? adadelta_mpi_set_compression(o, (adadelta_mpi_compression)kind) : -1;
    if (!rc && overlapped)
        rc = adadelta_mpi_set_bucket_bytes(o, 4096);
    float *g[NV];
    for (int v = 0; v < NV; v++)
        g[v] = calloc((size_t)(m.size[v] ? m.size[v] : 1), sizeof(float));
    for (int k = 0; k < calls && !rc; k++) {
        for (int v = 0; v < NV; v++)
            for (int64_t i = 0; i < m.size[v]; i++)
                g[v][i] = gradient(me, k, v, i);
        if (!overlapped) {
            rc = adadelta_mpi_apply(o, (const void *const *)g);
            continue;
        }
        rc = adadelta_mpi_begin_step(o);
        for (int v = NV - 1; v >= 0 && !rc; v--)
            rc = adadelta_mpi_grad_ready(o, v, g[v]);
        int end = adadelta_mpi_end_step(o);
        rc = rc ? rc : end;
    }
    if (!rc)
        rc = adadelta_mpi_save(o, file);
    *engine = adadelta_mpi_engine(o); /* a static name, "none" without o */
    for (int v = 0; v < NV; v++)
        free(g[v]);
    adadelta_mpi_destroy(o);
    model_free(&m);
    return rc;
}

static void test_compressed_equals_reference(void **state)
{
    (void)state;
    char halves[16];
    snprintf(halves, sizeof halves, "%d", (R + 1) / 2);
    const engine_env envs[] = {
        {"1", NULL, NULL, R > 1 ? "shm" : "p2p"},
        {"0", NULL, NULL, "p2p"},
        {"0", "1000", NULL, "p2p"},
        {"1", NULL, halves, R > 1 ? "hier" : "p2p"},
        {"1", "1000", "1", R > 1 ? "hier" : "p2p"},
    };
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 0.5);
    cfg.weight_decay = 0.01;
    for (int kind = ADADELTA_MPI_COMPRESS_BF16; kind <= ADADELTA_MPI_COMPRESS_F16; kind++) {
        char *ref = strdup(path_of("reference.st"));
        AGREE(reference(&cfg, kind, 3, ref) == 0);
        for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++)
            for (int mode = 0; mode < 2; mode++) {
                engine_env_begin(&envs[e]);
                const char *engine = "";
                const char *file = path_of("compressed.st");
                AGREE(compressed_run(&cfg, mode, kind, (int)(e % 2), 3, file, &engine) == 0);
                if (strcmp(engine, envs[e].want))
                    print_message("engine %s, expected %s\n", engine, envs[e].want);
                AGREE(!strcmp(engine, envs[e].want));
                AGREE(same_files(ref, file));
                engine_env_end();
            }
        free(ref);
    }
}

/* Uncompressed, the same run is not the reference: the test can tell. */
static void test_rounding_changes_the_result(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 0.5);
    cfg.weight_decay = 0.01;
    char *ref = strdup(path_of("reference.st"));
    AGREE(reference(&cfg, ADADELTA_MPI_COMPRESS_BF16, 3, ref) == 0);
    const char *engine;
    const char *file = path_of("plain.st");
    AGREE(compressed_run(&cfg, 0, ADADELTA_MPI_COMPRESS_NONE, 0, 3, file, &engine) == 0);
    AGREE(!same_files(ref, file));
    free(ref);
}

/* A setting that differs on one rank: the first step fails on every rank
 * with EMISMATCH naming `words`, and no variable changes. */
static void disagree(int (*set)(adadelta_mpi *o), const char *words)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make(&cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    AGREE(set(o) == 0);
    float before0 = m.data[0][0], before2 = m.data[2][3];
    int rc = run(o, &m, 0, 1, 0);
    AGREE(R == 1 || rc == ADADELTA_EMISMATCH);
    AGREE(R == 1 || strstr(adadelta_mpi_last_error(), words) != NULL);
    AGREE(R == 1 || (m.data[0][0] == before0 && m.data[2][3] == before2));
    adadelta_mpi_destroy(o);
    model_free(&m);
}

static int last_rank_f16(adadelta_mpi *o)
{
    return adadelta_mpi_set_compression(o, me == R - 1 ? ADADELTA_MPI_COMPRESS_F16
                                                       : ADADELTA_MPI_COMPRESS_BF16);
}

static int rank0_small_buckets(adadelta_mpi *o)
{
    return adadelta_mpi_set_bucket_bytes(o, me == 0 ? 4096 : 1 << 20);
}

static void test_ranks_disagree(void **state)
{
    (void)state;
    disagree(last_rank_f16, "compression");
}

static void test_ranks_disagree_on_buckets(void **state)
{
    (void)state;
    disagree(rank0_small_buckets, "bucket bytes");
}

static void test_bad_values(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    model m;
    model_init(&m);
    adadelta_mpi *o = make(&cfg, ADADELTA_MPI_REPLICATED, &m);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_set_compression(o, (adadelta_mpi_compression)7) == ADADELTA_EINVAL);
    AGREE(strstr(adadelta_mpi_last_error(), "7") != NULL);
    AGREE(adadelta_mpi_set_compression(NULL, ADADELTA_MPI_COMPRESS_BF16) == ADADELTA_EINVAL);
    AGREE(run(o, &m, 0, 1, 0) == 0);
    AGREE(adadelta_mpi_set_compression(o, ADADELTA_MPI_COMPRESS_BF16) == ADADELTA_ESTATE);
    /* still uncompressed: the next step runs as before */
    AGREE(run(o, &m, 1, 2, 0) == 0);
    adadelta_mpi_destroy(o);
    model_free(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compressed_equals_reference),
        cmocka_unit_test(test_rounding_changes_the_result),
        cmocka_unit_test(test_ranks_disagree),
        cmocka_unit_test(test_ranks_disagree_on_buckets),
        cmocka_unit_test(test_bad_values),
    };
    return RUN_MPI_TESTS(argc, argv, tests);
}
