/* dispatch.c - which kernel table a process uses: the widest instruction
 * set the CPU (and OS) runs, unless ADADELTA_KERNEL names another one it
 * runs. Chosen once; every table computes the same bits, so the choice
 * changes speed only. */
#include "../internal.h"

#include <stdlib.h>
#include <string.h>

static const adadelta_kernels *chosen;

static int supported(const adadelta_kernels *k)
{
#if defined(ADADELTA_HAVE_FP16_KERNELS)
    if (k == &adadelta__kernels_avx512fp16)
        return __builtin_cpu_supports("avx512fp16") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#endif
#if defined(ADADELTA_HAVE_X86_KERNELS)
    if (k == &adadelta__kernels_avx512f)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (k == &adadelta__kernels_avx2)
        return __builtin_cpu_supports("avx2");
#endif
    return k == &adadelta__kernels_default;
}

static const adadelta_kernels *choose(void)
{
    static const adadelta_kernels *const widest_first[] = {
#if defined(ADADELTA_HAVE_FP16_KERNELS)
        &adadelta__kernels_avx512fp16,
#endif
#if defined(ADADELTA_HAVE_X86_KERNELS)
        &adadelta__kernels_avx512f, &adadelta__kernels_avx2,
#endif
        &adadelta__kernels_default,
    };
    const int n = (int)(sizeof widest_first / sizeof widest_first[0]);
#if defined(ADADELTA_HAVE_X86_KERNELS)
    __builtin_cpu_init();
#endif
    const char *want = getenv("ADADELTA_KERNEL");
    for (int i = 0; want && i < n; i++)
        if (!strcmp(want, widest_first[i]->name) && supported(widest_first[i]))
            return widest_first[i];
    for (int i = 0; i < n; i++)
        if (supported(widest_first[i]))
            return widest_first[i];
    return &adadelta__kernels_default;
}

const adadelta_kernels *adadelta__kernels(void)
{
    /* Threads racing here compute the same choice; the store is atomic. */
    const adadelta_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!k) {
        k = choose();
        __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    }
    return k;
}

const char *adadelta_kernel(void) { return adadelta__kernels()->name; }
