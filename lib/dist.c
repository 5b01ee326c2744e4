/* dist.c - the shard bookkeeping a data-parallel layer needs (see
 * adadelta_dist.h); the split step itself is in optimizer.c. */
#include "internal.h"
#include "adadelta_dist.h"

#include <stdlib.h>
#include <string.h>

int64_t adadelta_dist_total_elements(const adadelta *opt) { return opt->total_elements; }

int adadelta_dist_num_shards(const adadelta *opt) { return opt->n_shards; }

int64_t adadelta_dist_shard_offset(const adadelta *opt, int s)
{
    if (s >= opt->n_shards)
        return opt->total_elements;
    const adadelta_shard *sh = &opt->shards[s];
    return opt->vars[sh->var].flat_offset + sh->begin;
}

void adadelta_dist_partition(const adadelta *opt, int parts, int *bounds)
{
    int64_t total = opt->total_elements;
    int s = 0;
    bounds[0] = 0;
    for (int r = 1; r <= parts; r++) {
        int64_t target = (int64_t)((__int128)total * r / parts);
        while (s < opt->n_shards && adadelta_dist_shard_offset(opt, s) < target)
            s++;
        bounds[r] = r == parts ? opt->n_shards : s;
    }
}

int adadelta_dist_own_shards(adadelta *opt, int lo, int hi)
{
    if (opt->applied || opt->partitioned)
        return adadelta__fail(ADADELTA_ESTATE,
                              "own_shards: only once, before the first apply");
    if (lo < 0 || hi < lo || hi > opt->n_shards)
        return adadelta__fail(ADADELTA_EINVAL, "own_shards: range [%d, %d) is outside [0, %d)",
                              lo, hi, opt->n_shards);
    int rc = adadelta__build(opt);
    if (rc)
        return rc;
    /* The owned element range of each variable: [range[2v], range[2v+1]). */
    int n = opt->n_vars;
    int64_t *range = calloc((size_t)n * 2 + 2, sizeof *range);
    if (!range)
        return adadelta__fail(ADADELTA_ENOMEM, "own_shards: out of memory");
    for (int s = lo; s < hi; s++) {
        const adadelta_shard *sh = &opt->shards[s];
        if (range[2 * sh->var] == range[2 * sh->var + 1])
            range[2 * sh->var] = sh->begin;
        range[2 * sh->var + 1] = sh->end;
    }
    /* New, smaller blocks for the sharded slots, holding the owned part of
     * the current state (zeros, or what a load put there). Swapped in only
     * when all exist. */
    static const int sharded_slots[] = {ADADELTA_SLOT_ACCUMULATED_GRAD,
                                        ADADELTA_SLOT_ACCUMULATED_DELTA_VAR,
                                        ADADELTA_SLOT_EMA};
    float *fresh[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        int k = sharded_slots[i];
        if (!opt->slot_block[k])
            continue;
        int64_t total = 0;
        for (int v = 0; v < n; v++)
            total += (range[2 * v + 1] - range[2 * v] + 15) & ~(int64_t)15;
        if (!(fresh[i] = adadelta__alloc_floats(total))) {
            for (int j = 0; j < i; j++)
                free(fresh[j]);
            free(range);
            return adadelta__fail(ADADELTA_ENOMEM, "own_shards: out of memory");
        }
        int64_t at = 0;
        for (int v = 0; v < n; v++) {
            const adadelta_var *var = &opt->vars[v];
            int64_t b = range[2 * v], e = range[2 * v + 1];
            memcpy(fresh[i] + at, var->slot[k] + (b - var->slot_begin),
                   (size_t)(e - b) * sizeof(float));
            at += (e - b + 15) & ~(int64_t)15;
        }
    }
    for (int i = 0; i < 3; i++) {
        int k = sharded_slots[i];
        if (!fresh[i])
            continue;
        free(opt->slot_block[k]);
        opt->slot_block[k] = fresh[i];
    }
    for (int v = 0; v < n; v++) {
        opt->vars[v].slot_begin = range[2 * v];
        opt->vars[v].slot_end = range[2 * v + 1];
    }
    for (int i = 0; i < 3; i++) {
        int k = sharded_slots[i];
        int64_t at = 0;
        for (int v = 0; v < n; v++) {
            opt->vars[v].slot[k] = fresh[i] ? fresh[i] + at : NULL;
            at += (adadelta__slot_length(&opt->vars[v], k) + 15) & ~(int64_t)15;
        }
    }
    free(range);
    opt->own_lo = lo;
    opt->own_hi = hi;
    opt->partitioned = 1;
    opt->bounds_valid = 0;
    return ADADELTA_OK;
}

int adadelta_dist_slot_range(const adadelta *opt, int v, adadelta_slot_kind k,
                             float **ptr, int64_t *begin, int64_t *end)
{
    if (adadelta__build(opt))
        return ADADELTA_ENOMEM;
    if (v < 0 || v >= opt->n_vars || (int)k < 0 || (int)k >= ADADELTA_N_SLOTS ||
        !opt->vars[v].slot[k])
        return adadelta__fail(ADADELTA_ENOTFOUND, "slot_range: no slot %d of variable %d",
                              (int)k, v);
    const adadelta_var *var = &opt->vars[v];
    *ptr = var->slot[k];
    if (k == ADADELTA_SLOT_GRADIENT_ACCUMULATOR) {
        *begin = 0;
        *end = var->size;
    } else {
        *begin = var->slot_begin;
        *end = var->slot_end;
    }
    return ADADELTA_OK;
}

void adadelta_dist_set_counters(adadelta *opt, int64_t iterations, float dynamic_scale,
                                int64_t step_counter)
{
    opt->iterations = iterations;
    opt->dynamic_scale = dynamic_scale;
    opt->step_counter = step_counter;
}

int adadelta_dist_vars_changed(const adadelta *opt) { return opt->vars_changed; }
