/* half.h - the two 16-bit formats (IEEE binary16 "float16" and bfloat16)
 * computed in float32 registers: exact widening, exact narrowing of a value
 * already rounded, and rounding a float (or a double) to either, round to
 * nearest with ties to even, subnormals kept, overflow to infinity, NaN kept
 * a (quiet) NaN.
 *
 * Why float32 registers give Keras's bits: for +, -, *, / and sqrt the
 * float32 result rounded once to a 16-bit format is that format's correctly
 * rounded result (float32 carries 24 bits, more than 2 * 11 + 2), which is
 * what numpy's float16 and torch's bfloat16 compute op by op.
 *
 * Everything is integer and float32 arithmetic with selects, no table and no
 * branch, so the loops that use it vectorise on every instruction set and
 * give the same bits on each. Included by step.c, and for its rounding of
 * constants by step_params.c and dist_half.c. */
#ifndef ADADELTA_HALF_H
#define ADADELTA_HALF_H

#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) uint32_t half__bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static inline __attribute__((always_inline)) float half__float(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static inline __attribute__((always_inline)) uint64_t half__bits64(double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

static inline __attribute__((always_inline)) double half__double(uint64_t u)
{
    double x;
    memcpy(&x, &u, 8);
    return x;
}

/* ------------------------------------------------------------ bfloat16 */
/* A bfloat16 is the upper half of a float: same exponent range, 8 bits of
 * significand. */

static inline __attribute__((always_inline)) float bf16_widen(uint16_t h)
{
    return half__float((uint32_t)h << 16);
}

/* x already a bfloat16 value: its upper half. */
static inline __attribute__((always_inline)) uint16_t bf16_narrow(float x)
{
    return (uint16_t)(half__bits(x) >> 16);
}

static inline __attribute__((always_inline)) float bf16_round(float x)
{
    uint32_t u = half__bits(x);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    /* a NaN's carry could reach the sign; keep it quiet and a NaN */
    uint32_t q = (u | 0x00400000u) & 0xffff0000u;
    return half__float((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

/* The same inside the step's loops, without the NaN guard: there every
 * NaN has its low 16 bits zero (x86 arithmetic makes the default NaN or
 * quiets an operand's, and the operands are bfloat16 values: loaded, the
 * call's constants, or results rounded here), so the carry stays in them.
 * Half the operations of bf16_round, the same bits. */
static inline __attribute__((always_inline)) float bf16_round_in_loop(float x)
{
    uint32_t u = half__bits(x);
    return half__float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

/* A double rounded once to bfloat16 (no float32 in between: that would
 * round twice). */
static inline __attribute__((always_inline)) float bf16_round_double(double d)
{
    uint64_t u = half__bits64(d), a = u & 0x7fffffffffffffffULL, s = u ^ a;
    /* normal: keep 7 of the 52 fraction bits */
    uint64_t n = (u + 0x0fffffffffffULL + ((u >> 45) & 1u)) & ~0x1fffffffffffULL;
    /* below 2^-126: multiples of 2^-133, the float adding rounds there */
    double t = (half__double(a) + 0x1p-81) - 0x1p-81;
    uint64_t r = a < 0x3810000000000000ULL ? (half__bits64(t) | s) : n;
    /* overflow (2^128 and up) becomes infinity in the float conversion */
    double rd = a > 0x7ff0000000000000ULL ? d : half__double(r);
    return (float)rd;
}

/* ------------------------------------------------------------ float16 */
/* binary16: 5 exponent bits (bias 15), 10 fraction bits; normal from 2^-14,
 * subnormals multiples of 2^-24, largest finite 65504. */

static inline __attribute__((always_inline)) float f16_widen(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 0x3ffu;
    uint32_t normal = ((e + 112u) << 23) | (m << 13);
    uint32_t sub = half__bits((float)(int32_t)m * 0x1p-24f);
    uint32_t special = 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u);
    return half__float(s | (e == 0 ? sub : (e == 31 ? special : normal)));
}

/* x already a float16 value (or infinite, or NaN): its bits. */
static inline __attribute__((always_inline)) uint16_t f16_narrow(float x)
{
    uint32_t u = half__bits(x), a = u & 0x7fffffffu;
    uint32_t s = (u >> 16) & 0x8000u;
    uint32_t normal = (a >> 13) - (112u << 10);
    /* only a subnormal's value is converted (no out-of-range conversion) */
    uint32_t tiny = a < 0x38800000u ? a : 0u;
    uint32_t sub = (uint32_t)(int32_t)(half__float(tiny) * 0x1p24f);
    uint32_t special = 0x7c00u | ((a >> 13) & 0x3ffu);
    return (uint16_t)(s | (a >= 0x7f800000u ? special : (a < 0x38800000u ? sub : normal)));
}

static inline __attribute__((always_inline)) float f16_round(float x)
{
    uint32_t u = half__bits(x), a = u & 0x7fffffffu, s = u ^ a;
    /* normal: keep 10 of the 23 fraction bits */
    uint32_t n = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    /* below 2^-14: multiples of 2^-24 (the ulp of 0.5f) */
    uint32_t t = half__bits((half__float(a) + 0.5f) - 0.5f) | s;
    uint32_t r = a < 0x38800000u ? t : n;
    /* from 65520 (halfway above 65504, ties to the even 65536): infinity */
    r = a >= 0x477ff000u ? (s | 0x7f800000u) : r;
    uint32_t q = (u | 0x00400000u) & 0xffffe000u;
    return half__float(a > 0x7f800000u ? q : r);
}

static inline __attribute__((always_inline)) float f16_round_double(double d)
{
    uint64_t u = half__bits64(d), a = u & 0x7fffffffffffffffULL, s = u ^ a;
    uint64_t n = (u + 0x1ffffffffffULL + ((u >> 42) & 1u)) & ~0x3ffffffffffULL;
    double t = (half__double(a) + 0x1p28) - 0x1p28;
    uint64_t r = a < 0x3f10000000000000ULL ? (half__bits64(t) | s) : n;
    r = a >= 0x40effe0000000000ULL ? (s | 0x7ff0000000000000ULL) : r;
    double rd = a > 0x7ff0000000000000ULL ? d : half__double(r);
    return (float)rd;
}

#endif
