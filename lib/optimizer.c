/* optimizer.c - create, destroy and build (Keras's build(): the slot
 * blocks), the thread count, the counters. */
#include "internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void *adadelta__alloc_bytes(size_t bytes)
{
    bytes = (bytes ? bytes + 63 : 64) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static void *alloc_untouched(size_t bytes)
{
    return aligned_alloc(64, (bytes ? bytes + 63 : 64) & ~(size_t)63);
}

/* Each variable's part of a slot block starts 64-byte aligned: its bytes
 * rounded up to 64. */
static size_t padded(int64_t n, size_t esize) { return ((size_t)n * esize + 63) & ~(size_t)63; }

/* First touch: each thread zeroes the slot elements of the shards it will
 * update, so on a NUMA machine its pages sit on its own node. */
static void shard_first_touch(adadelta *opt, int s, void *ctx)
{
    (void)ctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        if (var->slot[k])
            memset(adadelta__slot_at(var, k, sh->begin), 0,
                   (size_t)(sh->end - sh->begin) * var->esize);
}

int adadelta__build(const adadelta *copt)
{
    adadelta *opt = (adadelta *)copt; /* lazily built; never a const object */
    if (opt->built)
        return ADADELTA_OK;
    char *block[ADADELTA_N_SLOTS] = {NULL};
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        if (!adadelta__slot_needed(&opt->cfg, k))
            continue;
        size_t total = 0;
        for (int v = 0; v < opt->n_vars; v++)
            total += padded(adadelta__slot_length(&opt->vars[v], k), opt->vars[v].esize);
        if (!(block[k] = alloc_untouched(total))) {
            for (int j = 0; j < k; j++)
                free(block[j]);
            return adadelta__fail(ADADELTA_ENOMEM, "build: out of memory for %zu slot bytes",
                                  total);
        }
    }
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        opt->slot_block[k] = block[k];
        size_t at = 0;
        for (int v = 0; v < opt->n_vars; v++) {
            adadelta_var *var = &opt->vars[v];
            int64_t n = adadelta__slot_length(var, k);
            size_t used = (size_t)n * var->esize, all = padded(n, var->esize);
            var->slot[k] = block[k] ? block[k] + at : NULL;
            if (block[k]) /* the alignment padding; shards zero the rest */
                memset(block[k] + at + used, 0, all - used);
            at += all;
        }
    }
    adadelta__for_each_shard(opt, shard_first_touch, NULL); /* never sharded before build */
    opt->built = 1;
    return ADADELTA_OK;
}

int adadelta_build(adadelta *opt)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "build: optimizer is NULL");
    return adadelta__build(opt);
}

int adadelta__sharded(const adadelta *opt)
{
    return opt->own_lo != 0 || opt->own_hi != opt->n_shards;
}

int adadelta__refuse_wrapped(const adadelta *opt, const char *who)
{
    if (!opt->wrapped)
        return ADADELTA_OK;
    return adadelta__fail(ADADELTA_ESTATE,
                          "%s: this optimizer is driven by adadelta_mpi; call the "
                          "adadelta_mpi_* function instead",
                          who);
}

int adadelta_create(const adadelta_config *cfg, adadelta **out)
{
    if (!out)
        return adadelta__fail(ADADELTA_EINVAL, "adadelta_create: out is NULL");
    *out = NULL;
    int rc = adadelta_config_validate(cfg);
    if (rc)
        return rc;
    adadelta *opt = calloc(1, sizeof *opt);
    if (!opt)
        return adadelta__fail(ADADELTA_ENOMEM, "adadelta_create: out of memory");
    opt->cfg = *cfg;
    /* LossScaleOptimizer clears the inner loss_scale_factor (Keras 3.10). */
    if (opt->cfg.dynamic_loss_scale)
        opt->cfg.loss_scale_factor = ADADELTA_UNSET;
    opt->dynamic_scale = (float)cfg->initial_scale;
    opt->threads = omp_get_max_threads();
    opt->checkpoint_buffer = ADADELTA_CHECKPOINT_BUFFER_DEFAULT;
    opt->thread_bounds = calloc((size_t)opt->threads + 1, sizeof(int));
    if (!opt->thread_bounds) {
        free(opt);
        return adadelta__fail(ADADELTA_ENOMEM, "adadelta_create: out of memory");
    }
    *out = opt;
    return ADADELTA_OK;
}

void adadelta_destroy(adadelta *opt)
{
    if (!opt)
        return;
    for (int v = 0; v < opt->n_vars; v++) {
        adadelta_var *var = &opt->vars[v];
        free(var->name);
        if (var->owns_data)
            free(var->data);
    }
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        free(opt->slot_block[k]);
    free(opt->vars);
    free(opt->name_index);
    free(opt->shards);
    free(opt->partials);
    free(opt->shard_flags);
    free(opt->thread_bounds);
    free(opt->var_clip_b);
    free(opt->var_grads);
    free(opt->dist_half);
    if (opt->has_exclude_regex)
        regfree(&opt->exclude_regex);
    free(opt);
}

const adadelta_config *adadelta_get_config(const adadelta *opt)
{
    return opt ? &opt->cfg : NULL;
}

int adadelta_create_from_json(const char *config_json, adadelta **out)
{
    if (!out)
        return adadelta__fail(ADADELTA_EINVAL, "adadelta_create_from_json: out is NULL");
    *out = NULL;
    adadelta_config cfg;
    int rc = adadelta_config_from_json(&cfg, config_json);
    return rc ? rc : adadelta_create(&cfg, out);
}

int adadelta__set_learning_rate(adadelta *opt, const adadelta_learning_rate *lr)
{
    adadelta_config next = opt->cfg;
    next.learning_rate = *lr;
    int rc = adadelta_config_validate(&next);
    if (rc)
        return rc;
    opt->cfg.learning_rate = *lr;
    return ADADELTA_OK;
}

int adadelta_set_learning_rate_callback(adadelta *opt, adadelta_lr_callback fn, void *user_data)
{
    adadelta_learning_rate lr;
    adadelta_lr_from_callback(&lr, fn, user_data);
    return adadelta_set_learning_rate(opt, &lr);
}

int adadelta_set_learning_rate(adadelta *opt, const adadelta_learning_rate *lr)
{
    if (!opt || !lr)
        return adadelta__fail(ADADELTA_EINVAL, "set_learning_rate: NULL argument");
    int rc = adadelta__refuse_wrapped(opt, "set_learning_rate");
    return rc ? rc : adadelta__set_learning_rate(opt, lr);
}

int adadelta_set_threads(adadelta *opt, int threads)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "set_threads: optimizer is NULL");
    if (threads < 1 || threads > 4096)
        return adadelta__fail(ADADELTA_EINVAL, "set_threads: threads = %d is outside [1, 4096]",
                              threads);
    int *bounds = calloc((size_t)threads + 1, sizeof(int));
    if (!bounds)
        return adadelta__fail(ADADELTA_ENOMEM, "set_threads: out of memory");
    free(opt->thread_bounds);
    opt->thread_bounds = bounds;
    opt->threads = threads;
    opt->bounds_valid = 0;
    return ADADELTA_OK;
}

int adadelta_threads(const adadelta *opt) { return opt ? opt->threads : 0; }

int64_t adadelta_iterations(const adadelta *opt) { return opt ? opt->iterations : 0; }
float adadelta_dynamic_scale(const adadelta *opt) { return opt ? opt->dynamic_scale : NAN; }
int64_t adadelta_step_counter(const adadelta *opt) { return opt ? opt->step_counter : 0; }

float adadelta_current_learning_rate(const adadelta *opt)
{
    return opt ? adadelta__learning_rate_now(opt) : NAN;
}
