/* test_mpi_dtypes - float64, float16 and bfloat16 variables (beside a
 * float32 one) through the MPI layer with rank-dependent gradients, against
 * a reference written here from Keras's formulas: the mean of the ranks'
 * gradients added in rank order (float64 for a float64 variable, float32
 * for the others, rounded to a 16-bit variable's dtype), then the Adadelta
 * step with every op rounded to the variable's dtype. The variables span
 * several shards and the ranks' ranges; an odd float32 variable precedes a
 * float64 one (the layout's alignment). Also: both modes and engines, the
 * zero-copy buffer of a float64 variable, the overlapped step in buckets, the refusals (a 16-bit variable's
 * buffer, compression with float64 variables, ranks disagreeing on a
 * dtype), and a checkpoint across modes. */
#include "mpi_harness.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NVAR 5
static const char *const vnames[NVAR] = {"a", "b", "c", "d", "e"};
static const adadelta_dtype vtypes[NVAR] = {ADADELTA_F32, ADADELTA_F64, ADADELTA_F16,
                                            ADADELTA_BF16, ADADELTA_F64};
static const int64_t vsizes[NVAR] = {3, 40000, 20001, 5, 1};
#define CALLS 3

/* ----------------------------------------------------------- rounding */

static float rn_f16(float x) { return (float)(_Float16)x; }

/* bfloat16: round to nearest even on the float32 bits (no NaN here) */
static float rn_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static float rn_none(float x) { return x; }

typedef float (*rounder)(float);

static rounder rounder_of(adadelta_dtype d)
{
    return d == ADADELTA_F16 ? rn_f16 : d == ADADELTA_BF16 ? rn_bf16 : rn_none;
}

static uint16_t bits16(adadelta_dtype d, float x)
{
    uint16_t b;
    if (d == ADADELTA_F16) {
        _Float16 h = (_Float16)x;
        memcpy(&b, &h, 2);
    } else {
        uint32_t u;
        memcpy(&u, &x, 4);
        b = (uint16_t)(u >> 16);
    }
    return b;
}

static float value16(adadelta_dtype d, uint16_t b)
{
    if (d == ADADELTA_F16) {
        _Float16 h;
        memcpy(&h, &b, 2);
        return (float)h;
    }
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ----------------------------------------------------------- the model */

static size_t esize(adadelta_dtype d) { return d == ADADELTA_F64 ? 8 : d == ADADELTA_F32 ? 4 : 2; }

/* element i of variable v (a value of its dtype) */
static double initial(int v, int64_t i) { return 0.5 * hashf(77, 0, (uint32_t)v, (uint32_t)i); }
static double gradient(int r, int k, int v, int64_t i)
{
    return hashf((uint32_t)r, (uint32_t)k + 10, (uint32_t)v, (uint32_t)i);
}

static void store(adadelta_dtype d, void *p, int64_t i, double x)
{
    if (d == ADADELTA_F64)
        ((double *)p)[i] = x;
    else if (d == ADADELTA_F32)
        ((float *)p)[i] = (float)x;
    else
        ((uint16_t *)p)[i] = bits16(d, rounder_of(d)((float)x));
}

static double load(adadelta_dtype d, const void *p, int64_t i)
{
    if (d == ADADELTA_F64)
        return ((const double *)p)[i];
    if (d == ADADELTA_F32)
        return ((const float *)p)[i];
    return value16(d, ((const uint16_t *)p)[i]);
}

typedef struct vars {
    void *data[NVAR];
} vars;

static void vars_init(vars *x)
{
    for (int v = 0; v < NVAR; v++) {
        x->data[v] = calloc((size_t)vsizes[v], esize(vtypes[v]));
        for (int64_t i = 0; i < vsizes[v]; i++)
            store(vtypes[v], x->data[v], i, initial(v, i));
    }
}

static void vars_free(vars *x)
{
    for (int v = 0; v < NVAR; v++)
        free(x->data[v]);
}

/* ----------------------------------------------------------- reference */

/* Keras's Adadelta over CALLS calls, defaults (rho 0.95, epsilon 1e-7,
 * learning rate float32(0.001)), every op in the variable's dtype. */
static void reference(vars *x)
{
    for (int v = 0; v < NVAR; v++) {
        adadelta_dtype d = vtypes[v];
        for (int64_t i = 0; i < vsizes[v]; i++) {
            if (d == ADADELTA_F64) {
                double var = load(d, x->data[v], i), ag = 0, ad = 0;
                const double rho = 0.95, omr = 1.0 - 0.95, eps = 1e-7, lr = (double)0.001f;
                for (int k = 0; k < CALLS; k++) {
                    double g = gradient(0, k, v, i);
                    for (int r = 1; r < R; r++)
                        g += gradient(r, k, v, i);
                    g = g / (double)R;
                    ag = rho * ag + omr * (g * g);
                    double delta = -((sqrt(ad + eps) * g) / sqrt(ag + eps));
                    ad = rho * ad + omr * (delta * delta);
                    var = var + lr * delta;
                }
                store(d, x->data[v], i, var);
                continue;
            }
            rounder rn = rounder_of(d);
            float var = (float)load(d, x->data[v], i), ag = 0, ad = 0;
            const float rho = rn((float)0.95), omr = rn((float)(1.0 - 0.95)),
                        eps = rn((float)1e-7), lr = rn(0.001f);
            for (int k = 0; k < CALLS; k++) {
                /* each rank's gradient in the dtype, summed in float32 */
                float g = rn((float)gradient(0, k, v, i));
                for (int r = 1; r < R; r++)
                    g += rn((float)gradient(r, k, v, i));
                g = rn(g / (float)R);
                ag = rn(rn(rho * ag) + rn(omr * rn(g * g)));
                float delta = -rn(rn(rn(sqrtf(rn(ad + eps))) * g) / rn(sqrtf(rn(ag + eps))));
                ad = rn(rn(rho * ad) + rn(omr * rn(delta * delta)));
                var = rn(var + rn(lr * delta));
            }
            store(d, x->data[v], i, var);
        }
    }
}

/* ----------------------------------------------------------- runs */

static adadelta_mpi *make_dtypes(adadelta_mpi_mode mode, vars *x, int mismatch)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_mpi *o = NULL;
    if (adadelta_mpi_create(MPI_COMM_WORLD, &cfg, mode, &o))
        return NULL;
    adadelta_mpi_set_check_identical(o, 1);
    for (int v = 0; v < NVAR; v++) {
        int64_t shape[1] = {vsizes[v]};
        adadelta_dtype d = mismatch && v == 1 && me == R - 1 ? ADADELTA_F32 : vtypes[v];
        if (adadelta_mpi_add_variable(o, vnames[v], d, x->data[v], 1, shape) != v) {
            adadelta_mpi_destroy(o);
            return NULL;
        }
    }
    return o;
}

enum { PLAIN = 0, ZERO_COPY = 1, OVERLAP = 2 };

/* Calls [from, to) with this rank's gradients; ZERO_COPY: the float64
 * gradients written into the layer's buffers; OVERLAP: through begin_step,
 * grad_ready from the last variable back, end_step. */
static int steps(adadelta_mpi *o, int from, int to, int how)
{
    int zero_copy = how == ZERO_COPY;
    void *g[NVAR];
    for (int v = 0; v < NVAR; v++)
        g[v] = malloc((size_t)vsizes[v] * esize(vtypes[v]));
    int rc = 0;
    for (int k = from; k < to && !rc; k++) {
        const void *gp[NVAR];
        for (int v = 0; v < NVAR; v++) {
            void *dst = g[v];
            if (zero_copy && vtypes[v] == ADADELTA_F64)
                dst = adadelta_mpi_gradient_buffer(o, v);
            for (int64_t i = 0; i < vsizes[v]; i++)
                store(vtypes[v], dst, i, gradient(me, k, v, i));
            gp[v] = dst;
        }
        if (how != OVERLAP) {
            rc = adadelta_mpi_apply(o, gp);
            continue;
        }
        rc = adadelta_mpi_begin_step(o);
        for (int v = NVAR - 1; v >= 0 && !rc; v--)
            rc = adadelta_mpi_grad_ready(o, v, gp[v]);
        int end = adadelta_mpi_end_step(o);
        rc = rc ? rc : end;
    }
    for (int v = 0; v < NVAR; v++)
        free(g[v]);
    return rc;
}

static int same_as(const vars *got, const vars *want)
{
    for (int v = 0; v < NVAR; v++)
        if (memcmp(got->data[v], want->data[v], (size_t)vsizes[v] * esize(vtypes[v])))
            return 0;
    return 1;
}

static void test_every_dtype_matches_reference(void **state)
{
    (void)state;
    vars want;
    vars_init(&want);
    reference(&want);
    const engine_env engines[2] = {{"1", NULL, NULL, NULL}, {"0", "4095", NULL, "p2p"}};
    for (int e = 0; e < 2; e++)
        for (int mode = 0; mode < 2; mode++)
            for (int how = PLAIN; how <= OVERLAP; how++) {
                engine_env_begin(&engines[e]);
                vars x;
                vars_init(&x);
                adadelta_mpi *o = make_dtypes((adadelta_mpi_mode)mode, &x, 0);
                AGREE(o != NULL);
                if (how == OVERLAP) /* several buckets */
                    AGREE(adadelta_mpi_set_bucket_bytes(o, 30000) == 0);
                AGREE(steps(o, 0, CALLS, how) == 0);
                if (engines[e].want)
                    AGREE(!strcmp(adadelta_mpi_engine(o), engines[e].want));
                AGREE(same_as(&x, &want));
                adadelta_mpi_destroy(o);
                vars_free(&x);
                engine_env_end();
            }
    vars_free(&want);
}

static void test_refusals(void **state)
{
    (void)state;
    vars x;
    vars_init(&x);
    adadelta_mpi *o = make_dtypes(ADADELTA_MPI_REPLICATED, &x, 0);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_gradient_buffer(o, 2) == NULL);
    AGREE(strstr(adadelta_mpi_last_error(), "'c' is float16") != NULL);
    AGREE(adadelta_mpi_gradient_buffer(o, 1) != NULL);
    adadelta_mpi_destroy(o);

    o = make_dtypes(ADADELTA_MPI_SHARDED, &x, 0);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_set_compression(o, ADADELTA_MPI_COMPRESS_BF16) == 0);
    AGREE(steps(o, 0, 1, 0) == ADADELTA_EINVAL);
    AGREE(strstr(adadelta_mpi_last_error(), "float64") != NULL &&
          strstr(adadelta_mpi_last_error(), "'b'") != NULL);
    AGREE(adadelta_iterations(adadelta_mpi_core(o)) == 0);
    adadelta_mpi_destroy(o);

    /* the last rank registers 'b' as float32: refused on every rank */
    if (R == 1) {
        vars_free(&x);
        return;
    }
    vars y;
    void *b32 = calloc((size_t)vsizes[1], 4);
    y = x;
    if (me == R - 1)
        y.data[1] = b32;
    o = make_dtypes(ADADELTA_MPI_REPLICATED, &y, 1);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_check_agreement(o) == ADADELTA_EMISMATCH);
    AGREE(strstr(adadelta_mpi_last_error(), "dtypes") != NULL);
    adadelta_mpi_destroy(o);
    free(b32);
    vars_free(&x);
}

/* Two calls sharded, saved; loaded replicated, one more call: the three
 * calls' reference. */
static void test_checkpoint_across_modes(void **state)
{
    (void)state;
    vars want;
    vars_init(&want);
    reference(&want);
    char *file = path_of("dtypes.st");
    vars x;
    vars_init(&x);
    adadelta_mpi *o = make_dtypes(ADADELTA_MPI_SHARDED, &x, 0);
    AGREE(o != NULL);
    AGREE(steps(o, 0, CALLS - 1, 0) == 0);
    AGREE(adadelta_mpi_save(o, file) == 0);
    adadelta_mpi_destroy(o);
    vars z;
    vars_init(&z); /* overwritten by the load */
    o = make_dtypes(ADADELTA_MPI_REPLICATED, &z, 0);
    AGREE(o != NULL);
    AGREE(adadelta_mpi_load(o, file) == 0);
    AGREE(steps(o, CALLS - 1, CALLS, 0) == 0);
    AGREE(same_as(&z, &want));
    adadelta_mpi_destroy(o);
    vars_free(&x);
    vars_free(&z);
    vars_free(&want);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_dtype_matches_reference),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_checkpoint_across_modes),
    };
    return RUN_MPI_TESTS(argc, argv, tests);
}
