/* train_digits.c - a 64-128-10 MLP for the UCI handwritten digits, trained
 * with libadadelta (Keras's Adadelta in C).
 *
 * Reads top to bottom: options, a small PRNG, the data loader, the model
 * (forward and backward written out by hand, parallel with OpenMP), the glue
 * to the optimizer, and main, which prints one line per epoch.
 *
 * One source, two programs:
 *   train_digits       one process;
 *   train_digits_mpi   built with -DADADELTA_EXAMPLE_MPI: data parallel over
 *                      MPI ranks. Every rank holds the whole model and data,
 *                      takes its slice of each global batch, and
 *                      adadelta_mpi_apply averages the ranks' gradients. The
 *                      global batch, and so the training, stays the same.
 *
 * Run, from the build directory:
 *   examples/train_digits [--epochs 50 --lr 1.0 --schedule cosine ...]
 *   mpirun -np 2 examples/train_digits_mpi [--mode sharded]
 * (--help lists the options). A run saved with --checkpoint FILE continues
 * with --resume FILE and the same options, batch for batch as if it had not
 * stopped.
 *
 * reference: keras.Sequential([Dense(128, activation="relu"), Dense(10)])
 * compiled with SparseCategoricalCrossentropy(from_logits=True) and
 * keras.optimizers.Adadelta. Dense kernels are (inputs, units) and
 * Glorot-uniform initialised, biases start at zero, as in Keras.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef ADADELTA_EXAMPLE_MPI
#include <adadelta_mpi.h>
#define PROGRAM "train_digits_mpi"
#else
#include <adadelta.h>
#define PROGRAM "train_digits"
#endif

#ifndef DIGITS_DEFAULT_PATH
#define DIGITS_DEFAULT_PATH "examples/data/digits.csv.gz"
#endif

enum { N_IN = 64, N_HIDDEN = 128, N_OUT = 10, N_TEST = 360 };

/* ------------------------------------------------------------ processes */

static int rank = 0, nranks = 1;

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout); /* so the message follows the progress lines */
    /* one write per message, so the ranks' messages do not interleave */
    if (nranks > 1)
        fprintf(stderr, PROGRAM " (rank %d): %s\n", rank, msg);
    else
        fprintf(stderr, PROGRAM ": %s\n", msg);
#ifdef ADADELTA_EXAMPLE_MPI
    MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    exit(1);
}

/* Every libadadelta call that can fail is checked here; `what` names the
 * call, printf-style. */
__attribute__((format(printf, 2, 3)))
static void check(int status, const char *what, ...)
{
    if (status >= 0)
        return;
    char call[512];
    va_list ap;
    va_start(ap, what);
    vsnprintf(call, sizeof call, what, ap);
    va_end(ap);
    const char *msg = adadelta_last_error();
    if (msg == NULL || msg[0] == '\0')
        msg = adadelta_strerror(status);
    fail("%s failed: %s: %s", call, adadelta_status_name(status), msg);
}

/* Adds v[0..n) over the ranks, in place (nothing to do on one process). */
static void sum_over_ranks(double *v, int n)
{
#ifdef ADADELTA_EXAMPLE_MPI
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)v;
    (void)n;
#endif
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* -------------------------------------------------------------- options */

typedef struct {
    int epochs;
    int batch;
    double lr;
    const char *schedule; /* cosine | exponential | none */
    double global_clipnorm; /* ADADELTA_UNSET: off */
    double weight_decay;    /* ADADELTA_UNSET: off */
    double ema;             /* ADADELTA_UNSET: off, else the EMA momentum */
    int threads;            /* 0: OpenMP's default */
    const char *checkpoint;
    const char *resume;
    const char *data;
    const char *mode; /* replicated | sharded (MPI only) */
    int overlap;      /* MPI: grad_ready per layer as backward produces it */
    uint64_t seed;
} options;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: " PROGRAM " [options]\n"
        "  --epochs N             epochs to train (default 50)\n"
        "  --batch N              global batch size (default 32)\n"
        "  --lr X                 Adadelta learning rate (default 1.0)\n"
        "  --schedule S           cosine | exponential (x0.95 per epoch) | none\n"
        "                         (default cosine, to 0 over the run)\n"
        "  --global-clipnorm X    clip the gradients' global norm to X\n"
        "  --weight-decay X       decoupled weight decay (biases excluded)\n"
        "  --ema M                keep an EMA of the weights, momentum M\n"
        "  --threads N            OpenMP threads (model and optimizer)\n"
        "  --checkpoint FILE      save the training state after each epoch\n"
        "  --resume FILE          load a saved state and continue from it\n"
        "                         (give the same options as the saved run)\n"
        "  --data PATH            digits.csv.gz (default %s)\n"
#ifdef ADADELTA_EXAMPLE_MPI
        "  --mode M               replicated | sharded (default replicated)\n"
        "  --no-overlap           one adadelta_mpi_apply after the backward pass\n"
        "                         (default: adadelta_mpi_grad_ready per layer as the\n"
        "                         backward pass produces it)\n"
#endif
        "  --seed N               seed of the split, init and shuffles (default 42)\n",
        DIGITS_DEFAULT_PATH);
}

static const char *next_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        fail("%s needs a value (see --help)", argv[*i]);
    return argv[++*i];
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        fail("%s %s: expected an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

static double parse_double(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        fail("%s %s: expected a number", opt, s);
    return v;
}

static options parse_options(int argc, char **argv)
{
    options o = {
        .epochs = 50,
        .batch = 32,
        .lr = 1.0,
        .schedule = "cosine",
        .global_clipnorm = ADADELTA_UNSET,
        .weight_decay = ADADELTA_UNSET,
        .ema = ADADELTA_UNSET,
        .threads = 0,
        .checkpoint = NULL,
        .resume = NULL,
        .data = DIGITS_DEFAULT_PATH,
        .mode = "replicated",
        .overlap = 1,
        .seed = 42,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0)
                usage(stdout);
#ifdef ADADELTA_EXAMPLE_MPI
            MPI_Finalize();
#endif
            exit(0);
        } else if (!strcmp(a, "--epochs")) {
            o.epochs = (int)parse_long(a, next_arg(argc, argv, &i), 0, 1000000);
        } else if (!strcmp(a, "--batch")) {
            o.batch = (int)parse_long(a, next_arg(argc, argv, &i), 1, 1000000);
        } else if (!strcmp(a, "--lr")) {
            o.lr = parse_double(a, next_arg(argc, argv, &i));
        } else if (!strcmp(a, "--schedule")) {
            o.schedule = next_arg(argc, argv, &i);
            if (strcmp(o.schedule, "cosine") && strcmp(o.schedule, "exponential") &&
                strcmp(o.schedule, "none"))
                fail("--schedule %s: expected cosine, exponential or none", o.schedule);
        } else if (!strcmp(a, "--global-clipnorm")) {
            o.global_clipnorm = parse_double(a, next_arg(argc, argv, &i));
        } else if (!strcmp(a, "--weight-decay")) {
            o.weight_decay = parse_double(a, next_arg(argc, argv, &i));
        } else if (!strcmp(a, "--ema")) {
            o.ema = parse_double(a, next_arg(argc, argv, &i));
        } else if (!strcmp(a, "--threads")) {
            o.threads = (int)parse_long(a, next_arg(argc, argv, &i), 1, 4096);
        } else if (!strcmp(a, "--checkpoint")) {
            o.checkpoint = next_arg(argc, argv, &i);
        } else if (!strcmp(a, "--resume")) {
            o.resume = next_arg(argc, argv, &i);
        } else if (!strcmp(a, "--data")) {
            o.data = next_arg(argc, argv, &i);
#ifdef ADADELTA_EXAMPLE_MPI
        } else if (!strcmp(a, "--no-overlap")) {
            o.overlap = 0;
        } else if (!strcmp(a, "--mode")) {
            o.mode = next_arg(argc, argv, &i);
            if (strcmp(o.mode, "replicated") && strcmp(o.mode, "sharded"))
                fail("--mode %s: expected replicated or sharded", o.mode);
#endif
        } else if (!strcmp(a, "--seed")) {
            o.seed = (uint64_t)parse_long(a, next_arg(argc, argv, &i), 0, 0x7fffffffL);
        } else {
            fail("unknown option %s (see --help)", a);
        }
    }
    return o;
}

/* ------------------------------------------------------------------ PRNG */

/* splitmix64: tiny, good enough for shuffles and init, and the same stream
 * on every rank and every machine. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_uniform(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* Fisher-Yates. */
static void shuffle(int *a, int n, uint64_t *state)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(state) % (uint64_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ------------------------------------------------------------------ data */

typedef struct {
    int n;
    float *x; /* n rows of N_IN pixels, scaled from 0..16 to [0, 1] */
    int *y;   /* n labels 0..9 */
} dataset;

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL)
        fail("out of memory (%zu bytes)", bytes);
    return p;
}

static dataset dataset_alloc(int n)
{
    dataset d = {n, xmalloc((size_t)n * N_IN * sizeof(float)),
                 xmalloc((size_t)n * sizeof(int))};
    return d;
}

/* Fails if zlib hit an error on f: a read error, a corrupted or truncated
 * file (which also explains a malformed last line). */
static void check_gz(gzFile f, const char *path)
{
    int err;
    const char *msg = gzerror(f, &err);
    if (err == Z_ERRNO)
        fail("%s: read error", path);
    if (err != Z_OK)
        fail("%s (a corrupted or truncated gzip file)", msg);
}

/* Reads the gzipped CSV: one image per line, 64 pixels then the label. */
static dataset load_digits(const char *path)
{
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        fail("cannot open %s (give the data file with --data PATH)", path);
    int cap = 2048;
    dataset d = dataset_alloc(cap);
    d.n = 0;
    char line[1024];
    int lineno = 0;
    while (gzgets(f, line, sizeof line) != NULL) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue; /* blank line */
        if (d.n == cap) {
            cap *= 2;
            d.x = realloc(d.x, (size_t)cap * N_IN * sizeof(float));
            d.y = realloc(d.y, (size_t)cap * sizeof(int));
            if (d.x == NULL || d.y == NULL)
                fail("out of memory reading %s", path);
        }
        char *p = line;
        for (int j = 0; j <= N_IN; j++) {
            char *end;
            long v = strtol(p, &end, 10);
            long hi = j < N_IN ? 16 : 9; /* a pixel, then the label */
            /* pixels end with ',', the label with the end of the line */
            int sep_ok = j < N_IN ? *end == ','
                                  : *end == '\0' || isspace((unsigned char)*end);
            if (end == p || v < 0 || v > hi || !sep_ok) {
                check_gz(f, path);
                fail("%s:%d: expected 64 pixels in 0..16 and a label in 0..9, "
                     "comma-separated", path, lineno);
            }
            if (j < N_IN)
                d.x[(size_t)d.n * N_IN + j] = (float)v / 16.0f;
            else
                d.y[d.n] = (int)v;
            p = end + 1;
        }
        d.n++;
    }
    check_gz(f, path);
    gzclose(f);
    if (d.n <= N_TEST)
        fail("%s: %d images, need more than %d", path, d.n, N_TEST);
    return d;
}

/* A fixed shuffle of all images; the last N_TEST are the test set. */
static void split_train_test(const dataset *all, uint64_t seed, dataset *train,
                             dataset *test)
{
    int *order = xmalloc((size_t)all->n * sizeof(int));
    for (int i = 0; i < all->n; i++)
        order[i] = i;
    uint64_t state = seed;
    shuffle(order, all->n, &state);

    *train = dataset_alloc(all->n - N_TEST);
    *test = dataset_alloc(N_TEST);
    for (int i = 0; i < all->n; i++) {
        dataset *d = i < train->n ? train : test;
        int row = i < train->n ? i : i - train->n;
        memcpy(d->x + (size_t)row * N_IN, all->x + (size_t)order[i] * N_IN,
               N_IN * sizeof(float));
        d->y[row] = all->y[order[i]];
    }
    free(order);
}

/* ----------------------------------------------------------------- model */

/* The parameters, and (same layout) their gradients. One block of memory;
 * w1 is (N_IN, N_HIDDEN) and w2 is (N_HIDDEN, N_OUT), row-major. */
typedef struct {
    float *w1, *b1, *w2, *b2;
} mlp;

#define N_PARAMS (N_IN * N_HIDDEN + N_HIDDEN + N_HIDDEN * N_OUT + N_OUT)

static mlp mlp_alloc(void)
{
    float *p = calloc(N_PARAMS, sizeof(float));
    if (p == NULL)
        fail("out of memory");
    mlp m;
    m.w1 = p;
    m.b1 = m.w1 + N_IN * N_HIDDEN;
    m.w2 = m.b1 + N_HIDDEN;
    m.b2 = m.w2 + N_HIDDEN * N_OUT;
    return m;
}

/* Keras's GlorotUniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). */
static void glorot_uniform(float *w, int fan_in, int fan_out, uint64_t *state)
{
    double limit = sqrt(6.0 / (fan_in + fan_out));
    for (int i = 0; i < fan_in * fan_out; i++)
        w[i] = (float)((2.0 * rng_uniform(state) - 1.0) * limit);
}

static void mlp_init(mlp *m, uint64_t seed)
{
    uint64_t state = seed;
    glorot_uniform(m->w1, N_IN, N_HIDDEN, &state);
    glorot_uniform(m->w2, N_HIDDEN, N_OUT, &state);
    memset(m->b1, 0, N_HIDDEN * sizeof(float));
    memset(m->b2, 0, N_OUT * sizeof(float));
}

/* Per-row work space for up to `cap` rows. */
typedef struct {
    int cap;
    float *h;     /* hidden activations after ReLU, (cap, N_HIDDEN) */
    float *p;     /* softmax probabilities, then dloss/dlogits, (cap, N_OUT) */
    float *dh;    /* dloss/dh, (cap, N_HIDDEN) */
    float *loss;  /* cross-entropy of each row */
    int *correct; /* 1 if the row's argmax is its label */
} activations;

static activations activations_alloc(int cap)
{
    activations a = {
        cap,
        xmalloc((size_t)cap * N_HIDDEN * sizeof(float)),
        xmalloc((size_t)cap * N_OUT * sizeof(float)),
        xmalloc((size_t)cap * N_HIDDEN * sizeof(float)),
        xmalloc((size_t)cap * sizeof(float)),
        xmalloc((size_t)cap * sizeof(int)),
    };
    return a;
}

/* Forward pass over n rows: h = relu(x w1 + b1), logits = h w2 + b2,
 * p = softmax(logits), loss = -log p[y]. Rows are independent, so they are
 * split over the threads. */
static void mlp_forward(const mlp *m, const float *x, const int *y, int n,
                        activations *a)
{
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * N_IN;
        float *h = a->h + (size_t)r * N_HIDDEN;
        float *p = a->p + (size_t)r * N_OUT;

        for (int k = 0; k < N_HIDDEN; k++)
            h[k] = m->b1[k];
        for (int i = 0; i < N_IN; i++)
            for (int k = 0; k < N_HIDDEN; k++)
                h[k] += xr[i] * m->w1[i * N_HIDDEN + k];
        for (int k = 0; k < N_HIDDEN; k++)
            h[k] = h[k] > 0.0f ? h[k] : 0.0f;

        float logits[N_OUT];
        for (int c = 0; c < N_OUT; c++)
            logits[c] = m->b2[c];
        for (int k = 0; k < N_HIDDEN; k++)
            for (int c = 0; c < N_OUT; c++)
                logits[c] += h[k] * m->w2[k * N_OUT + c];

        /* softmax, shifted by the max logit so exp cannot overflow */
        int best = 0;
        for (int c = 1; c < N_OUT; c++)
            if (logits[c] > logits[best])
                best = c;
        float sum = 0.0f;
        for (int c = 0; c < N_OUT; c++) {
            p[c] = expf(logits[c] - logits[best]);
            sum += p[c];
        }
        for (int c = 0; c < N_OUT; c++)
            p[c] /= sum;
        a->loss[r] = logf(sum) - (logits[y[r]] - logits[best]);
        a->correct[r] = best == y[r];
    }
}

/* Backward pass over the n rows of the last forward, writing all of g.
 * scale multiplies the summed gradient: 1 / batch gives the batch mean. Each
 * gradient element is summed by one thread in row order, so the result does
 * not depend on the number of threads. */
/* As each variable's gradient is finished (w2, b2, then w1, b1: the order
 * of a backward pass), ready(index, gradient) hands it on, when given. */
typedef void (*gradient_ready)(int index, const float *grad, void *ctx);
enum { VAR_W1, VAR_B1, VAR_W2, VAR_B2 }; /* the optimizer's variable order */

static void mlp_backward(const mlp *m, const float *x, const int *y, int n,
                         activations *a, float scale, mlp *g, gradient_ready ready, void *ctx)
{
    /* dloss/dlogits = (softmax - onehot(y)) * scale, in place of p */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *d = a->p + (size_t)r * N_OUT;
        d[y[r]] -= 1.0f;
        for (int c = 0; c < N_OUT; c++)
            d[c] *= scale;
    }

    /* w2 and b2: dw2 = h^T dlogits, db2 = column sums of dlogits; one
     * hidden unit (a row of w2) per iteration */
#pragma omp parallel for schedule(static)
    for (int k = 0; k < N_HIDDEN; k++) {
        float acc[N_OUT] = {0};
        for (int r = 0; r < n; r++) {
            float hk = a->h[(size_t)r * N_HIDDEN + k];
            for (int c = 0; c < N_OUT; c++)
                acc[c] += hk * a->p[(size_t)r * N_OUT + c];
        }
        for (int c = 0; c < N_OUT; c++)
            g->w2[k * N_OUT + c] = acc[c];
    }
    for (int c = 0; c < N_OUT; c++) {
        float acc = 0.0f;
        for (int r = 0; r < n; r++)
            acc += a->p[(size_t)r * N_OUT + c];
        g->b2[c] = acc;
    }
    if (ready) {
        ready(VAR_W2, g->w2, ctx);
        ready(VAR_B2, g->b2, ctx);
    }

    /* back through the second layer and the ReLU: dh = (dlogits w2^T) * [h > 0] */
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        const float *d = a->p + (size_t)r * N_OUT;
        const float *h = a->h + (size_t)r * N_HIDDEN;
        float *dh = a->dh + (size_t)r * N_HIDDEN;
        for (int k = 0; k < N_HIDDEN; k++) {
            float acc = 0.0f;
            if (h[k] > 0.0f)
                for (int c = 0; c < N_OUT; c++)
                    acc += d[c] * m->w2[k * N_OUT + c];
            dh[k] = acc;
        }
    }

    /* w1: dw1 = x^T dh, one input pixel (a row of w1) per iteration */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N_IN; i++) {
        float *gw = g->w1 + i * N_HIDDEN;
        for (int k = 0; k < N_HIDDEN; k++)
            gw[k] = 0.0f;
        for (int r = 0; r < n; r++) {
            float xi = x[(size_t)r * N_IN + i];
            const float *dh = a->dh + (size_t)r * N_HIDDEN;
            for (int k = 0; k < N_HIDDEN; k++)
                gw[k] += xi * dh[k];
        }
    }
    /* b1: column sums of dh */
#pragma omp parallel for schedule(static)
    for (int k = 0; k < N_HIDDEN; k++) {
        float acc = 0.0f;
        for (int r = 0; r < n; r++)
            acc += a->dh[(size_t)r * N_HIDDEN + k];
        g->b1[k] = acc;
    }
    if (ready) {
        ready(VAR_W1, g->w1, ctx);
        ready(VAR_B1, g->b1, ctx);
    }
}

/* Sums of loss and correct predictions over the n rows of the last forward. */
static void tally(const activations *a, int n, double *loss_sum, double *correct)
{
    for (int r = 0; r < n; r++) {
        *loss_sum += a->loss[r];
        *correct += a->correct[r];
    }
}

/* Mean loss and accuracy of the model on a data set. Each rank evaluates a
 * contiguous slice of the rows, in chunks that fit the work space. */
static void evaluate(const mlp *m, const dataset *d, activations *a,
                     double *loss, double *accuracy)
{
    int lo = (int)((int64_t)d->n * rank / nranks);
    int hi = (int)((int64_t)d->n * (rank + 1) / nranks);
    double sums[2] = {0.0, 0.0};
    for (int s = lo; s < hi; s += a->cap) {
        int n = hi - s < a->cap ? hi - s : a->cap;
        mlp_forward(m, d->x + (size_t)s * N_IN, d->y + s, n, a);
        tally(a, n, &sums[0], &sums[1]);
    }
    sum_over_ranks(sums, 2);
    *loss = sums[0] / d->n;
    *accuracy = sums[1] / d->n;
}

/* ------------------------------------------------------------- optimizer */

/* The only lines that differ between the one-process and the MPI build:
 * which optimizer handle is used and which calls move it. */
#ifdef ADADELTA_EXAMPLE_MPI
typedef adadelta_mpi optimizer;

static int optimizer_create(const adadelta_config *cfg, const char *mode,
                            optimizer **out)
{
    adadelta_mpi_mode m = strcmp(mode, "sharded") ? ADADELTA_MPI_REPLICATED
                                                  : ADADELTA_MPI_SHARDED;
    return adadelta_mpi_create(MPI_COMM_WORLD, cfg, m, out);
}
#define optimizer_destroy adadelta_mpi_destroy
#define optimizer_add_variable adadelta_mpi_add_variable
#define optimizer_exclude_from_weight_decay adadelta_mpi_exclude_from_weight_decay
#define optimizer_set_threads adadelta_mpi_set_threads
#define optimizer_apply adadelta_mpi_apply
#define optimizer_finalize adadelta_mpi_finalize_variable_values
#define optimizer_save adadelta_mpi_save
#define optimizer_load adadelta_mpi_load
#define optimizer_core adadelta_mpi_core
#else
typedef adadelta optimizer;

static int optimizer_create(const adadelta_config *cfg, const char *mode,
                            optimizer **out)
{
    (void)mode;
    return adadelta_create(cfg, out);
}
#define optimizer_destroy adadelta_destroy
#define optimizer_add_variable adadelta_add_variable
#define optimizer_exclude_from_weight_decay adadelta_exclude_from_weight_decay
#define optimizer_set_threads adadelta_set_threads
#define optimizer_apply adadelta_apply
#define optimizer_finalize adadelta_finalize_variable_values
#define optimizer_save adadelta_save
#define optimizer_load adadelta_load
#define optimizer_core(opt) (opt)
#endif

/* keras.optimizers.Adadelta(learning_rate=..., global_clipnorm=...,
 * weight_decay=..., use_ema=..., ema_momentum=...) from the options. */
static adadelta_config make_config(const options *o, int64_t total_steps,
                                   int steps_per_epoch)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    if (!strcmp(o->schedule, "cosine"))
        adadelta_lr_cosine_decay(&cfg.learning_rate, o->lr,
                                 (double)(total_steps > 0 ? total_steps : 1),
                                 0.0, ADADELTA_UNSET, 0.0);
    else if (!strcmp(o->schedule, "exponential")) /* x0.95 per epoch */
        adadelta_lr_exponential_decay(&cfg.learning_rate, o->lr,
                                      (double)steps_per_epoch, 0.95, 0);
    else
        adadelta_lr_constant(&cfg.learning_rate, o->lr);
    cfg.global_clipnorm = o->global_clipnorm;
    cfg.weight_decay = o->weight_decay;
    if (adadelta_is_set(o->ema)) {
        cfg.use_ema = 1;
        cfg.ema_momentum = o->ema;
    }
    return cfg;
}

/* Registers the four Dense variables, with Keras's names and shapes. */
static void add_variables(optimizer *opt, mlp *m)
{
    const int64_t w1_shape[2] = {N_IN, N_HIDDEN}, b1_shape[1] = {N_HIDDEN};
    const int64_t w2_shape[2] = {N_HIDDEN, N_OUT}, b2_shape[1] = {N_OUT};
    check(optimizer_add_variable(opt, "dense/kernel", ADADELTA_F32, m->w1, 2, w1_shape),
          "add_variable dense/kernel");
    check(optimizer_add_variable(opt, "dense/bias", ADADELTA_F32, m->b1, 1, b1_shape),
          "add_variable dense/bias");
    check(optimizer_add_variable(opt, "dense_1/kernel", ADADELTA_F32, m->w2, 2, w2_shape),
          "add_variable dense_1/kernel");
    check(optimizer_add_variable(opt, "dense_1/bias", ADADELTA_F32, m->b2, 1, b2_shape),
          "add_variable dense_1/bias");
    /* as with exclude_from_weight_decay(var_names=["bias"]) in Keras */
    const char *no_decay[1] = {"bias"};
    check(optimizer_exclude_from_weight_decay(opt, NULL, 0, no_decay, 1),
          "exclude_from_weight_decay");
}

/* ------------------------------------------------------------------ main */

#ifdef ADADELTA_EXAMPLE_MPI
static void report_ready(int index, const float *grad, void *ctx)
{
    check(adadelta_mpi_grad_ready(ctx, index, grad), "grad_ready");
}
#endif

/* The backward pass and the optimizer step. Over MPI with overlap, each
 * layer's gradients go to the optimizer as soon as they are computed, so
 * their reduction starts while the rest of the backward pass runs. */
static void train_step(optimizer *opt, const options *o, const mlp *model, const float *xb,
                       const int *yb, int n, activations *acts, float scale, mlp *grad,
                       const float *const *grads)
{
#ifdef ADADELTA_EXAMPLE_MPI
    if (o->overlap) {
        check(adadelta_mpi_begin_step(opt), "begin_step");
        mlp_backward(model, xb, yb, n, acts, scale, grad, report_ready, opt);
        check(adadelta_mpi_end_step(opt), "end_step");
        return;
    }
#else
    (void)o;
#endif
    mlp_backward(model, xb, yb, n, acts, scale, grad, NULL, NULL);
    check(optimizer_apply(opt, grads), "apply");
}

int main(int argc, char **argv)
{
#ifdef ADADELTA_EXAMPLE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
#endif
    options o = parse_options(argc, argv);
#ifdef _OPENMP
    if (o.threads > 0)
        omp_set_num_threads(o.threads);
#endif

    /* data: every rank reads the file and makes the same split */
    dataset all = load_digits(o.data);
    dataset train, test;
    split_train_test(&all, o.seed, &train, &test);
    int steps_per_epoch = (train.n + o.batch - 1) / o.batch;
    int64_t total_steps = (int64_t)o.epochs * steps_per_epoch;

    /* model: the same initial weights on every rank */
    mlp model = mlp_alloc(), grad = mlp_alloc();
    mlp_init(&model, o.seed + 1);
    int cap = o.batch < 512 ? 512 : o.batch; /* rows per forward */
    activations acts = activations_alloc(cap);
    float *xb = xmalloc((size_t)o.batch * N_IN * sizeof(float));
    int *yb = xmalloc((size_t)o.batch * sizeof(int));
    int *order = xmalloc((size_t)train.n * sizeof(int));

    /* optimizer */
    adadelta_config cfg = make_config(&o, total_steps, steps_per_epoch);
    optimizer *opt = NULL;
    check(optimizer_create(&cfg, o.mode, &opt), "create");
    add_variables(opt, &model);
    if (o.threads > 0)
        check(optimizer_set_threads(opt, o.threads), "set_threads");
    const float *grads[4] = {grad.w1, grad.b1, grad.w2, grad.b2};

    int start_epoch = 0;
    if (o.resume != NULL) {
        check(optimizer_load(opt, o.resume), "load %s", o.resume);
        int64_t iterations = adadelta_iterations(optimizer_core(opt));
        start_epoch = (int)(iterations / steps_per_epoch);
        if (iterations % steps_per_epoch != 0 && rank == 0)
            printf("note: %s is %lld steps into epoch %d; restarting that epoch\n",
                   o.resume, (long long)(iterations % steps_per_epoch),
                   start_epoch + 1);
    }

    if (rank == 0) {
        int threads = adadelta_threads(optimizer_core(opt));
        printf("digits: %d train, %d test | MLP %d-%d-%d, %d parameters\n",
               train.n, test.n, N_IN, N_HIDDEN, N_OUT, N_PARAMS);
        printf("Adadelta lr %g (%s), batch %d, %d steps/epoch, ", o.lr,
               o.schedule, o.batch, steps_per_epoch);
#ifdef ADADELTA_EXAMPLE_MPI
        printf("%d rank%s (%s), ", nranks, nranks > 1 ? "s" : "", o.mode);
#endif
        printf("%d thread%s\n", threads, threads > 1 ? "s" : "");
        if (start_epoch > 0)
            printf("resumed from %s at epoch %d\n", o.resume, start_epoch);
    }

    for (int epoch = start_epoch; epoch < o.epochs; epoch++) {
        double t0 = seconds();
        float lr = adadelta_current_learning_rate(optimizer_core(opt));

        /* every rank draws the same order, from the seed and the epoch, so a
         * resumed run sees the batches the uninterrupted run would */
        uint64_t state = o.seed ^ (0x5851f42d4c957f2dULL * (uint64_t)(epoch + 1));
        for (int i = 0; i < train.n; i++)
            order[i] = i;
        shuffle(order, train.n, &state);

        double sums[2] = {0.0, 0.0}; /* loss, correct over this epoch's rows */
        for (int start = 0; start < train.n; start += o.batch) {
            int bn = train.n - start < o.batch ? train.n - start : o.batch;
            /* this rank's rows of the global batch [start, start + bn) */
            int lo = start + (int)((int64_t)bn * rank / nranks);
            int hi = start + (int)((int64_t)bn * (rank + 1) / nranks);
            int n = hi - lo;
            for (int r = 0; r < n; r++) {
                memcpy(xb + (size_t)r * N_IN, train.x + (size_t)order[lo + r] * N_IN,
                       N_IN * sizeof(float));
                yb[r] = train.y[order[lo + r]];
            }
            mlp_forward(&model, xb, yb, n, &acts);
            tally(&acts, n, &sums[0], &sums[1]);
            /* The loss is the mean over the global batch. The MPI layer
             * averages the ranks' gradients (sum / nranks), so each rank
             * hands it nranks / bn times its sum. */
            train_step(opt, &o, &model, xb, yb, n, &acts, (float)nranks / (float)bn, &grad,
                       grads);
        }
        sum_over_ranks(sums, 2);

        double test_loss, test_acc;
        evaluate(&model, &test, &acts, &test_loss, &test_acc);
        if (o.checkpoint != NULL)
            check(optimizer_save(opt, o.checkpoint), "save %s", o.checkpoint);
        if (rank == 0)
            printf("epoch %3d | loss %.4f | train acc %5.1f%% | test acc %5.1f%% "
                   "| lr %.4f | %.3f s\n", epoch + 1, sums[0] / train.n,
                   100.0 * sums[1] / train.n, 100.0 * test_acc, lr,
                   seconds() - t0);
    }

    /* with --ema, Keras's finalize_variable_values() puts the averages into
     * the weights; otherwise this does nothing */
    check(optimizer_finalize(opt), "finalize_variable_values");
    double test_loss, test_acc;
    evaluate(&model, &test, &acts, &test_loss, &test_acc);
    if (rank == 0)
        printf("test accuracy %.1f%%\n", 100.0 * test_acc);

    optimizer_destroy(opt);
    free(order);
    free(yb);
    free(xb);
    free(acts.h);
    free(acts.p);
    free(acts.dh);
    free(acts.loss);
    free(acts.correct);
    free(grad.w1);
    free(model.w1);
    free(all.x);
    free(all.y);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
#ifdef ADADELTA_EXAMPLE_MPI
    MPI_Finalize();
#endif
    return 0;
}
