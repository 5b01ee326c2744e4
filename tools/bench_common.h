/* bench_common.h - what adadelta-bench and adadelta-mpi-bench share:
 * the --features names, option parsing, medians, reproducible fill values. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FEAT_WD = 1, FEAT_CLIP = 2, FEAT_EMA = 4 };

static const struct {
    const char *name;
    int bits;
} feature_table[] = {
    {"plain", 0},
    {"weight_decay", FEAT_WD},
    {"global_clipnorm", FEAT_CLIP},
    {"ema", FEAT_EMA},
    {"all", FEAT_WD | FEAT_CLIP | FEAT_EMA},
};

/* Index of a --features name in feature_table, or -1. */
static inline int feature_index(const char *name)
{
    for (size_t k = 0; k < sizeof feature_table / sizeof feature_table[0]; k++)
        if (!strcmp(name, feature_table[k].name))
            return (int)k;
    return -1;
}

/* 1 and *out set if s is an integer in [lo, hi]. */
static inline int parse_int_in(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = (int64_t)v;
    return 1;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Pseudo-random value in [0, 1) from an element's global index. */
static inline float unit_hash(uint64_t i, uint32_t seed)
{
    uint32_t h = (uint32_t)(i * 2654435761u) ^ seed;
    h ^= h >> 15;
    h *= 0x2c1b3c6dU;
    h ^= h >> 12;
    h *= 0x297a2d39U;
    h ^= h >> 15;
    return (float)(h >> 8) * (1.0f / 16777216.0f);
}

#endif
