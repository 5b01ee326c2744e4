/* peak_memory.h - a process's resident and peak memory (Linux
 * /proc/self/status) and a reset of the peak, for the tests that bound the
 * memory of a save or a load. Static inline: included by test_state.c and
 * tests/mpi/test_mpi_checkpoint.c. */
#ifndef PEAK_MEMORY_H
#define PEAK_MEMORY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* VmRSS, VmHWM, ... of this process in bytes (0 when unknown). */
static inline long long status_bytes(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = 0;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            kb = atoll(line + k + 1);
    if (f)
        fclose(f);
    return kb * 1024;
}

/* Resets VmHWM to the current VmRSS; 0 where the kernel cannot. */
static inline int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    return ok;
}

#endif
