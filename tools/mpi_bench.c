/* mpi_bench.c - adadelta-mpi-bench: a data-parallel step against a bare
 * MPI_Allreduce of the same bytes.
 *
 *   mpirun -np R adadelta-mpi-bench [--min-log2 A] [--max-log2 B]
 *       [--elements N] [--tensors T] [--threads P] [--steps S] [--warmup W]
 *       [--mode replicated|sharded|both] [--features plain|weight_decay|
 *       global_clipnorm|ema|all]
 *
 * For each size (N = 2^A ... 2^B elements per tensor, or the one --elements
 * N) and each mode, rank 0 prints one JSON line with
 *   step_seconds       median over S steps of adadelta_mpi_apply (each step
 *                      timed between barriers; the slowest rank counts)
 *   allreduce_seconds  median over S calls of MPI_Allreduce (float32 sum) of
 *                      the same T*N floats in one buffer, timed the same way
 *   ratio              step_seconds / allreduce_seconds
 *   update_seconds     median of adadelta_apply of the core library alone on
 *                      the same variables, same threads, on one rank
 *   model_seconds      update_seconds / (R if sharded else 1)
 *                      + allreduce_seconds
 * Gradients differ between ranks (each rank's own data); variables start the
 * same on every rank, as the layer requires.
 */
#define _POSIX_C_SOURCE 200809L

#include <adadelta_mpi.h>

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

typedef struct {
    int min_log2, max_log2;
    int64_t elements; /* 0: use the log2 range */
    int64_t tensors;
    int threads;
    int steps; /* 0: by size */
    int warmup;
    int modes; /* bit 0 replicated, bit 1 sharded */
    const char *features;
    int bits;
} options;

static int rank, nranks;

static void fail(const char *fmt, const char *arg)
{
    if (rank == 0) {
        fprintf(stderr, "adadelta-mpi-bench: ");
        fprintf(stderr, fmt, arg);
        fputc('\n', stderr);
    }
    MPI_Finalize();
    exit(2);
}

static void check(int status, const char *what)
{
    if (status < 0) {
        fprintf(stderr, "adadelta-mpi-bench: rank %d: %s: %s (%s)\n", rank,
                what, adadelta_status_name(status), adadelta_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static int64_t parse_int(const char *flag, const char *s, int64_t lo,
                         int64_t hi)
{
    int64_t v;
    if (!parse_int_in(s, lo, hi, &v))
        fail("bad value for %s", flag);
    return v;
}

/* One contiguous block of T*N floats (so the bare allreduce can use it in
 * one call), seen as T tensors. var: same on all ranks; grad: per rank. */
static float *alloc_block(int64_t total, int threads, int grad)
{
    size_t bytes = ((size_t)total * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "adadelta-mpi-bench: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    uint32_t seed = grad ? 0x85ebca6bu + 7919u * (uint32_t)rank : 0x9e3779b9u;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < total; i++) {
        float u = unit_hash((uint64_t)i, seed);
        if (grad) {
            float m = 0.001f + 0.009f * u;
            p[i] = (i & 1) ? -m : m;
        } else {
            p[i] = 2.0f * u - 1.0f;
        }
    }
    return p;
}

static void make_config(const options *o, adadelta_config *cfg)
{
    adadelta_config_default(cfg);
    adadelta_lr_constant(&cfg->learning_rate, 1.0);
    cfg->rho = 0.95;
    cfg->epsilon = 1e-7;
    if (o->bits & FEAT_WD)
        cfg->weight_decay = 0.01;
    if (o->bits & FEAT_CLIP)
        cfg->global_clipnorm = 1.0;
    if (o->bits & FEAT_EMA)
        cfg->use_ema = 1;
}

/* Slowest rank's time of each sample. */
static void max_over_ranks(double *t, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, t, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

static double time_allreduce(const options *o, int64_t total, int steps,
                             double *samples)
{
    float *src = alloc_block(total, o->threads, 1);
    float *dst = alloc_block(total, o->threads, 1);
    for (int s = -o->warmup; s < steps; s++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int64_t off = 0; off < total; off += INT_MAX / 2) {
            int64_t cnt = total - off < INT_MAX / 2 ? total - off : INT_MAX / 2;
            MPI_Allreduce(src + off, dst + off, (int)cnt, MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
        }
        double dt = MPI_Wtime() - t0;
        if (s >= 0)
            samples[s] = dt;
    }
    max_over_ranks(samples, steps);
    free(src);
    free(dst);
    return median(samples, steps);
}

/* T tensors of n elements each in one variable block and one gradient
 * block; g[k] points to tensor k's gradient. */
typedef struct {
    float *var, *grad;
    const float **g;
} tensors;

static tensors make_tensors(const options *o, int64_t n)
{
    int64_t total = n * o->tensors;
    tensors t = {alloc_block(total, o->threads, 0), alloc_block(total, o->threads, 1),
                 malloc((size_t)o->tensors * sizeof *t.g)};
    if (!t.g)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (int64_t k = 0; k < o->tensors; k++)
        t.g[k] = t.grad + k * n;
    return t;
}

static void free_tensors(tensors *t)
{
    free(t->g);
    free(t->var);
    free(t->grad);
}

static void tensor_name(char *buf, size_t n, int64_t k)
{
    snprintf(buf, n, "dense_%lld/kernel", (long long)k);
}

/* The core library alone (no MPI) on this rank. */
static double time_update(const options *o, int64_t n, int steps,
                          double *samples)
{
    adadelta_config cfg;
    make_config(o, &cfg);
    adadelta *opt = NULL;
    check(adadelta_create(&cfg, &opt), "adadelta_create");
    check(adadelta_set_threads(opt, o->threads), "adadelta_set_threads");
    tensors t = make_tensors(o, n);
    int64_t shape[1] = {n};
    for (int64_t k = 0; k < o->tensors; k++) {
        char name[64];
        tensor_name(name, sizeof name, k);
        check(adadelta_add_variable(opt, name, ADADELTA_F32, t.var + k * n, 1, shape),
              "adadelta_add_variable");
    }
    for (int s = -o->warmup; s < steps; s++) {
        double t0 = omp_get_wtime();
        check(adadelta_apply(opt, t.g), "adadelta_apply");
        double dt = omp_get_wtime() - t0;
        if (s >= 0)
            samples[s] = dt;
    }
    adadelta_destroy(opt);
    free_tensors(&t);
    max_over_ranks(samples, steps);
    return median(samples, steps);
}

static double time_step(const options *o, int64_t n, int steps,
                        adadelta_mpi_mode mode, double *samples,
                        size_t *state_bytes)
{
    adadelta_config cfg;
    make_config(o, &cfg);
    adadelta_mpi *opt = NULL;
    check(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, mode, &opt),
          "adadelta_mpi_create");
    check(adadelta_mpi_set_threads(opt, o->threads), "adadelta_mpi_set_threads");
    tensors t = make_tensors(o, n);
    int64_t shape[1] = {n};
    for (int64_t k = 0; k < o->tensors; k++) {
        char name[64];
        tensor_name(name, sizeof name, k);
        check(adadelta_mpi_add_variable(opt, name, ADADELTA_F32, t.var + k * n, 1, shape),
              "adadelta_mpi_add_variable");
    }
    check(adadelta_mpi_check_agreement(opt), "adadelta_mpi_check_agreement");
    for (int s = -o->warmup; s < steps; s++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        check(adadelta_mpi_apply(opt, t.g), "adadelta_mpi_apply");
        double dt = MPI_Wtime() - t0;
        if (s >= 0)
            samples[s] = dt;
    }
    *state_bytes = adadelta_mpi_state_bytes(opt);
    adadelta_mpi_destroy(opt);
    free_tensors(&t);
    max_over_ranks(samples, steps);
    return median(samples, steps);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    options o = {10, 25, 0, 1, 1, 0, 2, 3, "plain", 0};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            if (rank == 0)
                printf("usage: mpirun -np R adadelta-mpi-bench [--min-log2 A] "
                       "[--max-log2 B] [--elements N]\n"
                       "  [--tensors T] [--threads P] [--steps S] "
                       "[--warmup W]\n"
                       "  [--mode replicated|sharded|both] [--features "
                       "plain|weight_decay|global_clipnorm|ema|all]\n");
            MPI_Finalize();
            return 0;
        }
        if (i + 1 >= argc)
            fail("missing value after %s", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--min-log2"))
            o.min_log2 = (int)parse_int(f, v, 0, 40);
        else if (!strcmp(f, "--max-log2"))
            o.max_log2 = (int)parse_int(f, v, 0, 40);
        else if (!strcmp(f, "--elements"))
            o.elements = parse_int(f, v, 1, INT64_C(1) << 40);
        else if (!strcmp(f, "--tensors"))
            o.tensors = parse_int(f, v, 1, INT64_C(1) << 24);
        else if (!strcmp(f, "--threads"))
            o.threads = (int)parse_int(f, v, 1, 4096);
        else if (!strcmp(f, "--steps"))
            o.steps = (int)parse_int(f, v, 1, 10000000);
        else if (!strcmp(f, "--warmup"))
            o.warmup = (int)parse_int(f, v, 0, 10000000);
        else if (!strcmp(f, "--mode")) {
            if (!strcmp(v, "replicated"))
                o.modes = 1;
            else if (!strcmp(v, "sharded"))
                o.modes = 2;
            else if (!strcmp(v, "both"))
                o.modes = 3;
            else
                fail("unknown --mode %s", v);
        } else if (!strcmp(f, "--features")) {
            int k = feature_index(v);
            if (k < 0)
                fail("unknown --features %s", v);
            o.features = feature_table[k].name;
            o.bits = feature_table[k].bits;
        } else
            fail("unknown option %s", f);
    }
    omp_set_num_threads(o.threads);

    int lo = o.min_log2, hi = o.max_log2;
    if (o.elements)
        lo = hi = 0;
    for (int k = lo; k <= hi; k++) {
        int64_t n = o.elements ? o.elements : (INT64_C(1) << k);
        int64_t total = n * o.tensors;
        int steps = o.steps;
        if (!steps) {
            int64_t s = (INT64_C(1) << 26) / total;
            steps = (int)(s < 10 ? 10 : s > 500 ? 500 : s);
        }
        double *samples = malloc((size_t)steps * sizeof *samples);
        if (!samples)
            MPI_Abort(MPI_COMM_WORLD, 1);
        double t_up = time_update(&o, n, steps, samples);
        double t_ar = time_allreduce(&o, total, steps, samples);
        for (int m = 0; m < 2; m++) {
            if (!(o.modes & (1 << m)))
                continue;
            size_t sb = 0;
            double t_st = time_step(&o, n, steps, (adadelta_mpi_mode)m,
                                    samples, &sb);
            double model = t_up / (m ? nranks : 1) + t_ar;
            if (rank == 0)
                printf("{\"library\":\"adadelta-mpi\",\"mode\":\"%s\","
                       "\"ranks\":%d,\"threads\":%d,\"elements\":%lld,"
                       "\"tensors\":%lld,\"features\":\"%s\",\"steps\":%d,"
                       "\"step_seconds\":%.6g,\"allreduce_seconds\":%.6g,"
                       "\"ratio\":%.4f,\"update_seconds\":%.6g,"
                       "\"model_seconds\":%.6g,\"step_over_model\":%.4f,"
                       "\"state_bytes_per_rank\":%zu}\n",
                       m ? "sharded" : "replicated", nranks, o.threads,
                       (long long)n, (long long)o.tensors, o.features, steps,
                       t_st, t_ar, t_st / t_ar, t_up, model, t_st / model, sb);
            fflush(stdout);
        }
        free(samples);
    }
    MPI_Finalize();
    return 0;
}
