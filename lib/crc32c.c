/* crc32c.c - CRC-32C (Castagnoli), the checksum of a saved state's data. */
#include "internal.h"

static uint32_t table[256];
static int table_ready;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

/* crc of the bytes after `crc` (start with 0). */
uint32_t adadelta__crc32c(uint32_t crc, const void *data, size_t n)
{
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) {
#pragma omp critical(adadelta_crc_table)
        if (!table_ready)
            build_table();
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
