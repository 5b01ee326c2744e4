/* shard.c - the shards (fixed pieces of at most ADADELTA_SHARD_ELEMS
 * elements, never crossing a variable), the partition of shards over
 * threads and over processes, and the thread team: the library's only
 * OpenMP parallel regions are here. */
#include "internal.h"

#include <omp.h>

void adadelta__add_shards(adadelta *opt, int v, int64_t size)
{
    opt->vars[v].first_shard = opt->n_shards;
    for (int64_t b = 0; b < size; b += ADADELTA_SHARD_ELEMS) {
        adadelta_shard *s = &opt->shards[opt->n_shards++];
        s->var = v;
        s->begin = b;
        s->end = b + ADADELTA_SHARD_ELEMS < size ? b + ADADELTA_SHARD_ELEMS : size;
    }
    opt->own_lo = 0;
    opt->own_hi = opt->n_shards;
    opt->bounds_valid = 0;
}

int64_t adadelta__shard_offset(const adadelta *opt, int s)
{
    if (s >= opt->n_shards)
        return opt->total_elements;
    const adadelta_shard *sh = &opt->shards[s];
    return opt->vars[sh->var].flat_offset + sh->begin;
}

void adadelta__partition(const adadelta *opt, int parts, int *bounds)
{
    int64_t total = opt->total_elements;
    int s = 0;
    bounds[0] = 0;
    for (int r = 1; r <= parts; r++) {
        int64_t target = (int64_t)((__int128)total * r / parts);
        while (s < opt->n_shards && adadelta__shard_offset(opt, s) < target)
            s++;
        bounds[r] = r == parts ? opt->n_shards : s;
    }
}

/* Thread t always gets the same shards (first-touch friendly), about equal
 * in elements. No allocation: the array was sized by set_threads. */
static void ensure_thread_bounds(adadelta *opt)
{
    if (opt->bounds_valid)
        return;
    int T = opt->threads;
    int64_t total = 0;
    for (int s = opt->own_lo; s < opt->own_hi; s++)
        total += opt->shards[s].end - opt->shards[s].begin;
    int s = opt->own_lo;
    int64_t seen = 0;
    opt->thread_bounds[0] = opt->own_lo;
    for (int t = 1; t <= T; t++) {
        int64_t target = (int64_t)((__int128)total * t / T);
        while (s < opt->own_hi && seen < target) {
            seen += opt->shards[s].end - opt->shards[s].begin;
            s++;
        }
        opt->thread_bounds[t] = t == T ? opt->own_hi : s;
    }
    opt->bounds_valid = 1;
}

void adadelta__for_each_shard(adadelta *opt, adadelta_shard_fn fn, void *ctx)
{
    ensure_thread_bounds(opt);
    const int T = opt->threads;
    if (T == 1) {
        for (int s = opt->own_lo; s < opt->own_hi; s++)
            fn(opt, s, ctx);
        return;
    }
#pragma omp parallel num_threads(T)
    {
        /* If OpenMP gives fewer threads than asked, each one takes several
         * parts; the parts themselves never change. */
        int nt = omp_get_num_threads();
        for (int part = omp_get_thread_num(); part < T; part += nt)
            for (int s = opt->thread_bounds[part]; s < opt->thread_bounds[part + 1]; s++)
                fn(opt, s, ctx);
    }
}

void adadelta__for_all_shards(adadelta *opt, adadelta_shard_fn fn, void *ctx)
{
    if (opt->own_lo == 0 && opt->own_hi == opt->n_shards) {
        adadelta__for_each_shard(opt, fn, ctx);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(opt->threads)
    for (int s = 0; s < opt->n_shards; s++)
        fn(opt, s, ctx);
}

void adadelta__parallel_blocks(const adadelta *opt, int64_t n, int64_t block,
                               void (*fn)(int64_t lo, int64_t hi, void *ctx), void *ctx)
{
    int64_t nblocks = (n + block - 1) / block;
    /* A team costs a few microseconds: small ranges run on this thread. */
#pragma omp parallel for schedule(static) num_threads(opt->threads) if (n > 262144)
    for (int64_t b = 0; b < nblocks; b++)
        fn(b * block, b * block + block < n ? b * block + block : n, ctx);
}
