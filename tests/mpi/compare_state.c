/* compare_state --exact GOT EXPECTED - the same state, bit for bit: the
 * same tensors in the same order (names, dtypes, shapes, data bytes) and the
 * same metadata, except "version" and "checksum", which change with the
 * state format (the golden files are version 1).
 *
 * compare_state GOT EXPECTED [RTOL ATOL] - the conformance comparison
 * (conformance/README.md): every tensor of EXPECTED must be in GOT with the
 * same dtype and shape (a scalar may be [] or [1]) and |got - exp| <= rtol * (|exp| + atol / rtol)
 * element-wise (NaN matches NaN; RTOL = ATOL = 0: the same number, sign
 * included, in float16, bfloat16, float32 or float64); integer tensors
 * must be equal. Extra
 * tensors in GOT are fine. Exit 0 if all match, 1 otherwise, 99 on a
 * broken file. Not an MPI program. */
#include "safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double value(const adadelta_st_tensor *t, int64_t i)
{
    if (t->dtype == ADADELTA_ST_F16) {
        _Float16 h;
        memcpy(&h, t->data + 2 * i, 2);
        return (double)h;
    }
    if (t->dtype == ADADELTA_ST_BF16) { /* the top half of a float32 */
        uint16_t b;
        memcpy(&b, t->data + 2 * i, 2);
        uint32_t u = (uint32_t)b << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    if (t->dtype == ADADELTA_ST_F32) {
        float f;
        memcpy(&f, t->data + 4 * i, 4);
        return f;
    }
    double d;
    memcpy(&d, t->data + 8 * i, 8);
    return d;
}

static int same_state(const adadelta_st_file *a, const adadelta_st_file *b, const char *name)
{
    if (a->n != b->n) {
        fprintf(stderr, "%s: %d tensors, expected %d\n", name, a->n, b->n);
        return 0;
    }
    for (int i = 0; i < a->n; i++) {
        const adadelta_st_tensor *x = &a->t[i], *y = &b->t[i];
        int same = !strcmp(x->name, y->name) && x->dtype == y->dtype && x->ndim == y->ndim &&
                   x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        for (int d = 0; same && d < x->ndim; d++)
            same = x->shape[d] == y->shape[d];
        if (!same) {
            fprintf(stderr, "%s: tensor %d (%s, expected %s) differs\n", name, i, x->name,
                    y->name);
            return 0;
        }
    }
    for (int i = 0; i < b->n_meta; i++) {
        const char *k = b->meta_keys[i], *v = adadelta_st_meta(a, k);
        if (strcmp(k, "version") && strcmp(k, "checksum") && (!v || strcmp(v, b->meta_values[i]))) {
            fprintf(stderr, "%s: metadata %s differs\n", name, k);
            return 0;
        }
    }
    return a->n_meta == b->n_meta;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--exact")) {
        adadelta_st_file *a, *b;
        if (adadelta_st_read(argv[2], &a) || adadelta_st_read(argv[3], &b)) {
            fprintf(stderr, "%s\n", adadelta_st_error());
            return 99;
        }
        int same = same_state(a, b, argv[2]);
        adadelta_st_free(a);
        adadelta_st_free(b);
        return same ? 0 : 1;
    }
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s GOT EXPECTED [RTOL ATOL] | --exact GOT EXPECTED\n", argv[0]);
        return 99;
    }
    double rtol = argc == 5 ? atof(argv[3]) : 2e-5, atol = argc == 5 ? atof(argv[4]) : 1e-6;
    adadelta_st_file *got, *exp;
    if (adadelta_st_read(argv[1], &got)) {
        fprintf(stderr, "%s: %s\n", argv[1], adadelta_st_error());
        return 99;
    }
    if (adadelta_st_read(argv[2], &exp)) {
        fprintf(stderr, "%s: %s\n", argv[2], adadelta_st_error());
        adadelta_st_free(got);
        return 99;
    }
    int bad = 0;
    for (int i = 0; i < exp->n; i++) {
        const adadelta_st_tensor *e = &exp->t[i], *g = adadelta_st_find(got, e->name);
        if (!g) {
            fprintf(stderr, "missing tensor %s\n", e->name);
            bad++;
            continue;
        }
        /* Same dtype and element count; shapes must match too, except that
         * a scalar may be written [] or [1] (the reference files use [1]). */
        int same = g->dtype == e->dtype && g->numel == e->numel;
        if (same && g->ndim == e->ndim)
            for (int d = 0; same && d < e->ndim; d++)
                same = g->shape[d] == e->shape[d];
        else if (same)
            same = e->numel == 1;
        if (!same) {
            fprintf(stderr, "%s: dtype or shape differs\n", e->name);
            bad++;
            continue;
        }
        if (e->dtype == ADADELTA_ST_I64) {
            if (memcmp(g->data, e->data, e->nbytes)) {
                fprintf(stderr, "%s: integer values differ\n", e->name);
                bad++;
            }
            continue;
        }
        int64_t off = 0;
        double worst = 0;
        for (int64_t k = 0; k < e->numel; k++) {
            double x = value(g, k), y = value(e, k);
            if (isnan(x) && isnan(y))
                continue;
            double err = fabs(x - y), lim = rtol * (fabs(y) + atol / rtol);
            /* rtol = atol = 0: the same number, sign included */
            int ok = rtol == 0 && atol == 0 ? x == y && signbit(x) == signbit(y) : err <= lim;
            if (!ok) {
                if (!off++)
                    fprintf(stderr, "%s[%lld]: got %.9g expected %.9g\n", e->name,
                            (long long)k, x, y);
                if (err > worst)
                    worst = err;
            }
        }
        if (off) {
            fprintf(stderr, "%s: %lld of %lld elements out of tolerance (worst %g)\n", e->name,
                    (long long)off, (long long)e->numel, worst);
            bad++;
        }
    }
    if (!bad)
        printf("match: %s (%d tensors)\n", argv[2], exp->n);
    adadelta_st_free(got);
    adadelta_st_free(exp);
    return bad ? 1 : 0;
}
