/* compress.c - the compressed gradient exchange (adadelta_mpi_set_compression,
 * as Horovod's Compression.fp16): each rank's float32 contribution is
 * rounded to bfloat16 or float16, the ranks' values are summed in float32
 * in rank order and divided by R as always, and the mean is rounded to the
 * same 16-bit type; the engines send the 16-bit values, which halves the
 * bytes on the wire. Outside Keras's semantics, so off by default; every
 * engine rounds at the same two places, so all of them (and every rank)
 * still give the same bits.
 *
 * Both conversions round to nearest, ties to even, and keep NaN a NaN
 * (quiet). float16 overflows to +-Inf beyond 65504 (bfloat16 has
 * float32's range). */
#include "mpi_internal.h"

#include <string.h>

static inline uint16_t bf16_of(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign and the top bits */
        return (uint16_t)((b >> 16) | 0x40u);
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

static inline float f32_of_bf16(uint16_t h)
{
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* float16 through the compiler's _Float16 (IEEE conversions, rounded to
 * nearest even): with F16C one instruction per 8 values, else libgcc's
 * software conversion. */
#define F16_LOOPS(suffix, attr)                                                            \
    attr static void pack_f16_##suffix(const float *in, uint16_t *out, int64_t n)          \
    {                                                                                      \
        for (int64_t i = 0; i < n; i++) {                                                  \
            _Float16 h = (_Float16)in[i];                                                  \
            memcpy(&out[i], &h, sizeof h);                                                 \
        }                                                                                  \
    }                                                                                      \
    attr static void unpack_f16_##suffix(const uint16_t *in, float *out, int64_t n)        \
    {                                                                                      \
        for (int64_t i = 0; i < n; i++) {                                                  \
            _Float16 h;                                                                    \
            memcpy(&h, &in[i], sizeof h);                                                  \
            out[i] = (float)h;                                                             \
        }                                                                                  \
    }                                                                                      \
    attr static void round_f16_##suffix(float *x, int64_t n)                               \
    {                                                                                      \
        for (int64_t i = 0; i < n; i++)                                                    \
            x[i] = (float)(_Float16)x[i];                                                  \
    }
#if defined(__x86_64__) || defined(__i386__)
F16_LOOPS(f16c, __attribute__((target("avx,f16c"))))
#endif
F16_LOOPS(plain, )

static int have_f16c(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int known = -1;
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
#else
    return 0;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
#define F16_CALL(fn, ...) (have_f16c() ? fn##_f16c(__VA_ARGS__) : fn##_plain(__VA_ARGS__))
#else
#define F16_CALL(fn, ...) fn##_plain(__VA_ARGS__)
#endif

void adadelta_mpi__pack16(int kind, const float *in, uint16_t *out, int64_t n)
{
    if (kind == ADADELTA_MPI_COMPRESS_F16) {
        F16_CALL(pack_f16, in, out, n);
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = bf16_of(in[i]);
}

void adadelta_mpi__unpack16(int kind, const uint16_t *in, float *out, int64_t n)
{
    if (kind == ADADELTA_MPI_COMPRESS_F16) {
        F16_CALL(unpack_f16, in, out, n);
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = f32_of_bf16(in[i]);
}

void adadelta_mpi__round16(int kind, float *x, int64_t n)
{
    if (kind == ADADELTA_MPI_COMPRESS_F16) {
        F16_CALL(round_f16, x, n);
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        x[i] = f32_of_bf16(bf16_of(x[i]));
}
