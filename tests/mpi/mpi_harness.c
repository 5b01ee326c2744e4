/* mpi_harness.c - see mpi_harness.h. */
#include "mpi_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int R, me;
static char tmpdir[256];

/* The same verdict on every rank before cmocka sees it. */
int all_true(int local)
{
    int l = local != 0, g = 0;
    MPI_Allreduce(&l, &g, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return g;
}

/* --------------------------------------------------------------- model */

const int nd[NV] = {2, 1, 2, 0};
const int64_t shapes[NV][2] = {{200, 200}, {7, 0}, {10, 100}, {0, 0}};
const char *const names[NV] = {"dense/kernel", "dense/bias", "conv/kernel", "scale"};


float hashf(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    uint32_t h = 2166136261u;
    uint32_t in[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        h ^= in[i];
        h *= 16777619u;
        h ^= h >> 15;
    }
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return (float)((int32_t)(h & 0xffffff) - 0x800000) / (float)0x800000; /* [-1, 1) */
}

void model_init(model *m)
{
    for (int v = 0; v < NV; v++) {
        int64_t n = 1;
        for (int d = 0; d < nd[v]; d++)
            n *= shapes[v][d];
        m->size[v] = n;
        m->data[v] = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            m->data[v][i] = 0.5f * hashf(7, (uint32_t)v, (uint32_t)i, 99);
    }
}

void model_free(model *m)
{
    for (int v = 0; v < NV; v++)
        free(m->data[v]);
}

/* Rank r's gradient of call k. */
float grad(int r, int k, int v, int64_t i)
{
    return hashf((uint32_t)r, (uint32_t)k, (uint32_t)v, (uint32_t)i);
}


adadelta_mpi *make_on(MPI_Comm comm, const adadelta_config *cfg, adadelta_mpi_mode mode,
                      model *m)
{
    adadelta_mpi *o = NULL;
    if (adadelta_mpi_create(comm, cfg, mode, &o))
        return NULL;
    for (int v = 0; v < NV; v++)
        if (adadelta_mpi_add_variable(o, names[v], ADADELTA_F32, m->data[v], nd[v],
                                      shapes[v]) != v) {
            adadelta_mpi_destroy(o);
            return NULL;
        }
    return o;
}

adadelta_mpi *make(const adadelta_config *cfg, adadelta_mpi_mode mode, model *m)
{
    adadelta_mpi *o = make_on(MPI_COMM_WORLD, cfg, mode, m);
    if (o)
        adadelta_mpi_set_check_identical(o, 1);
    return o;
}

void grads_init(grads *g, const model *m)
{
    for (int v = 0; v < NV; v++)
        g->g[v] = malloc((size_t)(m->size[v] ? m->size[v] : 1) * sizeof(float));
}

void grads_fill(grads *g, const model *m, int k, int flags)
{
    for (int v = 0; v < NV; v++) {
        for (int64_t i = 0; i < m->size[v]; i++)
            g->g[v][i] = grad(me, k, v, i);
        g->gp[v] = g->g[v];
    }
    if ((flags & NONE_ODD) && k % 2)
        g->gp[1] = NULL;
    if ((flags & NONE_RANK0) && k == 0 && me == 0)
        g->gp[1] = NULL;
    if ((flags & INF_LAST) && k == 3 && me == R - 1)
        g->g[2][17] = INFINITY;
}

void grads_free(grads *g)
{
    for (int v = 0; v < NV; v++)
        free(g->g[v]);
}

int run(adadelta_mpi *o, model *m, int from, int to, int flags)
{
    grads g;
    grads_init(&g, m);
    int rc = 0;
    for (int k = from; k < to && !rc; k++) {
        grads_fill(&g, m, k, flags);
        rc = adadelta_mpi_apply(o, g.gp);
    }
    grads_free(&g);
    return rc;
}

static char *job_node_ranks; /* saved by engine_env_begin */

void engine_env_begin(const engine_env *e)
{
    const char *job = getenv("ADADELTA_MPI_NODE_RANKS");
    free(job_node_ranks);
    job_node_ranks = job ? strdup(job) : NULL;
    setenv("ADADELTA_MPI_SHM", e->shm, 1);
    if (e->chunk)
        setenv("ADADELTA_MPI_CHUNK_ELEMENTS", e->chunk, 1);
    else
        unsetenv("ADADELTA_MPI_CHUNK_ELEMENTS");
    if (e->node_ranks)
        setenv("ADADELTA_MPI_NODE_RANKS", e->node_ranks, 1);
    else
        unsetenv("ADADELTA_MPI_NODE_RANKS");
}

void engine_env_end(void)
{
    unsetenv("ADADELTA_MPI_SHM");
    unsetenv("ADADELTA_MPI_CHUNK_ELEMENTS");
    if (job_node_ranks)
        setenv("ADADELTA_MPI_NODE_RANKS", job_node_ranks, 1);
    else
        unsetenv("ADADELTA_MPI_NODE_RANKS");
    free(job_node_ranks);
    job_node_ranks = NULL;
}

char *path_of(const char *name)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
    return buf[i];
}

/* Rank 0 compares two files byte by byte; the verdict is shared. */
int same_files(const char *a, const char *b)
{
    int same = 1;
    if (me == 0) {
        FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
        same = fa && fb;
        while (same) {
            int ca = fgetc(fa), cb = fgetc(fb);
            if (ca != cb)
                same = 0;
            if (ca == EOF || cb == EOF)
                break;
        }
        if (fa)
            fclose(fa);
        if (fb)
            fclose(fb);
        if (!same)
            fprintf(stderr, "files differ: %s %s\n", a, b);
    }
    MPI_Bcast(&same, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return same;
}

/* Runs calls [0, calls) in a mode and saves the final state to `file`. */
int run_and_save(const adadelta_config *cfg, adadelta_mpi_mode mode, int calls,
                        int flags, int finalize, const char *file, float *scale_out)
{
    model m;
    model_init(&m);
    adadelta_mpi *o = make(cfg, mode, &m);
    int rc = o ? run(o, &m, 0, calls, flags) : -100;
    if (!rc && finalize)
        rc = adadelta_mpi_finalize_variable_values(o);
    if (!rc)
        rc = adadelta_mpi_save(o, file);
    if (!rc && scale_out)
        *scale_out = adadelta_dynamic_scale(adadelta_mpi_core(o));
    adadelta_mpi_destroy(o);
    model_free(&m);
    return rc;
}
int run_mpi_tests(int *argc, char ***argv, const struct CMUnitTest *tests, size_t n)
{
    MPI_Init(argc, argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (me == 0) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/adadelta_mpi_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir))
            tmpdir[0] = '\0';
    }
    MPI_Bcast(tmpdir, sizeof tmpdir, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (!tmpdir[0]) {
        if (me == 0)
            fprintf(stderr, "cannot create a temporary folder\n");
        MPI_Finalize();
        return 99;
    }
    /* Only rank 0 talks; the verdicts are the same everywhere. */
    if (me != 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            return 99;
    } else {
        setvbuf(stdout, NULL, _IONBF, 0); /* keep cmocka's lines in order */
        printf("%s: %d ranks\n", (*argv)[0], R);
    }
    int failed = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
    MPI_Finalize();
    return failed ? 1 : 0;
}
