/* crc32c.c - CRC-32C (Castagnoli), the checksum of a saved state: the
 * SSE4.2 crc32 instruction where the CPU has it (chosen at run time, about
 * 20x the table), else a slice-by-8 table; and the combination of the CRCs
 * of two pieces from the second one's length, so that processes can each
 * checksum their part of one file. */
#include "safetensors.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
}

/* crc here is the running register (already inverted). */
static uint32_t crc_table(uint32_t crc, const unsigned char *p, size_t n)
{
    pthread_once(&table_once, build_table);
    for (; n && ((uintptr_t)p & 7); n--, p++)
        crc = table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc; /* little-endian: the low bytes come first */
        crc = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^ table[5][(w >> 16) & 0xFF] ^
              table[4][(w >> 24) & 0xFF] ^ table[3][(w >> 32) & 0xFF] ^
              table[2][(w >> 40) & 0xFF] ^ table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
    }
    for (; n; n--, p++)
        crc = table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
static uint32_t matrix_times(const uint32_t *m, uint32_t v);

/* The crc32 instruction has a latency of 3 cycles and a throughput of 1:
 * three independent streams over three blocks keep it busy, and their
 * registers are joined by the shift over one and two blocks of zero bytes
 * (CRC registers are linear in their start value and the data). */
#define CRC_BLOCK 16384
static uint32_t shift_one[32], shift_two[32];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static void build_shifts(void)
{
    for (int i = 0; i < 32; i++) {
        shift_one[i] = adadelta__crc32c_combine(1u << i, 0, CRC_BLOCK);
        shift_two[i] = adadelta__crc32c_combine(1u << i, 0, 2 * CRC_BLOCK);
    }
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const unsigned char *p,
                                                             size_t n)
{
    uint64_t c = crc;
    for (; n && ((uintptr_t)p & 7); n--, p++)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    if (n >= 3 * CRC_BLOCK)
        pthread_once(&shift_once, build_shifts);
    for (; n >= 3 * CRC_BLOCK; n -= 3 * CRC_BLOCK, p += 3 * CRC_BLOCK) {
        uint64_t a = c, b = 0, d = 0;
        for (size_t i = 0; i < CRC_BLOCK; i += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + CRC_BLOCK + i, 8);
            memcpy(&w2, p + 2 * CRC_BLOCK + i, 8);
            a = __builtin_ia32_crc32di(a, w0);
            b = __builtin_ia32_crc32di(b, w1);
            d = __builtin_ia32_crc32di(d, w2);
        }
        c = matrix_times(shift_two, (uint32_t)a) ^ matrix_times(shift_one, (uint32_t)b) ^
            (uint32_t)d;
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    for (; n; n--, p++)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    return (uint32_t)c;
}

static int have_sse42(void)
{
    static int known = -1;
    int k = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("sse4.2") != 0;
        __atomic_store_n(&known, k, __ATOMIC_RELAXED);
    }
    return k;
}
#endif

uint32_t adadelta__crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_sse42())
        return ~crc_sse42(~crc, p, n);
#endif
    return ~crc_table(~crc, p, n);
}

uint32_t adadelta__crc32c_portable(uint32_t crc, const void *data, size_t n)
{
    return ~crc_table(~crc, data, n);
}

/* ------------------------------------------------------------ combine */

/* CRCs are linear over GF(2): crc(A || B) is crc(A) shifted over len(B)
 * zero bytes, xor crc(B). The shift is a 32x32 bit matrix, squared for
 * each bit of the length (as in zlib's crc32_combine, written anew). */
static uint32_t matrix_times(const uint32_t *m, uint32_t v)
{
    uint32_t sum = 0;
    for (int i = 0; v; i++, v >>= 1)
        if (v & 1)
            sum ^= m[i];
    return sum;
}

static void matrix_square(uint32_t *square, const uint32_t *m)
{
    for (int i = 0; i < 32; i++)
        square[i] = matrix_times(m, m[i]);
}

uint32_t adadelta__crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2)
{
    if (len2 == 0)
        return crc1;
    uint32_t odd[32], even[32];
    odd[0] = POLY; /* the operator for one zero bit */
    for (int i = 1; i < 32; i++)
        odd[i] = 1u << (i - 1);
    matrix_square(even, odd); /* two zero bits */
    matrix_square(odd, even); /* four */
    do {
        matrix_square(even, odd); /* one zero byte, then 2, 4, ... */
        if (len2 & 1)
            crc1 = matrix_times(even, crc1);
        len2 >>= 1;
        if (!len2)
            break;
        matrix_square(odd, even);
        if (len2 & 1)
            crc1 = matrix_times(odd, crc1);
        len2 >>= 1;
    } while (len2);
    return crc1 ^ crc2;
}
