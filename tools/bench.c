/* bench.c - adadelta-bench: speed of adadelta_apply against the memory limit.
 *
 *   adadelta-bench --elements N --tensors T --threads P --steps S
 *                  [--features plain|weight_decay|global_clipnorm|ema|all]
 *                  [--dtype f32|f64|f16|bf16] [--warmup W] [--rounds R]
 *
 * Registers T variables (float32, or float64, float16 or bfloat16 with
 * --dtype) of N elements each, gives each a fixed
 * gradient and times S calls of adadelta_apply after W warm-up calls (default
 * 3). In the same run it times S passes of a "limit" kernel: a vectorised
 * OpenMP loop over the same T x N elements with exactly the memory traffic an
 * ideal fused Adadelta step has (see bytes_per_element below), on its own
 * arrays that are allocated and first-touched the same way. The S steps of
 * each are timed in R rounds (default 5) that alternate between the two,
 * each round after one untimed step. seconds_per_step is the median of the
 * S library steps, limit_seconds_per_step that of the S limit passes, and
 * fraction_of_limit their ratio. One JSON object is printed on stdout.
 *
 * Traffic model per element (float32, every array is streamed once; twice
 * the bytes in float64: 56, 64, 72, 80; half in float16 and bfloat16: 14,
 * 16, 18, 20):
 *   plain, weight_decay   read var, grad, E[g^2], E[dx^2]; write var,
 *                         E[g^2], E[dx^2]                        28 bytes
 *   global_clipnorm       plus one read of the gradient for the norm  32
 *   ema                   plus read and write of the average          36
 *   all (the three above)                                             40
 * The limit kernel runs in the same dtype as the library (for the 16-bit
 * dtypes: integer arithmetic on their 16-bit patterns, the same traffic).
 */
#define _POSIX_C_SOURCE 200809L

#include <adadelta.h>

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&        \
    !defined(__SANITIZE_ADDRESS__)
#define BENCH_CLONES                                                          \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3",         \
                                 "default")))
#else
#define BENCH_CLONES
#endif

typedef struct {
    int64_t elements; /* per tensor */
    int64_t tensors;
    int threads;
    int steps;
    int warmup;
    int rounds; /* blocks of library and limit steps, alternated */
    const char *features;
    int bits;
    int dtype; /* --dtype: ADADELTA_F32, _F64, _F16, _BF16 */
    int f64;   /* dtype == ADADELTA_F64 */
} options;

/* ------------------------------------------------------------ helpers */

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "adadelta-bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: adadelta-bench --elements N --tensors T --threads P "
            "--steps S\n"
            "                      [--features plain|weight_decay|"
            "global_clipnorm|ema|all]\n"
            "                      [--dtype f32|f64|f16|bf16] [--warmup W] [--rounds R]\n"
            "Prints one JSON line: median seconds per step of adadelta_apply "
            "and of a\nkernel with the same memory traffic (the limit).\n");
}

static int64_t parse_int(const char *flag, const char *s, int64_t lo,
                         int64_t hi)
{
    int64_t v;
    if (!parse_int_in(s, lo, hi, &v))
        die("bad value for %s", flag);
    return v;
}

/* libgomp's schedule(static) split of [0, total) over nth threads. */
static void static_range(int64_t total, int nth, int tid, int64_t *lo,
                         int64_t *hi)
{
    int64_t q = total / nth, r = total % nth;
    *lo = tid * q + (tid < r ? tid : r);
    *hi = *lo + q + (tid < r ? 1 : 0);
}

typedef enum { FILL_ZERO, FILL_VAR, FILL_GRAD } fill_kind;

static inline float fill_value(fill_kind k, uint64_t i)
{
    switch (k) {
    case FILL_VAR:
        return 2.0f * unit_hash(i, 0x9e3779b9u) - 1.0f;
    case FILL_GRAD: {
        float u = unit_hash(i, 0x85ebca6bu);
        float m = 0.001f + 0.009f * u; /* never zero, never tiny */
        return (i & 1) ? -m : m;
    }
    default:
        return 0.0f;
    }
}

static const char *const dtype_names[] = {"f32", "f64", "f16", "bf16"};

static size_t elem_size(const options *o)
{
    return o->f64 ? sizeof(double) : o->dtype == ADADELTA_F32 ? sizeof(float) : 2;
}

/* A fill value (normal, |x| < 2) as float16 or bfloat16 bits, truncated
 * (any value of the type will do for a benchmark). */
static uint16_t to_16_bits(int dtype, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if (dtype == ADADELTA_BF16)
        return (uint16_t)(u >> 16);
    uint32_t a = u & 0x7fffffffu;
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    return a < 0x38800000u ? s : (uint16_t)(s | ((a >> 13) - (112u << 10)));
}

/* T tensors of N elements of the dtype, 64-byte aligned, first touched by
 * the thread that owns each element under a static split of the flattened
 * T*N range. */
static void **alloc_tensors(const options *o, fill_kind kind)
{
    int64_t n = o->elements, t = o->tensors;
    void **p = calloc((size_t)t, sizeof *p);
    if (!p)
        die("%s", "out of memory");
    size_t bytes = ((size_t)n * elem_size(o) + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    for (int64_t k = 0; k < t; k++) {
        p[k] = aligned_alloc(64, bytes);
        if (!p[k])
            die("%s", "out of memory");
    }
    int64_t total = n * t;
#pragma omp parallel num_threads(o->threads)
    {
        int64_t lo, hi;
        static_range(total, omp_get_num_threads(), omp_get_thread_num(), &lo,
                     &hi);
        for (int64_t g = lo; g < hi;) {
            int64_t k = g / n, off = g % n;
            int64_t len = n - off < hi - g ? n - off : hi - g;
            if (o->f64) {
                double *d = (double *)p[k] + off;
                for (int64_t j = 0; j < len; j++)
                    d[j] = fill_value(kind, (uint64_t)(g + j));
            } else if (o->dtype != ADADELTA_F32) {
                uint16_t *d = (uint16_t *)p[k] + off;
                for (int64_t j = 0; j < len; j++)
                    d[j] = to_16_bits(o->dtype, fill_value(kind, (uint64_t)(g + j)));
            } else {
                float *d = (float *)p[k] + off;
                for (int64_t j = 0; j < len; j++)
                    d[j] = fill_value(kind, (uint64_t)(g + j));
            }
            g += len;
        }
    }
    return p;
}

static void free_tensors(void **p, int64_t t)
{
    if (!p)
        return;
    for (int64_t k = 0; k < t; k++)
        free(p[k]);
    free(p);
}

/* ------------------------------------------------------- limit kernel */

/* The limit kernels of one element type T (suffix S), written once.
 * limit_update: the same streams as a fused Adadelta step: reads a (var),
 * b (grad), c, d (the two slots) and writes a, c, d in place. Cheap
 * arithmetic, no sqrt; every value stored depends on the loaded ones, so
 * nothing can be dropped. limit_update_ema: plus one more array read and
 * written (the moving average). limit_sumsq: one extra read of the
 * gradient, the sum of squares for the global norm. */
#define LIMIT_KERNELS(T, S)                                                   \
    BENCH_CLONES                                                              \
    static void limit_update_##S(T *restrict a, const T *restrict b, T *restrict c, \
                                 T *restrict d, int64_t n, T scale, T keep)   \
    {                                                                         \
        const T rho = (T)0.95, omr = (T)0.05;                                 \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                   \
        {                                                                     \
            T g = b[i] * scale;                                               \
            T dv = (T)0.5 * g;                                                \
            c[i] = rho * c[i] + omr * g * g;                                  \
            d[i] = rho * d[i] + omr * dv * dv;                                \
            a[i] = a[i] * keep - dv;                                          \
        }                                                                     \
    }                                                                         \
    BENCH_CLONES                                                              \
    static void limit_update_ema_##S(T *restrict a, const T *restrict b, T *restrict c, \
                                     T *restrict d, T *restrict e, int64_t n, T scale, \
                                     T keep)                                  \
    {                                                                         \
        const T rho = (T)0.95, omr = (T)0.05, m = (T)0.99, omm = (T)0.01;     \
        _Pragma("omp simd") for (int64_t i = 0; i < n; i++)                   \
        {                                                                     \
            T g = b[i] * scale;                                               \
            T dv = (T)0.5 * g;                                                \
            c[i] = rho * c[i] + omr * g * g;                                  \
            d[i] = rho * d[i] + omr * dv * dv;                                \
            T v = a[i] * keep - dv;                                           \
            a[i] = v;                                                         \
            e[i] = m * e[i] + omm * v;                                        \
        }                                                                     \
    }                                                                         \
    BENCH_CLONES                                                              \
    static double limit_sumsq_##S(const T *restrict b, int64_t n)             \
    {                                                                         \
        T s = 0;                                                              \
        _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < n; i++)  \
            s += b[i] * b[i];                                                 \
        return (double)s;                                                     \
    }

LIMIT_KERNELS(float, f32)
LIMIT_KERNELS(double, f64)

/* The 16-bit dtypes' limit: the same streams of 16-bit words, integer
 * arithmetic (shifts and adds) that keeps every store dependent on the
 * loads. */
BENCH_CLONES
static void limit_update_u16(uint16_t *restrict a, const uint16_t *restrict b,
                             uint16_t *restrict c, uint16_t *restrict d, uint16_t *restrict e,
                             int64_t n, int keep)
{
    if (e) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            uint16_t g = b[i], dv = (uint16_t)(g >> 1);
            c[i] = (uint16_t)((c[i] >> 1) + g);
            d[i] = (uint16_t)((d[i] >> 1) + dv);
            uint16_t v = (uint16_t)((a[i] >> keep) - dv);
            a[i] = v;
            e[i] = (uint16_t)((e[i] >> 1) + v);
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            uint16_t g = b[i], dv = (uint16_t)(g >> 1);
            c[i] = (uint16_t)((c[i] >> 1) + g);
            d[i] = (uint16_t)((d[i] >> 1) + dv);
            a[i] = (uint16_t)((a[i] >> keep) - dv);
        }
    }
}

BENCH_CLONES
static double limit_sumsq_u16(const uint16_t *restrict b, int64_t n)
{
    uint32_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += (uint32_t)b[i] >> 4;
    return (double)s;
}

/* The limit kernels on element `off` of tensors of the run's dtype. */
static double limit_sumsq(const options *o, const void *b, int64_t off, int64_t n)
{
    if (o->dtype == ADADELTA_F16 || o->dtype == ADADELTA_BF16)
        return limit_sumsq_u16((const uint16_t *)b + off, n);
    return o->f64 ? limit_sumsq_f64((const double *)b + off, n)
                  : limit_sumsq_f32((const float *)b + off, n);
}

static void limit_update(const options *o, void *a, const void *b, void *c, void *d, void *e,
                         int64_t off, int64_t n, float scale, float keep)
{
#define AT(T, p) ((T *)(p) + off)
    if (o->dtype == ADADELTA_F16 || o->dtype == ADADELTA_BF16)
        limit_update_u16(AT(uint16_t, a), AT(const uint16_t, b), AT(uint16_t, c),
                         AT(uint16_t, d), e ? AT(uint16_t, e) : NULL, n, keep != 1.0f);
    else if (o->f64 && e)
        limit_update_ema_f64(AT(double, a), AT(const double, b), AT(double, c), AT(double, d),
                             AT(double, e), n, scale, keep);
    else if (o->f64)
        limit_update_f64(AT(double, a), AT(const double, b), AT(double, c), AT(double, d), n,
                         scale, keep);
    else if (e)
        limit_update_ema_f32(AT(float, a), AT(const float, b), AT(float, c), AT(float, d),
                             AT(float, e), n, scale, keep);
    else
        limit_update_f32(AT(float, a), AT(const float, b), AT(float, c), AT(float, d), n,
                         scale, keep);
#undef AT
}

typedef struct {
    void **a, **b, **c, **d, **e; /* e only with FEAT_EMA */
    double *partial;               /* one padded slot per thread */
} limit_arrays;

static void limit_step(const options *o, limit_arrays *L)
{
    const int64_t n = o->elements, total = o->elements * o->tensors;
    const int bits = o->bits;
    const float keep = (bits & FEAT_WD) ? 1.0f - 0.01f : 1.0f;
#pragma omp parallel num_threads(o->threads)
    {
        int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t lo, hi;
        static_range(total, nth, tid, &lo, &hi);
        float scale = 1.0f;
        if (bits & FEAT_CLIP) {
            double s = 0.0;
            for (int64_t g = lo; g < hi;) {
                int64_t k = g / n, off = g % n;
                int64_t len = n - off < hi - g ? n - off : hi - g;
                s += limit_sumsq(o, L->b[k], off, len);
                g += len;
            }
            L->partial[tid * 8] = s;
#pragma omp barrier
            double t = 0.0;
            for (int i = 0; i < nth; i++)
                t += L->partial[i * 8];
            double norm = sqrt(t);
            scale = norm > 1.0 ? (float)(1.0 / norm) : 1.0f;
        }
        for (int64_t g = lo; g < hi;) {
            int64_t k = g / n, off = g % n;
            int64_t len = n - off < hi - g ? n - off : hi - g;
            limit_update(o, L->a[k], L->b[k], L->c[k], L->d[k],
                         (bits & FEAT_EMA) ? L->e[k] : NULL, off, len, scale, keep);
            g += len;
        }
    }
}

static void limit_setup(const options *o, limit_arrays *L)
{
    memset(L, 0, sizeof *L);
    L->a = alloc_tensors(o, FILL_VAR);
    L->b = alloc_tensors(o, FILL_GRAD);
    L->c = alloc_tensors(o, FILL_ZERO);
    L->d = alloc_tensors(o, FILL_ZERO);
    if (o->bits & FEAT_EMA)
        L->e = alloc_tensors(o, FILL_VAR);
    L->partial = calloc((size_t)o->threads * 8, sizeof(double));
    if (!L->partial)
        die("%s", "out of memory");
}

static void limit_teardown(const options *o, limit_arrays *L)
{
    /* Keep the results observable. */
    volatile unsigned char sink = *(unsigned char *)L->a[0] + *(unsigned char *)L->c[o->tensors - 1];
    (void)sink;
    free_tensors(L->a, o->tensors);
    free_tensors(L->b, o->tensors);
    free_tensors(L->c, o->tensors);
    free_tensors(L->d, o->tensors);
    free_tensors(L->e, o->tensors);
    free(L->partial);
}

/* ------------------------------------------------------------ library */

static void check(int status, const char *what)
{
    if (status < 0) {
        fprintf(stderr, "adadelta-bench: %s: %s (%s)\n", what,
                adadelta_status_name(status), adadelta_last_error());
        exit(1);
    }
}

typedef struct {
    adadelta *opt;
    void **var, **grad;
} library_state;

static void library_setup(const options *o, library_state *S)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.rho = 0.95;
    cfg.epsilon = 1e-7;
    if (o->bits & FEAT_WD)
        cfg.weight_decay = 0.01;
    if (o->bits & FEAT_CLIP)
        cfg.global_clipnorm = 1.0;
    if (o->bits & FEAT_EMA)
        cfg.use_ema = 1;

    S->opt = NULL;
    check(adadelta_create(&cfg, &S->opt), "adadelta_create");
    check(adadelta_set_threads(S->opt, o->threads), "adadelta_set_threads");
    S->var = alloc_tensors(o, FILL_VAR);
    S->grad = alloc_tensors(o, FILL_GRAD);
    int64_t shape[1] = {o->elements};
    for (int64_t k = 0; k < o->tensors; k++) {
        char name[64];
        snprintf(name, sizeof name, "dense_%lld/kernel", (long long)k);
        check(adadelta_add_variable(S->opt, name, (adadelta_dtype)o->dtype,
                                    S->var[k], 1, shape),
              "adadelta_add_variable");
    }
}

static void library_step(library_state *S)
{
    check(adadelta_apply(S->opt, (const void *const *)S->grad),
          "adadelta_apply");
}

static void library_teardown(const options *o, library_state *S)
{
    int64_t end = o->elements - 1;
    int finite;
    if (o->dtype == ADADELTA_F16 || o->dtype == ADADELTA_BF16) {
        uint16_t inf = o->dtype == ADADELTA_F16 ? 0x7c00 : 0x7f80;
        uint16_t first = ((uint16_t *)S->var[0])[0], last = ((uint16_t *)S->var[o->tensors - 1])[end];
        finite = (first & inf) != inf && (last & inf) != inf;
    } else {
        double first = o->f64 ? ((double *)S->var[0])[0] : ((float *)S->var[0])[0];
        double last = o->f64 ? ((double *)S->var[o->tensors - 1])[end]
                             : ((float *)S->var[o->tensors - 1])[end];
        finite = isfinite(first) && isfinite(last);
    }
    if (!finite)
        fprintf(stderr, "adadelta-bench: warning: non-finite variable after "
                        "the timed steps\n");
    adadelta_destroy(S->opt);
    free_tensors(S->var, o->tensors);
    free_tensors(S->grad, o->tensors);
}

/* Timed steps of one kind, after one untimed step that brings its data back
 * into the caches the other kind may have taken. */
static void library_block(library_state *S, int count, double *out)
{
    library_step(S);
    for (int s = 0; s < count; s++) {
        double t0 = omp_get_wtime();
        library_step(S);
        out[s] = omp_get_wtime() - t0;
    }
}

static void limit_block(const options *o, limit_arrays *L, int count,
                        double *out)
{
    limit_step(o, L);
    for (int s = 0; s < count; s++) {
        double t0 = omp_get_wtime();
        limit_step(o, L);
        out[s] = omp_get_wtime() - t0;
    }
}

/* --------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    options o = {1 << 20, 1, 0, 20, 3, 0, "plain", 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(f, "--version")) {
            printf("adadelta-bench %s (kernel %s)\n", adadelta_version_string(), adadelta_kernel());
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            die("missing value after %s", f);
        }
        const char *v = argv[++i];
        if (!strcmp(f, "--elements"))
            o.elements = parse_int(f, v, 1, INT64_C(1) << 40);
        else if (!strcmp(f, "--tensors"))
            o.tensors = parse_int(f, v, 1, INT64_C(1) << 24);
        else if (!strcmp(f, "--threads"))
            o.threads = (int)parse_int(f, v, 1, 4096);
        else if (!strcmp(f, "--steps"))
            o.steps = (int)parse_int(f, v, 1, 10000000);
        else if (!strcmp(f, "--warmup"))
            o.warmup = (int)parse_int(f, v, 0, 10000000);
        else if (!strcmp(f, "--rounds"))
            o.rounds = (int)parse_int(f, v, 1, 10000000);
        else if (!strcmp(f, "--dtype")) {
            o.dtype = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(v, dtype_names[k]))
                    o.dtype = k;
            if (o.dtype < 0)
                die("--dtype %s is not f32, f64, f16 or bf16", v);
            o.f64 = o.dtype == ADADELTA_F64;
        } else if (!strcmp(f, "--features")) {
            int k = feature_index(v);
            if (k < 0)
                die("unknown --features %s", v);
            o.features = feature_table[k].name;
            o.bits = feature_table[k].bits;
        } else {
            usage(stderr);
            die("unknown option %s", f);
        }
    }
    if (o.threads == 0)
        o.threads = omp_get_max_threads();
    if (o.elements > INT64_MAX / o.tensors)
        die("%s", "--elements x --tensors is too large");
    omp_set_num_threads(o.threads);

    double *lib = malloc((size_t)o.steps * sizeof *lib);
    double *lim = malloc((size_t)o.steps * sizeof *lim);
    if (!lib || !lim)
        die("%s", "out of memory");

    if (o.rounds == 0)
        o.rounds = o.steps < 5 ? o.steps : 5;
    if (o.rounds > o.steps)
        o.rounds = o.steps;

    /* Both sets of arrays live at once; the steps are timed in rounds that
     * alternate (ABBA) between the library and the limit kernel, so a
     * disturbance from another process hits both alike. */
    library_state S;
    limit_arrays L;
    library_setup(&o, &S);
    limit_setup(&o, &L);
    for (int s = 0; s < o.warmup; s++)
        library_step(&S);
    for (int s = 0; s < o.warmup; s++)
        limit_step(&o, &L);
    int done = 0;
    for (int r = 0; r < o.rounds; r++) {
        int count = o.steps / o.rounds + (r < o.steps % o.rounds ? 1 : 0);
        if (r % 2 == 0) {
            library_block(&S, count, lib + done);
            limit_block(&o, &L, count, lim + done);
        } else {
            limit_block(&o, &L, count, lim + done);
            library_block(&S, count, lib + done);
        }
        done += count;
    }
    library_teardown(&o, &S);
    limit_teardown(&o, &L);
    double t_lib = median(lib, o.steps);
    double t_lim = median(lim, o.steps);

    int bpe = (28 + ((o.bits & FEAT_CLIP) ? 4 : 0) + ((o.bits & FEAT_EMA) ? 8 : 0)) *
              (int)elem_size(&o) / (int)sizeof(float);
    double total = (double)o.elements * (double)o.tensors;
    double eps_lib = total / t_lib, eps_lim = total / t_lim;
    printf("{\"library\":\"adadelta\",\"elements\":%lld,\"tensors\":%lld,"
           "\"threads\":%d,\"features\":\"%s\",\"steps\":%d,\"rounds\":%d,"
           "\"seconds_per_step\":%.6g,\"elements_per_second\":%.6g,"
           "\"limit_seconds_per_step\":%.6g,"
           "\"limit_elements_per_second\":%.6g,\"fraction_of_limit\":%.4f,"
           "\"bytes_per_element\":%d,\"limit_bytes_per_second\":%.6g,"
           "\"dtype\":\"%s\",\"version\":\"%s\",\"kernel\":\"%s\"}\n",
           (long long)o.elements, (long long)o.tensors, o.threads, o.features,
           o.steps, o.rounds, t_lib, eps_lib, t_lim, eps_lim, eps_lib / eps_lim, bpe,
           eps_lim * bpe, dtype_names[o.dtype], adadelta_version_string(), adadelta_kernel());
    fflush(stdout);
    free(lib);
    free(lim);
    return 0;
}
