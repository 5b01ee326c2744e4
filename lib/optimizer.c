/* optimizer.c - create/destroy, variables, and apply() in Keras's order.
 * The arithmetic lives in kernels/step.c; this file decides which loops run
 * over which shards (see internal.h for the shard scheme). */
#include "internal.h"
#include "adadelta_dist.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

float *adadelta__alloc_floats(int64_t n)
{
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static int slot_needed(const adadelta_config *cfg, int k)
{
    switch (k) {
    case ADADELTA_SLOT_ACCUMULATED_GRAD:
    case ADADELTA_SLOT_ACCUMULATED_DELTA_VAR:
        return 1;
    case ADADELTA_SLOT_EMA:
        return cfg->use_ema;
    case ADADELTA_SLOT_GRADIENT_ACCUMULATOR:
        return cfg->gradient_accumulation_steps != 0;
    }
    return 0;
}

int64_t adadelta__slot_length(const adadelta_var *var, int k)
{
    return k == ADADELTA_SLOT_GRADIENT_ACCUMULATOR ? var->size
                                                   : var->slot_end - var->slot_begin;
}

/* Each variable's part starts 64-byte aligned. */
static int64_t padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef void (*shard_fn)(adadelta *opt, int s, void *ctx);
static void for_each_shard(adadelta *opt, shard_fn fn, void *ctx);

/* First touch: each thread zeroes the slot elements of the shards it will
 * update, so on a NUMA machine its pages sit on its own node. */
static void shard_first_touch(adadelta *opt, int s, void *ctx)
{
    (void)ctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        if (var->slot[k])
            memset(var->slot[k] + sh->begin, 0, (size_t)(sh->end - sh->begin) * sizeof(float));
}

static float *alloc_untouched(int64_t n)
{
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

int adadelta__build(const adadelta *copt)
{
    adadelta *opt = (adadelta *)copt; /* lazily built; never a const object */
    if (opt->built)
        return ADADELTA_OK;
    float *block[ADADELTA_N_SLOTS] = {NULL};
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        if (!slot_needed(&opt->cfg, k))
            continue;
        int64_t total = 0;
        for (int v = 0; v < opt->n_vars; v++)
            total += padded(adadelta__slot_length(&opt->vars[v], k));
        if (!(block[k] = alloc_untouched(total))) {
            for (int j = 0; j < k; j++)
                free(block[j]);
            return adadelta__fail(ADADELTA_ENOMEM, "build: out of memory for %lld slot elements",
                                  (long long)total);
        }
    }
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        opt->slot_block[k] = block[k];
        int64_t at = 0;
        for (int v = 0; v < opt->n_vars; v++) {
            adadelta_var *var = &opt->vars[v];
            int64_t n = adadelta__slot_length(var, k);
            var->slot[k] = block[k] ? block[k] + at : NULL;
            if (block[k]) /* the alignment padding; shards zero the rest */
                memset(var->slot[k] + n, 0, (size_t)(padded(n) - n) * sizeof(float));
            at += padded(n);
        }
    }
    for_each_shard(opt, shard_first_touch, NULL); /* never sharded before build */
    opt->built = 1;
    return ADADELTA_OK;
}

int adadelta_build(adadelta *opt)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "build: optimizer is NULL");
    return adadelta__build(opt);
}

int adadelta__slot_present(const adadelta *opt, adadelta_slot_kind k)
{
    return slot_needed(&opt->cfg, (int)k);
}

int adadelta__sharded(const adadelta *opt)
{
    return opt->own_lo != 0 || opt->own_hi != opt->n_shards;
}

/* ----------------------------------------------------- create/destroy */

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
    free(opt->shards);
    free(opt->partials);
    free(opt->shard_flags);
    free(opt->thread_bounds);
    free(opt->var_clip_b);
    free(opt->var_grads);
    free(opt->var_present);
    if (opt->has_exclude_regex)
        regfree(&opt->exclude_regex);
    free(opt);
}

const adadelta_config *adadelta_get_config(const adadelta *opt)
{
    return opt ? &opt->cfg : NULL;
}

/* ---------------------------------------------------------- variables */

static int index_of(const adadelta *opt, const char *name)
{
    for (int v = 0; v < opt->n_vars; v++)
        if (strcmp(opt->vars[v].name, name) == 0)
            return v;
    return -1;
}

/* 1 if s is valid UTF-8 (names go into a JSON header). */
static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 0 : (*s >> 5) == 6 ? 1 : (*s >> 4) == 14 ? 2 : (*s >> 3) == 30 ? 3 : -1;
        if (n < 0)
            return 0;
        for (int i = 1; i <= n; i++)
            if ((s[i] & 0xC0) != 0x80)
                return 0;
        s += n + 1;
    }
    return 1;
}

static int check_new_variable(const adadelta *opt, const char *name,
                              adadelta_dtype dtype, const void *data, int ndim,
                              const int64_t *shape, int64_t *size_out)
{
    if (!name || !*name)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable: the name is empty");
    /* Names become safetensors tensor names next to the optimizer's own. */
    if (!valid_utf8((const unsigned char *)name) || !strcmp(name, "__metadata__") ||
        !strncmp(name, "optimizer/", 10))
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': the name must be UTF-8 and neither "
                              "__metadata__ nor start with optimizer/",
                              name);
    if (opt->built)
        return adadelta__fail(ADADELTA_ESTATE,
                              "add_variable '%s': variables can only be added "
                              "before the optimizer is built (first apply, save, "
                              "load or slot access)",
                              name);
    if (dtype != ADADELTA_F32)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': dtype %d is not supported "
                              "(only ADADELTA_F32)",
                              name, (int)dtype);
    if (ndim < 0 || ndim > ADADELTA_MAX_DIMS)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': ndim = %d is outside [0, %d]",
                              name, ndim, ADADELTA_MAX_DIMS);
    if (ndim > 0 && !shape)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': shape is NULL",
                              name);
    int64_t size = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "add_variable '%s': shape[%d] = %lld is negative",
                                  name, d, (long long)shape[d]);
        if (shape[d] != 0 && size > (INT64_MAX / 8) / shape[d])
            return adadelta__fail(ADADELTA_EINVAL,
                                  "add_variable '%s': the shape has too many elements",
                                  name);
        size *= shape[d];
    }
    if (!data && size > 0)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': data is NULL",
                              name);
    if (index_of(opt, name) >= 0)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': a variable with this name exists",
                              name);
    *size_out = size;
    return ADADELTA_OK;
}

/* realloc *pp (a pointer to any array pointer) to n elements of elem
 * bytes; *pp is left alone on failure. */
static int grow(void *pp, size_t n, size_t elem)
{
    void *old, *q; /* memcpy: *pp is some T *, not a void * */
    memcpy(&old, pp, sizeof old);
    if (!(q = realloc(old, n * elem)))
        return ADADELTA_ENOMEM;
    memcpy(pp, &q, sizeof q);
    return ADADELTA_OK;
}

static int doubled_capacity(int cap, int need, int first)
{
    int64_t c = cap ? cap : first;
    while (c < need)
        c *= 2;
    return c > INT32_MAX ? INT32_MAX : (int)c;
}

/* Grows the per-variable and per-shard arrays; nothing else changes, so a
 * failure leaves the optimizer as it was. */
static int reserve(adadelta *opt, int n_vars, int n_shards)
{
    if (n_vars > opt->cap_vars) {
        size_t cap = (size_t)doubled_capacity(opt->cap_vars, n_vars, 16);
        if (grow(&opt->vars, cap, sizeof *opt->vars) ||
            grow(&opt->var_clip_b, cap, sizeof *opt->var_clip_b) ||
            grow(&opt->var_grads, cap, sizeof *opt->var_grads) ||
            grow(&opt->var_present, cap, sizeof *opt->var_present))
            return ADADELTA_ENOMEM;
        opt->cap_vars = (int)cap;
    }
    if (n_shards > opt->cap_shards) {
        size_t cap = (size_t)doubled_capacity(opt->cap_shards, n_shards, 64);
        if (grow(&opt->shards, cap, sizeof *opt->shards) ||
            grow(&opt->partials, cap, sizeof *opt->partials) ||
            grow(&opt->shard_flags, cap, sizeof *opt->shard_flags))
            return ADADELTA_ENOMEM;
        opt->cap_shards = (int)cap;
    }
    return ADADELTA_OK;
}

int adadelta_add_variable(adadelta *opt, const char *name, adadelta_dtype dtype,
                          void *data, int ndim, const int64_t *shape)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable: optimizer is NULL");
    int64_t size;
    int rc = check_new_variable(opt, name, dtype, data, ndim, shape, &size);
    if (rc)
        return rc;
    if (opt->n_vars == INT32_MAX - 1)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': too many variables",
                              name);
    int64_t n_new_shards = (size + ADADELTA_SHARD_ELEMS - 1) / ADADELTA_SHARD_ELEMS;
    if (n_new_shards > INT32_MAX - 1 - opt->n_shards)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': too many elements",
                              name);
    if (reserve(opt, opt->n_vars + 1, opt->n_shards + (int)n_new_shards))
        return adadelta__fail(ADADELTA_ENOMEM, "add_variable '%s': out of memory", name);

    adadelta_var var;
    memset(&var, 0, sizeof var);
    if (!(var.name = strdup(name)))
        return adadelta__fail(ADADELTA_ENOMEM, "add_variable '%s': out of memory", name);
    var.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        var.shape[d] = shape[d];
    var.size = size;
    var.flat_offset = opt->total_elements;
    var.data = data;
    var.slot_begin = 0;
    var.slot_end = size;
    var.uses_weight_decay = 1;

    int v = opt->n_vars;
    for (int64_t b = 0; b < size; b += ADADELTA_SHARD_ELEMS) {
        adadelta_shard *s = &opt->shards[opt->n_shards++];
        s->var = v;
        s->begin = b;
        s->end = b + ADADELTA_SHARD_ELEMS < size ? b + ADADELTA_SHARD_ELEMS : size;
    }
    opt->vars[v] = var;
    opt->n_vars++;
    opt->total_elements += size;
    opt->own_lo = 0;
    opt->own_hi = opt->n_shards;
    opt->bounds_valid = 0;
    return v;
}

int adadelta_num_variables(const adadelta *opt) { return opt ? opt->n_vars : 0; }

int adadelta_find_variable(const adadelta *opt, const char *name)
{
    if (!opt || !name)
        return adadelta__fail(ADADELTA_ENOTFOUND, "find_variable: NULL argument");
    int v = index_of(opt, name);
    if (v >= 0)
        return v;
    return adadelta__fail(ADADELTA_ENOTFOUND, "no variable named '%s'", name);
}

static const adadelta_var *var_at(const adadelta *opt, int index)
{
    if (!opt || index < 0 || index >= opt->n_vars)
        return NULL;
    return &opt->vars[index];
}

const char *adadelta_variable_name(const adadelta *opt, int index)
{
    const adadelta_var *v = var_at(opt, index);
    return v ? v->name : NULL;
}

int64_t adadelta_variable_size(const adadelta *opt, int index)
{
    const adadelta_var *v = var_at(opt, index);
    return v ? v->size : -1;
}

int adadelta_variable_shape(const adadelta *opt, int index, int *ndim,
                            int64_t shape[ADADELTA_MAX_DIMS])
{
    const adadelta_var *v = var_at(opt, index);
    if (!v)
        return adadelta__fail(ADADELTA_ENOTFOUND, "variable index %d does not exist",
                              index);
    if (!ndim || !shape)
        return adadelta__fail(ADADELTA_EINVAL, "variable_shape: NULL output");
    *ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++)
        shape[d] = v->shape[d];
    return ADADELTA_OK;
}

float *adadelta_variable_data(const adadelta *opt, int index)
{
    const adadelta_var *v = var_at(opt, index);
    return v ? v->data : NULL;
}

float *adadelta_slot(const adadelta *opt, int index, adadelta_slot_kind slot)
{
    const adadelta_var *v = var_at(opt, index);
    if (!v) {
        adadelta__fail(ADADELTA_ENOTFOUND, "slot: variable index %d does not exist",
                       index);
        return NULL;
    }
    if ((int)slot < 0 || (int)slot >= ADADELTA_N_SLOTS || !slot_needed(&opt->cfg, (int)slot)) {
        adadelta__fail(ADADELTA_ENOTFOUND,
                       "slot: variable '%s' has no slot %d with this config",
                       v->name, (int)slot);
        return NULL;
    }
    if (adadelta__build(opt))
        return NULL;
    if (!v->slot[slot]) {
        adadelta__fail(ADADELTA_ENOTFOUND,
                       "slot: variable '%s' has no slot %d with this config",
                       v->name, (int)slot);
        return NULL;
    }
    if (slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR &&
        (v->slot_begin != 0 || v->slot_end != v->size)) {
        adadelta__fail(ADADELTA_ESTATE,
                       "slot: variable '%s' is sharded; use the MPI layer", v->name);
        return NULL;
    }
    return v->slot[slot];
}

/* ---------------------------------------------------- weight decay set */

static const char *short_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

int adadelta_exclude_from_weight_decay(adadelta *opt, const int *indices,
                                       int n_indices, const char *const *names,
                                       int n_names)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "exclude_from_weight_decay: NULL");
    if (opt->applied)
        return adadelta__fail(ADADELTA_ESTATE,
                              "exclude_from_weight_decay: only before the "
                              "first apply");
    if (n_indices < 0 || n_names < 0 || (n_indices && !indices) || (n_names && !names))
        return adadelta__fail(ADADELTA_EINVAL,
                              "exclude_from_weight_decay: bad list arguments");
    for (int i = 0; i < n_indices; i++)
        if (indices[i] < 0 || indices[i] >= opt->n_vars)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "exclude_from_weight_decay: variable index "
                                  "%d does not exist",
                                  indices[i]);
    size_t len = 1;
    for (int i = 0; i < n_names; i++) {
        if (!names[i])
            return adadelta__fail(ADADELTA_EINVAL,
                                  "exclude_from_weight_decay: names[%d] is NULL", i);
        len += strlen(names[i]) + 1;
    }
    regex_t re;
    int have_re = 0;
    if (n_names > 0) {
        char *pattern = malloc(len);
        if (!pattern)
            return adadelta__fail(ADADELTA_ENOMEM, "exclude_from_weight_decay: out of memory");
        pattern[0] = '\0';
        for (int i = 0; i < n_names; i++) {
            if (i)
                strcat(pattern, "|");
            strcat(pattern, names[i]);
        }
        int err = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
        if (err) {
            char msg[128];
            regerror(err, &re, msg, sizeof msg);
            adadelta__fail(ADADELTA_EINVAL,
                           "exclude_from_weight_decay: pattern '%s' is not a "
                           "valid regular expression: %s",
                           pattern, msg);
            free(pattern);
            return ADADELTA_EINVAL;
        }
        free(pattern);
        have_re = 1;
    }
    /* Like Keras, each call replaces the previous exclusions. */
    if (opt->has_exclude_regex)
        regfree(&opt->exclude_regex);
    opt->has_exclude_regex = have_re;
    if (have_re)
        opt->exclude_regex = re;
    for (int v = 0; v < opt->n_vars; v++)
        opt->vars[v].excluded_by_index = 0;
    for (int i = 0; i < n_indices; i++)
        opt->vars[indices[i]].excluded_by_index = 1;
    for (int v = 0; v < opt->n_vars; v++) {
        adadelta_var *var = &opt->vars[v];
        int excluded = var->excluded_by_index ||
                       (have_re && regexec(&opt->exclude_regex, short_name(var->name),
                                           0, NULL, 0) == 0);
        var->uses_weight_decay = !excluded;
    }
    return ADADELTA_OK;
}

int adadelta_uses_weight_decay(const adadelta *opt, int index)
{
    const adadelta_var *v = var_at(opt, index);
    return v ? v->uses_weight_decay : 0;
}

/* ------------------------------------------------------------- threads */

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

/* Thread t always gets the same shards (first-touch friendly), about equal
 * in elements. No allocation: the array was sized by set_threads. */
int adadelta__ensure_thread_bounds(adadelta *opt)
{
    if (opt->bounds_valid)
        return ADADELTA_OK;
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
    return ADADELTA_OK;
}

/* Runs body(opt, shard, ctx) for every owned shard on the thread team. */

static void for_each_shard(adadelta *opt, shard_fn fn, void *ctx)
{
    adadelta__ensure_thread_bounds(opt);
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

/* Same, but over all shards (gradient accumulators are never sharded). */
static void for_all_shards(adadelta *opt, shard_fn fn, void *ctx)
{
    int lo = opt->own_lo, hi = opt->own_hi;
    if (lo == 0 && hi == opt->n_shards) {
        for_each_shard(opt, fn, ctx);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(opt->threads)
    for (int s = 0; s < opt->n_shards; s++)
        fn(opt, s, ctx);
}

/* ------------------------------------------------------- the apply step */

int64_t adadelta_iterations(const adadelta *opt) { return opt ? opt->iterations : 0; }
float adadelta_dynamic_scale(const adadelta *opt) { return opt ? opt->dynamic_scale : NAN; }
int64_t adadelta_step_counter(const adadelta *opt) { return opt ? opt->step_counter : 0; }

float adadelta__learning_rate_now(const adadelta *opt)
{
    return adadelta_lr_evaluate(&opt->cfg.learning_rate, opt->iterations);
}

float adadelta_current_learning_rate(const adadelta *opt)
{
    return opt ? adadelta__learning_rate_now(opt) : NAN;
}

/* What one call does, shared by the shard loops. */
typedef struct call_ctx {
    const float *const *grads; /* per variable; NULL = no gradient */
    adadelta_step_params p;
    float *send;               /* dist_begin: where prepared gradients go */
} call_ctx;

static int64_t public_iterations(const adadelta *opt)
{
    int64_t n = opt->cfg.gradient_accumulation_steps;
    return n ? opt->iterations / n : opt->iterations;
}

/* EMA constants for this call (Keras's _update_model_variables_moving_average
 * and the overwrite check, both on the "public" iteration count). */
static void set_ema_params(const adadelta *opt, adadelta_step_params *p)
{
    p->ema = opt->cfg.use_ema;
    if (!p->ema)
        return;
    int64_t it = public_iterations(opt);
    p->ema_m = (float)(it != 0) * (float)opt->cfg.ema_momentum;
    p->ema_one_minus_m = 1.0f - p->ema_m;
    int64_t f = opt->cfg.ema_overwrite_frequency;
    p->ema_overwrite = f > 0 && (it + 1) % f == 0;
}

static void shard_finite(adadelta *opt, int s, void *vctx)
{
    call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const float *g = c->grads[sh->var];
    opt->shard_flags[s] = !g || adadelta_kernel_all_finite(sh->end - sh->begin, g + sh->begin);
}

/* 1 if every present gradient is finite (all shards, in parallel). */
static int grads_finite(adadelta *opt, call_ctx *c)
{
    for_all_shards(opt, shard_finite, c);
    for (int s = 0; s < opt->n_shards; s++)
        if (!opt->shard_flags[s])
            return 0;
    return 1;
}

static void shard_accumulate(adadelta *opt, int s, void *vctx)
{
    call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const float *g = c->grads[sh->var];
    if (g)
        adadelta_kernel_accumulate(&c->p, sh->end - sh->begin, g + sh->begin,
                                   opt->vars[sh->var].slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] +
                                       sh->begin);
}

static void shard_prepare(adadelta *opt, int s, void *vctx)
{
    call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const float *g = c->grads[sh->var];
    if (g)
        adadelta_kernel_prepare(&c->p, sh->end - sh->begin, g + sh->begin,
                                c->p.accumulate
                                    ? var->slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] + sh->begin
                                    : NULL,
                                c->send + var->flat_offset + sh->begin);
}

static void shard_zero_accumulator(adadelta *opt, int s, void *vctx)
{
    (void)vctx;
    const adadelta_shard *sh = &opt->shards[s];
    memset(opt->vars[sh->var].slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] + sh->begin, 0,
           (size_t)(sh->end - sh->begin) * sizeof(float));
}

static float *slot_at(const adadelta_var *var, int k, int64_t begin)
{
    return var->slot[k] ? var->slot[k] + (begin - var->slot_begin) : NULL;
}

static void shard_sum_squares(adadelta *opt, int s, void *vctx)
{
    call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const float *g = c->grads[sh->var];
    opt->partials[s] =
        g ? adadelta_kernel_sum_squares(
                &c->p, sh->end - sh->begin, g + sh->begin,
                c->p.accumulate ? var->slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] + sh->begin
                                : NULL)
          : 0.0;
}

/* The step (or, for a variable without gradient, its EMA and accumulator
 * reset) over one shard. clipnorm's denominator is per variable. */
static void shard_step(adadelta *opt, int s, void *vctx)
{
    const call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    adadelta_var *var = &opt->vars[sh->var];
    const float *g = c->grads[sh->var];
    int64_t n = sh->end - sh->begin;
    float *data = var->data + sh->begin;
    if (g) {
        adadelta_step_params p = c->p;
        if (p.clip == ADADELTA_CLIP_NORM)
            p.clip_b = opt->var_clip_b[sh->var];
        p.weight_decay = p.weight_decay && var->uses_weight_decay;
        adadelta_kernel_step(
            &p, n, data, g + sh->begin,
            p.accumulate ? var->slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] + sh->begin : NULL,
            slot_at(var, ADADELTA_SLOT_ACCUMULATED_GRAD, sh->begin),
            slot_at(var, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR, sh->begin),
            slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
    } else {
        if (c->p.accumulate)
            memset(var->slot[ADADELTA_SLOT_GRADIENT_ACCUMULATOR] + sh->begin, 0,
                   (size_t)n * sizeof(float));
        if (c->p.ema)
            adadelta_kernel_ema(&c->p, n, data, slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
    }
}

static void shard_ema(adadelta *opt, int s, void *vctx)
{
    call_ctx *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    adadelta_var *var = &opt->vars[sh->var];
    adadelta_kernel_ema(&c->p, sh->end - sh->begin, var->data + sh->begin,
                        slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
}

/* Loss-scale divisor for this call: LossScaleOptimizer's dynamic scale, or
 * loss_scale_factor. */
static void set_divisor(const adadelta *opt, adadelta_step_params *p)
{
    if (opt->cfg.dynamic_loss_scale) {
        p->divide = 1;
        p->divisor = opt->dynamic_scale;
    } else if (adadelta_is_set(opt->cfg.loss_scale_factor)) {
        p->divide = 1;
        p->divisor = (float)opt->cfg.loss_scale_factor;
    }
}

static int is_accumulation_only(const adadelta *opt)
{
    int64_t n = opt->cfg.gradient_accumulation_steps;
    return n && (opt->iterations + 1) % n != 0;
}

/* LossScaleOptimizer after a call with finite gradients (an update or an
 * accumulation-only call alike): grow the scale every growth_steps calls. */
static void count_finite_call(adadelta *opt)
{
    if (!opt->cfg.dynamic_loss_scale)
        return;
    if (opt->step_counter == opt->cfg.dynamic_growth_steps - 1) {
        opt->step_counter = 0;
        opt->dynamic_scale = opt->dynamic_scale * 2.0f;
    } else {
        opt->step_counter++;
    }
}

/* An accumulation-only call: acc += g, EMA, iterations + 1. */
static void accumulate_call(adadelta *opt, call_ctx *c)
{
    for_all_shards(opt, shard_accumulate, c);
    set_ema_params(opt, &c->p);
    if (c->p.ema)
        for_each_shard(opt, shard_ema, c);
    opt->vars_changed = c->p.ema && c->p.ema_overwrite;
    count_finite_call(opt);
    opt->iterations++;
}

static void skip_nonfinite_call(adadelta *opt)
{
    opt->step_counter = 0;
    opt->dynamic_scale = opt->dynamic_scale / 2.0f;
    opt->vars_changed = 0;
}

/* Clip constants from the sums of squares, as Keras's _clip_by_norm and
 * clip_by_global_norm compute them in float32. var_clip_b gets the clipnorm
 * denominators. */
static void set_clip_params(adadelta *opt, adadelta_step_params *p, float *var_clip_b)
{
    const adadelta_config *cfg = &opt->cfg;
    if (adadelta_is_set(cfg->clipnorm) && cfg->clipnorm > 0) {
        float c = (float)cfg->clipnorm;
        p->clip = ADADELTA_CLIP_NORM;
        p->clip_a = c;
        int s = 0;
        for (int v = 0; v < opt->n_vars; v++) {
            double sum = 0.0;
            for (; s < opt->n_shards && opt->shards[s].var == v; s++)
                sum += opt->partials[s];
            float l2sum = (float)sum;
            float l2norm = l2sum > 0 ? sqrtf(l2sum) : l2sum;
            var_clip_b[v] = isnan(l2norm) ? l2norm : (l2norm > c ? l2norm : c);
        }
    } else if (adadelta_is_set(cfg->global_clipnorm) && cfg->global_clipnorm > 0) {
        double sum = 0.0;
        for (int s = 0; s < opt->n_shards; s++)
            sum += opt->partials[s];
        float c = (float)cfg->global_clipnorm;
        float norm = sqrtf((float)sum);
        float inv_norm = 1.0f / norm;
        float inv_c = (float)(1.0 / cfg->global_clipnorm);
        float smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
        p->clip = ADADELTA_CLIP_SCALE;
        p->clip_a = c * smaller + (norm - norm);
    } else if (adadelta_is_set(cfg->clipvalue) && cfg->clipvalue > 0) {
        p->clip = ADADELTA_CLIP_VALUE;
        p->clip_a = (float)cfg->clipvalue;
    }
}

static int needs_norms(const adadelta_config *cfg)
{
    return (adadelta_is_set(cfg->clipnorm) && cfg->clipnorm > 0) ||
           (adadelta_is_set(cfg->global_clipnorm) && cfg->global_clipnorm > 0);
}

/* The update part of a call (Keras's _backend_apply_gradients after the
 * accumulation branch): clip, weight decay, step, reset, EMA, counters. The
 * learning rate is evaluated once, before anything changes. */
static int update_call(adadelta *opt, call_ctx *c, const adadelta_dist_ops *ops)
{
    adadelta_step_params *p = &c->p;
    const adadelta_config *cfg = &opt->cfg;
    float lr = adadelta__learning_rate_now(opt);
    p->lr = lr;
    p->rho = (float)cfg->rho;
    p->one_minus_rho = (float)(1.0 - cfg->rho);
    p->epsilon = (float)cfg->epsilon;
    p->weight_decay = adadelta_is_set(cfg->weight_decay);
    p->wd = (float)cfg->weight_decay;

    if (needs_norms(cfg)) {
        for_each_shard(opt, shard_sum_squares, c);
        if (ops && opt->partitioned) {
            for (int s = 0; s < opt->own_lo; s++)
                opt->partials[s] = 0.0;
            for (int s = opt->own_hi; s < opt->n_shards; s++)
                opt->partials[s] = 0.0;
            int rc = ops->sum_doubles(ops->ctx, opt->partials, opt->n_shards);
            if (rc)
                return rc;
        }
    }
    set_clip_params(opt, p, opt->var_clip_b);
    set_ema_params(opt, p);
    for_each_shard(opt, shard_step, c);
    opt->vars_changed = 1;
    count_finite_call(opt);
    opt->iterations++;
    return ADADELTA_OK;
}

static int check_grads_arg(adadelta *opt, const float *const *grads, const char *who)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "%s: optimizer is NULL", who);
    if (!grads)
        return adadelta__fail(ADADELTA_EINVAL, "%s: grads is NULL", who);
    for (int v = 0; v < opt->n_vars; v++)
        if (grads[v])
            return ADADELTA_OK;
    return adadelta__fail(ADADELTA_ENOGRAD, "%s: No gradients provided for any variable",
                          who);
}

static int refuse_nonfinite(adadelta *opt, call_ctx *c, const adadelta_dist_ops *ops)
{
    int bad = !grads_finite(opt, c);
    if (ops) {
        int rc = ops->any(ops->ctx, bad, &bad);
        if (rc)
            return rc;
    }
    if (bad)
        return adadelta__fail(ADADELTA_ENONFINITE,
                              "apply: a gradient holds NaN or Inf (check_finite "
                              "is on); nothing was changed");
    return ADADELTA_OK;
}

/* The part of a call before the update, shared by apply and dist_begin:
 * checks, build, the finite checks (collective through ops when given), the
 * loss-scale divisor, and accumulation-only calls. *finished is 1 when the
 * call is complete (skipped step or accumulation only). */
static int begin_call(adadelta *opt, const float *const *grads, const adadelta_dist_ops *ops,
                      call_ctx *c, int *finished)
{
    *finished = 0;
    int rc = check_grads_arg(opt, grads, "apply");
    if (rc)
        return rc;
    if (!ops && opt->partitioned)
        return adadelta__fail(ADADELTA_ESTATE,
                              "apply: this optimizer's state is split over processes; "
                              "use adadelta_mpi_apply");
    memset(c, 0, sizeof *c);
    c->grads = grads;
    /* Refusals first: a refused call leaves even the build undone. */
    if (opt->cfg.check_finite && (rc = refuse_nonfinite(opt, c, ops)))
        return rc;
    if ((rc = adadelta__build(opt)))
        return rc;
    opt->applied = 1;
    if (opt->cfg.dynamic_loss_scale) {
        int bad = !grads_finite(opt, c);
        if (ops && (rc = ops->any(ops->ctx, bad, &bad)))
            return rc;
        if (bad) {
            skip_nonfinite_call(opt);
            *finished = 1;
            return ADADELTA_OK;
        }
    }
    set_divisor(opt, &c->p);
    if (is_accumulation_only(opt)) {
        accumulate_call(opt, c);
        *finished = 1;
    }
    return ADADELTA_OK;
}

int adadelta_apply(adadelta *opt, const float *const *grads)
{
    call_ctx c;
    int finished, rc = begin_call(opt, grads, NULL, &c, &finished);
    if (rc || finished)
        return rc;
    if (opt->cfg.gradient_accumulation_steps) {
        c.p.accumulate = 1;
        c.p.steps = (float)opt->cfg.gradient_accumulation_steps;
    }
    return update_call(opt, &c, NULL);
}

int adadelta_finalize_variable_values(adadelta *opt)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "finalize_variable_values: NULL");
    if (!opt->cfg.use_ema)
        return ADADELTA_OK;
    int rc = adadelta__build(opt);
    if (rc)
        return rc;
    if (adadelta__sharded(opt))
        return adadelta__fail(ADADELTA_ESTATE,
                              "finalize_variable_values: sharded optimizer; "
                              "use the MPI layer");
    for (int v = 0; v < opt->n_vars; v++)
        if (opt->vars[v].size)
            memcpy(opt->vars[v].data, opt->vars[v].slot[ADADELTA_SLOT_EMA],
                   (size_t)opt->vars[v].size * sizeof(float));
    return ADADELTA_OK;
}

/* ------------------------------------------------ data-parallel split */

int adadelta_dist_begin(adadelta *opt, const float *const *grads, float *send,
                        const adadelta_dist_ops *ops, int *need_reduce)
{
    *need_reduce = 0;
    call_ctx c;
    int finished, rc = begin_call(opt, grads, ops, &c, &finished);
    if (rc || finished)
        return rc;
    /* t = g / scale (+ acc): Keras's (g + acc) before the division by n. */
    c.p.accumulate = opt->cfg.gradient_accumulation_steps != 0;
    c.p.steps = 1.0f;
    c.send = send;
    for_all_shards(opt, shard_prepare, &c);
    for (int v = 0; v < opt->n_vars; v++)
        opt->var_present[v] = grads[v] != NULL;
    *need_reduce = 1;
    return ADADELTA_OK;
}

int adadelta_dist_finish(adadelta *opt, const float *mean, const adadelta_dist_ops *ops)
{
    /* Variables keep the presence they had in begin (the grads array). */
    call_ctx c;
    memset(&c, 0, sizeof c);
    for (int v = 0; v < opt->n_vars; v++)
        opt->var_grads[v] = opt->var_present[v] ? mean + opt->vars[v].flat_offset : NULL;
    c.grads = opt->var_grads;
    int64_t n = opt->cfg.gradient_accumulation_steps;
    if (n) {
        /* Keras's (g + acc) / n: the sum was made before the reduction. */
        c.p.divide = 1;
        c.p.divisor = (float)n;
        for_all_shards(opt, shard_zero_accumulator, NULL);
    }
    return update_call(opt, &c, ops);
}
