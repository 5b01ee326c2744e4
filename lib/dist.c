/* dist.c - the data-parallel entry points (adadelta_private.h): the split
 * step around the gradient reduction, the sharded state (ZeRO-1), and the
 * table libadadelta_mpi reaches them through. */
#include "internal.h"
#include "adadelta_private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------- split step */

/* What the next call does, from the optimizer's state alone (the same on
 * every process): filled even when the gradients are then refused. */
static void plan_step(const adadelta *opt, adadelta_dist_step *st)
{
    memset(st, 0, sizeof *st);
    st->finite_matters = opt->cfg.check_finite || opt->cfg.dynamic_loss_scale;
    st->update = !adadelta__is_accumulation_only(opt);
    st->needs_norms = st->update && adadelta__needs_norms(&opt->cfg);
    adadelta__set_divisor(opt, &st->p, &st->p64);
}

static int dist_begin(adadelta *opt, const void *const *grads, adadelta_dist_step *st,
                      int scan_finite)
{
    plan_step(opt, st);
    int rc = adadelta__check_grads(opt, grads, "apply");
    if (rc || (rc = adadelta__build(opt)))
        return rc;
    st->grads = grads;
    if (st->finite_matters && scan_finite) {
        adadelta_call c;
        memset(&c, 0, sizeof c);
        c.grads = grads;
        st->nonfinite = !adadelta__grads_finite(opt, &c);
    }
    /* check_finite covers the learning rate, evaluated here then (once). */
    if (opt->cfg.check_finite && st->update) {
        st->lr = adadelta__learning_rate_now(opt);
        st->lr_ready = 1;
        st->nonfinite |= !isfinite(st->lr);
    }
    return ADADELTA_OK;
}

typedef struct contribute_ctx {
    const adadelta_dist_step *st;
    adadelta_call c; /* the preparation's constants in every dtype */
    int s_lo, s_hi;
    void *const *dst;
} contribute_ctx;

/* t = g / scale (+ acc): Keras's (g + acc) before the division by n, in
 * the variable's dtype (a 16-bit one as float32 words); in place when the
 * gradient was written where its contribution goes. */
static void shard_contribute(adadelta *opt, int s, void *vctx)
{
    contribute_ctx *c = vctx;
    if (s < c->s_lo || s >= c->s_hi)
        return;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const void *g = c->st->grads[sh->var];
    if (!g)
        return;
    const adadelta_kernels *k = adadelta__kernels();
    int64_t b = sh->begin, n = sh->end - sh->begin;
    void *acc = c->c.p.accumulate
                    ? adadelta__slot_at(var, ADADELTA_SLOT_GRADIENT_ACCUMULATOR, b)
                    : NULL;
    void *dst = c->dst[sh->var];
    switch (var->dtype) {
    case ADADELTA_F64: {
        const adadelta_step_params_f64 *p = &c->c.p64;
        if ((const double *)g + b != (double *)dst + b)
            k->f64.prepare(p, n, (const double *)g + b, acc, (double *)dst + b);
        else if (p->divide || p->accumulate)
            k->f64.prepare_inplace(p, n, (double *)dst + b, acc);
        break;
    }
    case ADADELTA_F16:
        k->f16.prepare(&c->c.p16, n, (const uint16_t *)g + b, acc, (float *)dst + b);
        break;
    case ADADELTA_BF16:
        k->bf16.prepare(&c->c.pbf16, n, (const uint16_t *)g + b, acc, (float *)dst + b);
        break;
    default: {
        const adadelta_step_params *p = &c->c.p;
        if ((const float *)g + b != (float *)dst + b)
            k->f32.prepare(p, n, (const float *)g + b, acc, (float *)dst + b);
        else if (p->divide || p->accumulate)
            k->f32.prepare_inplace(p, n, (float *)dst + b, acc);
    }
    }
}

typedef struct finite_ctx {
    const void *const *grads;
    int s_lo, s_hi;
} finite_ctx;

static void shard_finite_in(adadelta *opt, int s, void *vctx)
{
    finite_ctx *c = vctx;
    opt->shard_flags[s] = s < c->s_lo || s >= c->s_hi ||
                          adadelta__shard_finite(opt, s, c->grads[opt->shards[s].var]);
}

static int first_shard(const adadelta *opt, int v);

/* 1 if the gradients of variables [v_lo, v_hi) are all finite. */
static int dist_finite(adadelta *opt, const void *const *grads, int v_lo, int v_hi)
{
    finite_ctx c = {grads, first_shard(opt, v_lo), first_shard(opt, v_hi)};
    adadelta__for_all_shards(opt, shard_finite_in, &c);
    for (int s = c.s_lo; s < c.s_hi; s++)
        if (!opt->shard_flags[s])
            return 0;
    return 1;
}

static int first_shard(const adadelta *opt, int v)
{
    return v < opt->n_vars ? opt->vars[v].first_shard : opt->n_shards;
}

static void dist_contribute(adadelta *opt, const adadelta_dist_step *st, int v_lo, int v_hi,
                            void *const *dst)
{
    contribute_ctx c;
    memset(&c, 0, sizeof c);
    c.st = st;
    c.s_lo = first_shard(opt, v_lo);
    c.s_hi = first_shard(opt, v_hi);
    c.dst = dst;
    c.c.p = st->p;
    c.c.p64 = st->p64;
    c.c.p.accumulate = c.c.p64.accumulate = opt->cfg.gradient_accumulation_steps != 0;
    c.c.p.steps = 1.0f;
    c.c.p64.steps = 1.0;
    adadelta__set_half_params(opt, &c.c);
    c.c.p16.steps = c.c.pbf16.steps = 1.0f; /* the division by n follows the mean */
    adadelta__for_all_shards(opt, shard_contribute, &c);
}

/* The call that reads the reduced mean: (g + acc) / n was summed before
 * the reduction, so only the division by n is left. */
static void mean_call(adadelta *opt, const adadelta_dist_step *st, const void *const *mean,
                      adadelta_call *c)
{
    memset(c, 0, sizeof *c);
    for (int v = 0; v < opt->n_vars; v++)
        opt->var_grads[v] = st->grads[v] ? mean[v] : NULL;
    c->grads = opt->var_grads;
    c->half_mean = opt->n_half != 0;
    int64_t n = opt->cfg.gradient_accumulation_steps;
    if (n) {
        c->p.divide = c->p64.divide = 1;
        c->p.divisor = (float)n;
        c->p64.divisor = (double)n;
    }
}

typedef struct range_ctx {
    adadelta_call c;
    int s_lo, s_hi;
} range_ctx;

static void shard_sum_squares_in(adadelta *opt, int s, void *vctx)
{
    range_ctx *r = vctx;
    if (s >= r->s_lo && s < r->s_hi)
        adadelta__shard_sum_squares(opt, s, &r->c);
}

/* Partials of shards [s_lo, s_hi) from the mean; zero elsewhere, so a sum
 * over the processes is exact in any order. */
static void dist_sum_squares(adadelta *opt, adadelta_dist_step *st, const void *const *mean,
                             int s_lo, int s_hi)
{
    range_ctx r;
    mean_call(opt, st, mean, &r.c);
    r.s_lo = s_lo;
    r.s_hi = s_hi;
    for (int s = 0; s < opt->n_shards; s++)
        opt->partials[s] = 0.0;
    adadelta__for_all_shards(opt, shard_sum_squares_in, &r);
}

static void shard_zero_accumulator(adadelta *opt, int s, void *vctx)
{
    (void)vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    memset(adadelta__slot_at(var, ADADELTA_SLOT_GRADIENT_ACCUMULATOR, sh->begin), 0,
           (size_t)(sh->end - sh->begin) * var->esize);
}

static int dist_finish(adadelta *opt, adadelta_dist_step *st, int any_nonfinite,
                       const void *const *mean)
{
    if (opt->cfg.check_finite && any_nonfinite)
        return adadelta__fail(ADADELTA_ENONFINITE,
                              "apply: a gradient or the learning rate holds NaN or Inf "
                              "(check_finite is on); nothing was changed");
    opt->applied = 1;
    if (opt->cfg.dynamic_loss_scale && any_nonfinite) {
        adadelta__skip_nonfinite_call(opt);
        return ADADELTA_OK;
    }
    adadelta_call c;
    if (!st->update) {
        memset(&c, 0, sizeof c);
        c.grads = st->grads;
        c.p = st->p;
        c.p64 = st->p64;
        adadelta__accumulate_call(opt, &c);
        return ADADELTA_OK;
    }
    mean_call(opt, st, mean, &c);
    if (opt->cfg.gradient_accumulation_steps)
        adadelta__for_all_shards(opt, shard_zero_accumulator, NULL);
    adadelta__set_update_params(opt, &c.p, &c.p64, st->lr_ready ? &st->lr : NULL);
    adadelta__update_call(opt, &c);
    return ADADELTA_OK;
}

/* ------------------------------------------------------ sharded state */

static size_t padded_bytes(int64_t n, size_t esize)
{
    return ((size_t)n * esize + 63) & ~(size_t)63;
}

/* New, smaller blocks for the sharded slot kinds, holding the owned part
 * of the current state (zeros, or what a load put there); swapped in only
 * when all exist. range[2v], range[2v+1]: the owned elements of v. */
static int shrink_slots(adadelta *opt, const int64_t *range)
{
    int n = opt->n_vars;
    char *fresh[ADADELTA_N_SLOTS] = {NULL};
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        if (!adadelta__slots[k].sharded || !opt->slot_block[k])
            continue;
        size_t total = 0;
        for (int v = 0; v < n; v++)
            total += padded_bytes(range[2 * v + 1] - range[2 * v], opt->vars[v].esize);
        if (!(fresh[k] = adadelta__alloc_bytes(total))) {
            for (int j = 0; j < k; j++)
                free(fresh[j]);
            return adadelta__fail(ADADELTA_ENOMEM, "own_shards: out of memory");
        }
        size_t at = 0;
        for (int v = 0; v < n; v++) {
            const adadelta_var *var = &opt->vars[v];
            int64_t b = range[2 * v], e = range[2 * v + 1];
            memcpy(fresh[k] + at, adadelta__slot_at(var, k, b), (size_t)(e - b) * var->esize);
            at += padded_bytes(e - b, var->esize);
        }
    }
    for (int v = 0; v < n; v++) {
        opt->vars[v].slot_begin = range[2 * v];
        opt->vars[v].slot_end = range[2 * v + 1];
    }
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        if (!fresh[k])
            continue;
        free(opt->slot_block[k]);
        opt->slot_block[k] = fresh[k];
        size_t at = 0;
        for (int v = 0; v < n; v++) {
            opt->vars[v].slot[k] = fresh[k] + at;
            at += padded_bytes(adadelta__slot_length(&opt->vars[v], k), opt->vars[v].esize);
        }
    }
    return ADADELTA_OK;
}

static int dist_own_shards(adadelta *opt, int lo, int hi)
{
    if (opt->applied || opt->partitioned)
        return adadelta__fail(ADADELTA_ESTATE, "own_shards: only once, before the first apply");
    if (lo < 0 || hi < lo || hi > opt->n_shards)
        return adadelta__fail(ADADELTA_EINVAL, "own_shards: range [%d, %d) is outside [0, %d)",
                              lo, hi, opt->n_shards);
    int rc = adadelta__build(opt);
    if (rc)
        return rc;
    int64_t *range = calloc((size_t)opt->n_vars * 2 + 2, sizeof *range);
    if (!range)
        return adadelta__fail(ADADELTA_ENOMEM, "own_shards: out of memory");
    for (int s = lo; s < hi; s++) {
        const adadelta_shard *sh = &opt->shards[s];
        if (range[2 * sh->var] == range[2 * sh->var + 1])
            range[2 * sh->var] = sh->begin;
        range[2 * sh->var + 1] = sh->end;
    }
    rc = shrink_slots(opt, range);
    free(range);
    if (rc)
        return rc;
    opt->own_lo = lo;
    opt->own_hi = hi;
    opt->partitioned = 1;
    opt->bounds_valid = 0;
    return ADADELTA_OK;
}

/* ------------------------------------------------------ the table */

static int64_t dist_total_elements(const adadelta *opt) { return opt->total_elements; }
static int dist_num_shards(const adadelta *opt) { return opt->n_shards; }
static double *dist_partials(adadelta *opt) { return opt->partials; }
static int dist_vars_changed(const adadelta *opt) { return opt->vars_changed; }
static void dist_set_wrapped(adadelta *opt, int on) { opt->wrapped = on != 0; }
static void dist_plan(const adadelta *opt, adadelta_dist_step *st) { plan_step(opt, st); }

static int64_t dist_variable_offset(const adadelta *opt, int v)
{
    return v < opt->n_vars ? opt->vars[v].flat_offset : opt->total_elements;
}

static const adadelta_private private_table = {
    .version = ADADELTA_PRIVATE_VERSION,
    .vfail = adadelta__vfail,
    .total_elements = dist_total_elements,
    .variable_offset = dist_variable_offset,
    .num_shards = dist_num_shards,
    .shard_offset = adadelta__shard_offset,
    .partition = adadelta__partition,
    .own_shards = dist_own_shards,
    .dist_setup = adadelta__dist_setup,
    .set_wrapped = dist_set_wrapped,
    .parallel_blocks = adadelta__parallel_blocks,
    .plan = dist_plan,
    .begin = dist_begin,
    .finite = dist_finite,
    .contribute = dist_contribute,
    .sum_squares = dist_sum_squares,
    .partials = dist_partials,
    .finish = dist_finish,
    .vars_changed = dist_vars_changed,
    .finalize = adadelta__finalize,
    .config_diff = adadelta__config_diff,
    .set_learning_rate = adadelta__set_learning_rate,
    .learning_rate_from_json = adadelta__learning_rate_from_json,
    .state_list = adadelta__state_list,
    .state_free = adadelta__state_list_free,
    .state_check_header = adadelta__state_check_header,
    .state_checksum_span = adadelta__state_checksum_span,
    .state_checksum_verdict = adadelta__state_checksum_verdict,
    .state_check = adadelta__state_check,
    .state_import = adadelta__state_import,
    .state_plan = adadelta__state_plan,
    .state_write_parts = adadelta__state_write_parts,
    .state_write_prefix = adadelta__state_write_prefix,
};

const void *adadelta_private_interface(int version)
{
    return version == ADADELTA_PRIVATE_VERSION ? &private_table : NULL;
}
