/* mpi_bench.c - adadelta-mpi-bench: the data-parallel step against the
 * limits a user would compare it with, all timed in the same run in
 * alternating rounds (this VM's bandwidth drifts minute to minute).
 *
 *   mpirun -np R adadelta-mpi-bench [--min-log2 A] [--max-log2 B]
 *       [--elements N] [--tensors T] [--threads P] [--steps S] [--rounds K]
 *       [--warmup W] [--mode replicated|sharded|both]
 *       [--features plain|weight_decay|global_clipnorm|ema|all]
 *       [--layers L] [--no-overlap] [--bucket-bytes B] [--compression bf16|f16]
 *       [--dtype f32|f64|f16|bf16]
 *
 * For each size (N = 2^A ... 2^B elements per tensor, or the one N) rank 0
 * prints one JSON line per mode with
 *   step_seconds            median of adadelta_mpi_apply, gradients copied
 *                           from the caller's buffers (each step between
 *                           barriers; the slowest rank counts)
 *   step_zero_copy_seconds  the same with the gradients already written into
 *                           adadelta_mpi_gradient_buffer (as a backward pass
 *                           writing there would leave them)
 *   allreduce_seconds       a bare MPI_Allreduce (float32 sum) of the T*N
 *                           floats, timed the same way
 *   ratio                   step_seconds / allreduce_seconds (and
 *                           ratio_zero_copy)
 *   shm_limit_seconds       a bare deterministic reduction through a shared-
 *                           memory window (barrier, each rank sums its half in
 *                           rank order, barrier: the gradients written in
 *                           place, the mean read in place) of the same floats
 *   update_seconds          adadelta_apply of the core library alone, same
 *                           variables and threads, on every rank at once
 *   agreements_per_step     per-step agreements (one small collective or one
 *                           shared-memory exchange) counted by the layer
 *   engine                  "shm", "hier" or "p2p" (ADADELTA_MPI_SHM=0|1 forces)
 * With --compression bf16|f16 the replicated line also has
 *   step_compressed_seconds the replicated step (copied gradients) with the
 *                           compressed exchange, timed in the same rounds
 *   compressed_ratio        step_compressed_seconds / step_seconds
 * and one line per mode with "path":"overlap": L layers of N*T/L elements,
 * a simulated backward pass of L compute loops of known length (busy waits
 * on the clock, together 1.5 blocking steps long), once followed by one
 * apply and once through begin_step / grad_ready per layer / end_step:
 *   blocking_comm_seconds   blocking step time minus the compute
 *   exposed_comm_seconds    overlapped step time minus the compute.
 * Gradients differ between ranks; variables start the same on every rank.
 * --dtype: the variables' dtype (default f32; the lines then carry "dtype").
 * The bare allreduce and the shared-memory limit reduce what the layer does:
 * float64 values for f64, float32 ones for f32 and the 16-bit dtypes (whose
 * contributions are float32); a 16-bit variable has no zero-copy buffer, so
 * its zero-copy fields are -1.
 *
 * With --checkpoint [--elements N] [--mode ...] [--rounds K] [--dir D]
 * [--buffer-bytes B]: save and load instead (mpi_bench_checkpoint.c). */
#define _POSIX_C_SOURCE 200809L

#include <adadelta_mpi.h>

#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "mpi_bench_checkpoint.h"

typedef struct {
    int min_log2, max_log2;
    int64_t elements; /* 0: use the log2 range */
    int64_t tensors;
    int threads;
    int steps; /* 0: by size */
    int rounds, warmup;
    int modes; /* bit 0 replicated, bit 1 sharded */
    const char *features;
    int bits;
    int layers, overlap;
    int64_t bucket_bytes; /* 0: the layer's default */
    int compression;      /* adadelta_mpi_compression of the extra method */
    const char *dtype;    /* --dtype: f32, f64, f16, bf16 */
    int checkpoint;       /* --checkpoint */
    const char *dir;
    int64_t buffer_bytes;
} options;

static int rank, nranks;
/* --dtype: the variables' dtype, its element bytes, and whether the layer
 * reduces it in float64 (else float32) */
static adadelta_dtype vdtype = ADADELTA_F32;
static size_t esize = 4;
static int wide_sum;
static int has_buffer = 1; /* adadelta_mpi_gradient_buffer serves it */

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
        fprintf(stderr, "adadelta-mpi-bench: rank %d: %s: %s (%s)\n", rank, what,
                adadelta_status_name(status), adadelta_mpi_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static void *must(void *p)
{
    if (!p) {
        fprintf(stderr, "adadelta-mpi-bench: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

static int64_t parse_int(const char *flag, const char *s, int64_t lo, int64_t hi)
{
    int64_t v;
    if (!parse_int_in(s, lo, hi, &v))
        fail("bad value for %s", flag);
    return v;
}

/* x in the element type of dtype at p[i] (16-bit: rounded to nearest) */
static void put(adadelta_dtype d, void *p, int64_t i, float x)
{
    if (d == ADADELTA_F64) {
        ((double *)p)[i] = x;
    } else if (d == ADADELTA_F16) {
        _Float16 h = (_Float16)x;
        memcpy((uint16_t *)p + i, &h, 2);
    } else if (d == ADADELTA_BF16) {
        uint32_t u;
        memcpy(&u, &x, 4);
        ((uint16_t *)p)[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
        ((float *)p)[i] = x;
    }
}

static size_t dtype_bytes(adadelta_dtype d)
{
    return d == ADADELTA_F64 ? 8 : d == ADADELTA_F32 ? 4 : 2;
}

/* One block of n elements of dtype d: variables (the same on all ranks) or
 * gradients (per rank). */
static void *alloc_block_of(adadelta_dtype d, int64_t n, int threads, int grad)
{
    size_t bytes = ((size_t)n * dtype_bytes(d) + 63) & ~(size_t)63;
    void *p = must(aligned_alloc(64, bytes ? bytes : 64));
    uint32_t seed = grad ? 0x85ebca6bu + 7919u * (uint32_t)rank : 0x9e3779b9u;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; i++) {
        float u = unit_hash((uint64_t)i, seed);
        put(d, p, i, grad ? ((i & 1) ? -1.0f : 1.0f) * (0.001f + 0.009f * u) : 2.0f * u - 1.0f);
    }
    return p;
}

static void *alloc_block(int64_t n, int threads, int grad)
{
    return alloc_block_of(vdtype, n, threads, grad);
}

static void make_config(const options *o, adadelta_config *cfg)
{
    adadelta_config_default(cfg);
    adadelta_lr_constant(&cfg->learning_rate, 1.0);
    if (o->bits & FEAT_WD)
        cfg->weight_decay = 0.01;
    if (o->bits & FEAT_CLIP)
        cfg->global_clipnorm = 1.0;
    if (o->bits & FEAT_EMA)
        cfg->use_ema = 1;
}

/* ------------------------------------------------------------ the layer */

/* T tensors of n elements in one variable block and one gradient block. */
typedef struct bench_opt {
    adadelta_mpi *o;
    char *var, *grad;
    const void **g, **zc; /* per tensor: the caller's gradients, the buffers */
    int64_t n, T;
    unsigned long agreements;
    int stepped;
} bench_opt;

static void open_opt(bench_opt *b, const options *o, int64_t n, int64_t T, adadelta_mpi_mode mode,
                     int compression)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->T = T;
    adadelta_config cfg;
    make_config(o, &cfg);
    check(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, mode, &b->o), "adadelta_mpi_create");
    check(adadelta_mpi_set_threads(b->o, o->threads), "adadelta_mpi_set_threads");
    if (o->bucket_bytes)
        check(adadelta_mpi_set_bucket_bytes(b->o, o->bucket_bytes), "adadelta_mpi_set_bucket_bytes");
    check(adadelta_mpi_set_compression(b->o, (adadelta_mpi_compression)compression),
          "adadelta_mpi_set_compression");
    b->var = alloc_block(n * T, o->threads, 0);
    b->grad = alloc_block(n * T, o->threads, 1);
    b->g = must(malloc((size_t)T * sizeof *b->g));
    b->zc = must(malloc((size_t)T * sizeof *b->zc));
    int64_t shape[1] = {n};
    for (int64_t k = 0; k < T; k++) {
        char name[64];
        snprintf(name, sizeof name, "dense_%lld/kernel", (long long)k);
        check(adadelta_mpi_add_variable(b->o, name, vdtype, b->var + (size_t)(k * n) * esize, 1,
                                        shape),
              "adadelta_mpi_add_variable");
        b->g[k] = b->grad + (size_t)(k * n) * esize;
    }
    for (int64_t k = 0; k < T && has_buffer; k++)
        b->zc[k] = must(adadelta_mpi_gradient_buffer(b->o, (int)k));
}

static void close_opt(bench_opt *b)
{
    adadelta_mpi_destroy(b->o);
    free(b->var);
    free(b->grad);
    free(b->g);
    free(b->zc);
}

/* The gradients, as a backward pass would leave them in the buffers. */
static void fill_buffers(bench_opt *b)
{
    for (int64_t k = 0; k < b->T; k++)
        memcpy((void *)b->zc[k], b->g[k], (size_t)b->n * esize);
}

static double timed_step(bench_opt *b, int zero_copy)
{
    if (zero_copy)
        fill_buffers(b);
    unsigned long before = adadelta_mpi_agreements(b->o);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    check(adadelta_mpi_apply(b->o, zero_copy ? b->zc : b->g), "adadelta_mpi_apply");
    double dt = MPI_Wtime() - t0;
    b->agreements += adadelta_mpi_agreements(b->o) - before;
    b->stepped++;
    return dt;
}

/* ------------------------------------------------------------ the limits */

typedef struct limits {
    void *src, *dst;   /* the bare allreduce's (float32, or float64: wide_sum) */
    MPI_Comm node;
    MPI_Win win;
    char **seg;        /* per rank: its segment of the window */
    char *mean;        /* in rank 0's segment */
    volatile uint64_t *counter;
    uint64_t epochs;
    int shm;           /* all ranks on one node: the shm limit exists */
    int64_t n;
} limits;

static void open_limits(limits *l, int64_t n, int threads)
{
    memset(l, 0, sizeof *l);
    l->n = n;
    adadelta_dtype rt = wide_sum ? ADADELTA_F64 : ADADELTA_F32; /* the layer's reduction type */
    size_t rs = dtype_bytes(rt);
    l->src = alloc_block_of(rt, n, threads, 1);
    l->dst = alloc_block_of(rt, n, threads, 1);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &l->node);
    int nn;
    MPI_Comm_size(l->node, &nn);
    l->shm = nn == nranks;
    if (!l->shm)
        return;
    size_t floats = ((size_t)n * rs + 63) & ~(size_t)63;
    size_t mine = floats + (rank ? 0 : floats + 64);
    char *base;
    MPI_Win_allocate_shared((MPI_Aint)mine, 1, MPI_INFO_NULL, l->node, &base, &l->win);
    MPI_Win_lock_all(MPI_MODE_NOCHECK, l->win);
    l->seg = must(malloc((size_t)nranks * sizeof *l->seg));
    for (int r = 0; r < nranks; r++) {
        MPI_Aint size;
        int unit;
        void *p;
        MPI_Win_shared_query(l->win, r, &size, &unit, &p);
        l->seg[r] = p;
    }
    l->mean = l->seg[0] + floats;
    l->counter = (volatile uint64_t *)(l->mean + floats);
    if (rank == 0)
        *l->counter = 0;
    memcpy(l->seg[rank], l->src, (size_t)n * rs);
    MPI_Barrier(l->node);
}

static void close_limits(limits *l)
{
    if (l->shm) {
        MPI_Win_unlock_all(l->win);
        MPI_Win_free(&l->win);
        free(l->seg);
    }
    MPI_Comm_free(&l->node);
    free(l->src);
    free(l->dst);
}

static double timed_allreduce(limits *l)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int64_t off = 0; off < l->n; off += INT_MAX / 2) {
        int64_t cnt = l->n - off < INT_MAX / 2 ? l->n - off : INT_MAX / 2;
        size_t at = (size_t)off * (wide_sum ? 8 : 4);
        MPI_Allreduce((char *)l->src + at, (char *)l->dst + at, (int)cnt,
                      wide_sum ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    return MPI_Wtime() - t0;
}

static void spin_barrier(limits *l)
{
    l->epochs++;
    __atomic_add_fetch(l->counter, 1, __ATOMIC_RELEASE);
    uint64_t target = (uint64_t)nranks * l->epochs;
    for (int spins = 0; __atomic_load_n(l->counter, __ATOMIC_ACQUIRE) < target; spins++)
        if (spins > 16)
            sched_yield();
}

/* My half of the window summed in rank order, as the layer's float32 or
 * float64 sum. */
#define SHM_SUM(T)                                                            \
    do {                                                                      \
        T *restrict out = (T *)l->mean;                                       \
        const T fr = (T)nranks;                                               \
        for (int64_t b = lo; b < hi; b += 4096) {                             \
            int64_t e = b + 4096 < hi ? b + 4096 : hi;                        \
            const T *restrict in0 = (const T *)l->seg[0];                     \
            _Pragma("omp simd") for (int64_t i = b; i < e; i++) out[i] = in0[i]; \
            for (int r = 1; r < nranks; r++) {                                \
                const T *restrict in = (const T *)l->seg[r];                  \
                _Pragma("omp simd") for (int64_t i = b; i < e; i++) out[i] += in[i]; \
            }                                                                 \
            _Pragma("omp simd") for (int64_t i = b; i < e; i++) out[i] = out[i] / fr; \
        }                                                                     \
    } while (0)

/* The gradients already in the window, the mean left in it: barrier, my
 * half summed in rank order, barrier. */
static double timed_shm_limit(limits *l)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    spin_barrier(l);
    int64_t lo = l->n * rank / nranks, hi = l->n * (rank + 1) / nranks;
    if (wide_sum)
        SHM_SUM(double);
    else
        SHM_SUM(float);
    spin_barrier(l);
    return MPI_Wtime() - t0;
}

/* ------------------------------------------------------------ timing */

/* The slowest rank's time of each sample, then the median. */
static double median_over_ranks(double *t, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, t, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return median(t, n);
}

/* The core library alone (no MPI) on this rank, all ranks at once. */
static double time_update(const options *o, int64_t n, int steps)
{
    adadelta_config cfg;
    make_config(o, &cfg);
    adadelta *opt = NULL;
    check(adadelta_create(&cfg, &opt), "adadelta_create");
    check(adadelta_set_threads(opt, o->threads), "adadelta_set_threads");
    char *var = alloc_block(n * o->tensors, o->threads, 0);
    char *grad = alloc_block(n * o->tensors, o->threads, 1);
    const void **g = must(malloc((size_t)o->tensors * sizeof *g));
    int64_t shape[1] = {n};
    for (int64_t k = 0; k < o->tensors; k++) {
        char name[64];
        snprintf(name, sizeof name, "dense_%lld/kernel", (long long)k);
        check(adadelta_add_variable(opt, name, vdtype, var + (size_t)(k * n) * esize, 1, shape),
              "adadelta_add_variable");
        g[k] = grad + (size_t)(k * n) * esize;
    }
    double *samples = must(malloc((size_t)steps * sizeof *samples));
    for (int s = -o->warmup; s < steps; s++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = omp_get_wtime();
        check(adadelta_apply(opt, g), "adadelta_apply");
        if (s >= 0)
            samples[s] = omp_get_wtime() - t0;
    }
    double t = median_over_ranks(samples, steps);
    adadelta_destroy(opt);
    free(var);
    free(grad);
    free(g);
    free(samples);
    return t;
}

enum {
    ALLREDUCE,
    SHM_LIMIT,
    REPLICATED,
    REPLICATED_ZC,
    SHARDED,
    SHARDED_ZC,
    COMPRESSED,
    N_METHODS
};

/* Every method's samples, in rounds that alternate the order (ABBA). */
static void time_all(const options *o, limits *l, bench_opt *opt, int steps, double *med)
{
    double *samples[N_METHODS];
    int have[N_METHODS] = {1,
                           l->shm,
                           o->modes & 1,
                           (o->modes & 1) && has_buffer,
                           o->modes & 2,
                           (o->modes & 2) && has_buffer,
                           o->compression && (o->modes & 1)};
    for (int k = 0; k < N_METHODS; k++)
        samples[k] = must(calloc((size_t)steps + 1, sizeof(double)));
    int per = steps / o->rounds > 0 ? steps / o->rounds : 1, done = 0;
    for (int r = 0; done < steps; r++) {
        int now = steps - done < per ? steps - done : per;
        for (int j = 0; j < N_METHODS; j++) {
            int k = r % 2 ? N_METHODS - 1 - j : j;
            if (!have[k])
                continue;
            bench_opt *b = k == COMPRESSED ? &opt[2] : k >= SHARDED ? &opt[1] : &opt[0];
            int zc = k == REPLICATED_ZC || k == SHARDED_ZC;
            for (int s = -1; s < now; s++) { /* one untimed step per round */
                double t = k == ALLREDUCE   ? timed_allreduce(l)
                           : k == SHM_LIMIT ? timed_shm_limit(l)
                                            : timed_step(b, zc);
                if (s >= 0)
                    samples[k][done + s] = t;
            }
        }
        done += now;
    }
    for (int k = 0; k < N_METHODS; k++) {
        med[k] = have[k] ? median_over_ranks(samples[k], steps) : -1;
        free(samples[k]);
    }
}

/* ------------------------------------------------------------ overlap */

/* Busy for `seconds` of wall clock: one layer's backward compute. */
static void compute(double seconds)
{
    double end = MPI_Wtime() + seconds;
    volatile double x = 1.0;
    while (MPI_Wtime() < end)
        for (int i = 0; i < 200; i++)
            x = x * 1.0000001 + 1e-9;
}

static double timed_backward(bench_opt *b, double per_layer, int overlapped)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (overlapped)
        check(adadelta_mpi_begin_step(b->o), "adadelta_mpi_begin_step");
    for (int64_t k = b->T - 1; k >= 0; k--) { /* the last layer first */
        compute(per_layer);
        if (overlapped)
            check(adadelta_mpi_grad_ready(b->o, (int)k, b->g[k]), "adadelta_mpi_grad_ready");
    }
    check(overlapped ? adadelta_mpi_end_step(b->o) : adadelta_mpi_apply(b->o, b->g),
          overlapped ? "adadelta_mpi_end_step" : "adadelta_mpi_apply");
    return MPI_Wtime() - t0;
}

static void print_overlap(const options *o, int64_t n, adadelta_mpi_mode mode, int steps)
{
    int L = o->layers;
    int64_t per = n * o->tensors / L;
    if (per < 1)
        return;
    bench_opt b;
    open_opt(&b, o, per, L, mode, ADADELTA_MPI_COMPRESS_NONE);
    double *s[2] = {must(calloc((size_t)steps, sizeof(double))),
                    must(calloc((size_t)steps, sizeof(double)))};
    /* the compute: 1.5 blocking steps, cut into L layers */
    for (int w = 0; w < o->warmup; w++)
        s[0][0] = timed_step(&b, 0);
    double blocking = 0;
    for (int i = 0; i < 5; i++)
        blocking += timed_step(&b, 0) / 5;
    MPI_Allreduce(MPI_IN_PLACE, &blocking, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    double per_layer = 1.5 * blocking / L;
    for (int i = 0; i < steps; i++)
        for (int j = 0; j < 2; j++) {
            int k = i % 2 ? 1 - j : j;
            s[k][i] = timed_backward(&b, per_layer, k);
        }
    double tb = median_over_ranks(s[0], steps), to = median_over_ranks(s[1], steps);
    double compute_s = per_layer * L;
    if (rank == 0)
        printf("{\"library\":\"adadelta-mpi\",\"path\":\"overlap\",\"mode\":\"%s\",\"ranks\":%d,"
               "\"threads\":%d,\"elements\":%lld,\"layers\":%d,\"engine\":\"%s\","
               "\"bucket_bytes\":%lld,\"compute_seconds\":%.6g,\"blocking_step_seconds\":%.6g,"
               "\"overlapped_step_seconds\":%.6g,\"blocking_comm_seconds\":%.6g,"
               "\"exposed_comm_seconds\":%.6g,\"exposed_fraction\":%.4f}\n",
               mode ? "sharded" : "replicated", nranks, o->threads, (long long)(per * L), L,
               adadelta_mpi_engine(b.o), (long long)o->bucket_bytes, compute_s, tb, to, tb - compute_s, to - compute_s,
               (to - compute_s) / (tb - compute_s));
    fflush(stdout);
    free(s[0]);
    free(s[1]);
    close_opt(&b);
}

/* ------------------------------------------------------------ main */

static void print_step(const options *o, int64_t n, int m, const double *med, double t_up,
                       bench_opt *b)
{
    double st = med[m ? SHARDED : REPLICATED], zc = med[m ? SHARDED_ZC : REPLICATED_ZC];
    double ar = med[ALLREDUCE], shm = med[SHM_LIMIT];
    printf("{\"library\":\"adadelta-mpi\",\"mode\":\"%s\",\"ranks\":%d,\"threads\":%d,"
           "\"elements\":%lld,\"tensors\":%lld,\"features\":\"%s\",\"steps\":%d,"
           "\"engine\":\"%s\",\"step_seconds\":%.6g,\"step_zero_copy_seconds\":%.6g,"
           "\"allreduce_seconds\":%.6g,\"ratio\":%.4f,\"ratio_zero_copy\":%.4f,"
           "\"shm_limit_seconds\":%.6g,\"update_seconds\":%.6g,"
           "\"agreements_per_step\":%.3f,\"state_bytes_per_rank\":%zu",
           m ? "sharded" : "replicated", nranks, o->threads, (long long)n,
           (long long)o->tensors, o->features, b->stepped, adadelta_mpi_engine(b->o), st, zc, ar,
           st / ar, zc < 0 ? -1.0 : zc / ar, shm, t_up, (double)b->agreements / b->stepped,
           adadelta_mpi_state_bytes(b->o));
    if (vdtype != ADADELTA_F32)
        printf(",\"dtype\":\"%s\"", o->dtype);
    if (!m && o->compression)
        printf(",\"compression\":\"%s\",\"step_compressed_seconds\":%.6g,"
               "\"compressed_ratio\":%.4f",
               o->compression == ADADELTA_MPI_COMPRESS_F16 ? "f16" : "bf16", med[COMPRESSED],
               med[COMPRESSED] / st);
    printf("}\n");
    fflush(stdout);
}

static void run_size(const options *o, int64_t n)
{
    int64_t total = n * o->tensors;
    int steps = o->steps;
    if (!steps) {
        int64_t s = (INT64_C(1) << 26) / total;
        steps = (int)(s < 20 ? 20 : s > 400 ? 400 : s);
    }
    double t_up = time_update(o, n, steps);
    limits l;
    open_limits(&l, total, o->threads);
    bench_opt opt[3]; /* replicated, sharded, replicated compressed */
    for (int m = 0; m < 3; m++)
        if (m < 2 ? o->modes & (1 << m) : o->compression && (o->modes & 1)) {
            open_opt(&opt[m], o, n, o->tensors, (adadelta_mpi_mode)(m == 1),
                     m == 2 ? o->compression : ADADELTA_MPI_COMPRESS_NONE);
            for (int w = 0; w < o->warmup; w++)
                timed_step(&opt[m], 0);
            opt[m].agreements = 0;
            opt[m].stepped = 0;
        }
    double med[N_METHODS];
    time_all(o, &l, opt, steps, med);
    for (int m = 0; m < 2; m++)
        if (o->modes & (1 << m)) {
            if (rank == 0)
                print_step(o, n, m, med, t_up, &opt[m]);
            close_opt(&opt[m]);
        }
    if (o->compression && (o->modes & 1))
        close_opt(&opt[2]);
    close_limits(&l);
    if (o->overlap)
        for (int m = 0; m < 2; m++)
            if (o->modes & (1 << m))
                print_overlap(o, n, (adadelta_mpi_mode)m, steps < 40 ? steps : 40);
}

static void usage(void)
{
    if (rank == 0)
        printf("usage: mpirun -np R adadelta-mpi-bench [--min-log2 A] [--max-log2 B] "
               "[--elements N]\n"
               "  [--tensors T] [--threads P] [--steps S] [--rounds K] [--warmup W]\n"
               "  [--mode replicated|sharded|both] [--features "
               "plain|weight_decay|global_clipnorm|ema|all]\n"
               "  [--layers L] [--no-overlap] [--bucket-bytes B] [--compression bf16|f16]\n"
               "  [--dtype f32|f64|f16|bf16]\n"
               "       mpirun -np R adadelta-mpi-bench --checkpoint [--elements N] "
               "[--mode ...] [--rounds K]\n"
               "  [--dir D] [--buffer-bytes B]\n");
}

static void parse(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage();
            MPI_Finalize();
            exit(0);
        }
        if (!strcmp(f, "--version")) {
            if (rank == 0)
                printf("adadelta-mpi-bench %s (kernel %s)\n", adadelta_version_string(),
                       adadelta_kernel());
            MPI_Finalize();
            exit(0);
        }
        if (!strcmp(f, "--no-overlap")) {
            o->overlap = 0;
            continue;
        }
        if (!strcmp(f, "--checkpoint")) {
            o->checkpoint = 1;
            continue;
        }
        if (i + 1 >= argc)
            fail("missing value after %s", f);
        const char *v = argv[++i];
        if (!strcmp(f, "--min-log2"))
            o->min_log2 = (int)parse_int(f, v, 0, 40);
        else if (!strcmp(f, "--max-log2"))
            o->max_log2 = (int)parse_int(f, v, 0, 40);
        else if (!strcmp(f, "--elements"))
            o->elements = parse_int(f, v, 1, INT64_C(1) << 40);
        else if (!strcmp(f, "--tensors"))
            o->tensors = parse_int(f, v, 1, INT64_C(1) << 24);
        else if (!strcmp(f, "--threads"))
            o->threads = (int)parse_int(f, v, 1, 4096);
        else if (!strcmp(f, "--steps"))
            o->steps = (int)parse_int(f, v, 1, 10000000);
        else if (!strcmp(f, "--rounds"))
            o->rounds = (int)parse_int(f, v, 1, 1000);
        else if (!strcmp(f, "--warmup"))
            o->warmup = (int)parse_int(f, v, 0, 10000000);
        else if (!strcmp(f, "--layers"))
            o->layers = (int)parse_int(f, v, 1, 1 << 20);
        else if (!strcmp(f, "--bucket-bytes"))
            o->bucket_bytes = parse_int(f, v, 1, INT64_C(1) << 40);
        else if (!strcmp(f, "--dtype")) {
            o->dtype = v;
            vdtype = !strcmp(v, "f32")    ? ADADELTA_F32
                     : !strcmp(v, "f64")  ? ADADELTA_F64
                     : !strcmp(v, "f16")  ? ADADELTA_F16
                     : !strcmp(v, "bf16") ? ADADELTA_BF16
                                          : (adadelta_dtype)-1;
            if ((int)vdtype < 0)
                fail("unknown --dtype %s (f32, f64, f16 or bf16)", v);
            esize = dtype_bytes(vdtype);
            wide_sum = vdtype == ADADELTA_F64;
            has_buffer = esize >= 4;
        } else if (!strcmp(f, "--compression")) {
            o->compression = !strcmp(v, "bf16") ? ADADELTA_MPI_COMPRESS_BF16
                             : !strcmp(v, "f16") ? ADADELTA_MPI_COMPRESS_F16
                                                 : -1;
            if (o->compression < 0)
                fail("unknown --compression %s (bf16 or f16)", v);
        } else if (!strcmp(f, "--dir"))
            o->dir = v;
        else if (!strcmp(f, "--buffer-bytes"))
            o->buffer_bytes = parse_int(f, v, 4096, INT64_C(1) << 30);
        else if (!strcmp(f, "--mode")) {
            o->modes = !strcmp(v, "replicated") ? 1 : !strcmp(v, "sharded") ? 2
                       : !strcmp(v, "both")     ? 3
                                                : 0;
            if (!o->modes)
                fail("unknown --mode %s", v);
        } else if (!strcmp(f, "--features")) {
            int k = feature_index(v);
            if (k < 0)
                fail("unknown --features %s", v);
            o->features = feature_table[k].name;
            o->bits = feature_table[k].bits;
        } else
            fail("unknown option %s", f);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    options o = {10, 25, 0, 1, 1, 0, 5, 3, 3, "plain", 0, 8, 1, 0, 0, "f32"};
    o.dir = ".";
    parse(argc, argv, &o);
    omp_set_num_threads(o.threads);
    if (o.checkpoint) {
        checkpoint_options c = {o.elements ? o.elements : INT64_C(1) << 24, o.modes, o.rounds,
                                o.dir, o.buffer_bytes};
        run_checkpoint_bench(&c, rank, nranks);
        MPI_Finalize();
        return 0;
    }
    int lo = o.elements ? 0 : o.min_log2, hi = o.elements ? 0 : o.max_log2;
    for (int k = lo; k <= hi; k++)
        run_size(&o, o.elements ? o.elements : (INT64_C(1) << k));
    MPI_Finalize();
    return 0;
}
