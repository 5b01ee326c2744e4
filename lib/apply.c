/* apply.c - one optimizer.apply(grads) in Keras's order: the checks, the
 * finite checks, the loss-scale skip, accumulation-only calls, then the
 * norms, clipping, weight decay, the step, the EMA and the counters. The
 * arithmetic is in kernels/step.c; this file decides which loops run over
 * which shards. Also finalize_variable_values. */
#include "internal.h"

#include <string.h>

int adadelta__check_grads(const adadelta *opt, const void *const *grads, const char *who)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "%s: optimizer is NULL", who);
    if (!grads)
        return adadelta__fail(ADADELTA_EINVAL, "%s: grads is NULL", who);
    for (int v = 0; v < opt->n_vars; v++)
        if (grads[v])
            return ADADELTA_OK;
    return adadelta__fail(ADADELTA_ENOGRAD, "%s: No gradients provided for any variable", who);
}

/* ------------------------------------------------------- shard bodies */

/* Each shard body picks its variable's loops: K (f32 or f64), the call's
 * params P of type PT and the element type T of that dtype (a 16-bit
 * dtype's elements are its bits). */
#define BY_DTYPE(var, BODY)                                                   \
    do {                                                                      \
        switch ((var)->dtype) {                                               \
        case ADADELTA_F64:                                                    \
            BODY(double, f64, p64, adadelta_step_params_f64);                 \
            break;                                                            \
        case ADADELTA_F16:                                                    \
            BODY(uint16_t, f16, p16, adadelta_step_params);                   \
            break;                                                            \
        case ADADELTA_BF16:                                                   \
            BODY(uint16_t, bf16, pbf16, adadelta_step_params);                \
            break;                                                            \
        default:                                                              \
            BODY(float, f32, p, adadelta_step_params);                        \
        }                                                                     \
    } while (0)

#define AT(T, base, elem) ((T *)(base) + (elem))

int adadelta__shard_finite(const adadelta *opt, int s, const void *g)
{
    const adadelta_shard *sh = &opt->shards[s];
    int ok = 1;
#define FINITE(T, K, P, PT)                                                       \
    ok = adadelta__kernels()->K.all_finite(sh->end - sh->begin, AT(const T, g, sh->begin))
    if (g)
        BY_DTYPE(&opt->vars[sh->var], FINITE);
#undef FINITE
    return ok;
}

static void shard_finite(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    opt->shard_flags[s] = adadelta__shard_finite(opt, s, c->grads[opt->shards[s].var]);
}

int adadelta__grads_finite(adadelta *opt, adadelta_call *c)
{
    adadelta__for_all_shards(opt, shard_finite, c);
    for (int s = 0; s < opt->n_shards; s++)
        if (!opt->shard_flags[s])
            return 0;
    return 1;
}

static void *accumulator(const adadelta_var *var, int64_t elem)
{
    return adadelta__slot_at(var, ADADELTA_SLOT_GRADIENT_ACCUMULATOR, elem);
}

static void shard_accumulate(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const void *g = c->grads[sh->var];
#define ACCUMULATE(T, K, P, PT)                                                   \
    adadelta__kernels()->K.accumulate(&c->P, sh->end - sh->begin, AT(const T, g, sh->begin), \
                                      accumulator(var, sh->begin))
    if (g)
        BY_DTYPE(var, ACCUMULATE);
#undef ACCUMULATE
}

static void ema_range(const adadelta_call *c, const adadelta_var *var, int64_t begin,
                      int64_t n)
{
#define EMA(T, K, P, PT)                                                          \
    adadelta__kernels()->K.ema(&c->P, n, adadelta__data_at(var, begin),     \
                               adadelta__slot_at(var, ADADELTA_SLOT_EMA, begin))
    BY_DTYPE(var, EMA);
#undef EMA
}

static void shard_ema(adadelta *opt, int s, void *vctx)
{
    const adadelta_shard *sh = &opt->shards[s];
    ema_range(vctx, &opt->vars[sh->var], sh->begin, sh->end - sh->begin);
}

void adadelta__shard_sum_squares(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const void *g = c->grads[sh->var];
    double sum = 0.0;
    if (g && c->half_mean && (var->dtype == ADADELTA_F16 || var->dtype == ADADELTA_BF16)) {
        opt->partials[s] = adadelta__half_mean_sum_squares(opt, s, c);
        return;
    }
#define SUM_SQUARES(T, K, P, PT)                                                  \
    sum = adadelta__kernels()->K.sum_squares(&c->P, sh->end - sh->begin,    \
                                             AT(const T, g, sh->begin),     \
                                             c->P.accumulate ? accumulator(var, sh->begin) : NULL)
    if (g)
        BY_DTYPE(var, SUM_SQUARES);
#undef SUM_SQUARES
    opt->partials[s] = sum;
}

/* The step (or, for a variable without gradient, its EMA and accumulator
 * reset) over one shard. clipnorm's denominator is per variable. */
static void shard_step(adadelta *opt, int s, void *vctx)
{
    const adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    adadelta_var *var = &opt->vars[sh->var];
    const void *g = c->grads[sh->var];
    int64_t n = sh->end - sh->begin;
    if (!g) {
        if (c->p.accumulate)
            memset(accumulator(var, sh->begin), 0, (size_t)n * var->esize);
        if (c->p.ema)
            ema_range(c, var, sh->begin, n);
        return;
    }
#define STEP(T, K, P, PT)                                                         \
    do {                                                                      \
        PT q = c->P;                                            \
        if (q.clip == ADADELTA_CLIP_NORM)                                     \
            q.clip_b = opt->var_clip_b[sh->var]; /* to the field's type */                           \
        q.weight_decay = q.weight_decay && var->uses_weight_decay;            \
        if (c->half_mean && sizeof(T) == 2) {                                  \
            adadelta__half_mean_step(opt, s, c, (const adadelta_step_params *)&q); \
            break;                                                            \
        }                                                                     \
        adadelta__kernels()->K.step(                                          \
            &q, n, adadelta__data_at(var, sh->begin), AT(const T, g, sh->begin), \
            q.accumulate ? accumulator(var, sh->begin) : NULL,                \
            adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_GRAD, sh->begin), \
            adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR, sh->begin), \
            adadelta__slot_at(var, ADADELTA_SLOT_EMA, sh->begin));            \
    } while (0)
    BY_DTYPE(var, STEP);
#undef STEP
}

/* ------------------------------------------------------- call phases */

void adadelta__accumulate_call(adadelta *opt, adadelta_call *c)
{
    adadelta__set_ema_params(opt, &c->p, &c->p64);
    adadelta__set_half_params(opt, c);
    adadelta__for_all_shards(opt, shard_accumulate, c);
    if (c->p.ema)
        adadelta__for_each_shard(opt, shard_ema, c);
    opt->vars_changed = c->p.ema && c->p.ema_overwrite;
    adadelta__count_finite_call(opt);
    opt->iterations++;
}

void adadelta__sum_squares(adadelta *opt, adadelta_call *c)
{
    adadelta__for_each_shard(opt, adadelta__shard_sum_squares, c);
}

void adadelta__update_call(adadelta *opt, adadelta_call *c)
{
    adadelta__set_ema_params(opt, &c->p, &c->p64);
    adadelta__set_half_params(opt, c);
    adadelta__set_clip_params(opt, c);
    adadelta__for_each_shard(opt, shard_step, c);
    opt->vars_changed = 1;
    adadelta__count_finite_call(opt);
    opt->iterations++;
}

int adadelta_apply(adadelta *opt, const void *const *grads)
{
    int rc = adadelta__check_grads(opt, grads, "apply");
    if (rc || (rc = adadelta__refuse_wrapped(opt, "apply")))
        return rc;
    if (opt->partitioned)
        return adadelta__fail(ADADELTA_ESTATE,
                              "apply: this optimizer's state is split over processes; "
                              "use adadelta_mpi_apply");
    adadelta_call c;
    memset(&c, 0, sizeof c);
    c.grads = grads;
    /* Refusals first: a refused call leaves even the build undone. An
     * update's learning rate is evaluated here then (once per call). */
    if (opt->cfg.check_finite && !adadelta__grads_finite(opt, &c))
        return adadelta__fail(ADADELTA_ENONFINITE,
                              "apply: a gradient holds NaN or Inf (check_finite "
                              "is on); nothing was changed");
    int update = !adadelta__is_accumulation_only(opt);
    float lr = 0;
    if (opt->cfg.check_finite && update &&
        (rc = adadelta__refuse_nonfinite_lr(opt, lr = adadelta__learning_rate_now(opt))))
        return rc;
    if ((rc = adadelta__build(opt)))
        return rc;
    opt->applied = 1;
    if (opt->cfg.dynamic_loss_scale && !adadelta__grads_finite(opt, &c)) {
        adadelta__skip_nonfinite_call(opt);
        return ADADELTA_OK;
    }
    adadelta__set_divisor(opt, &c.p, &c.p64);
    if (!update) {
        adadelta__accumulate_call(opt, &c);
        return ADADELTA_OK;
    }
    if (opt->cfg.gradient_accumulation_steps) {
        c.p.accumulate = c.p64.accumulate = 1;
        c.p.steps = (float)opt->cfg.gradient_accumulation_steps;
        c.p64.steps = (double)opt->cfg.gradient_accumulation_steps;
    }
    adadelta__set_update_params(opt, &c.p, &c.p64, opt->cfg.check_finite ? &lr : NULL);
    adadelta__set_half_params(opt, &c);
    if (adadelta__needs_norms(&opt->cfg))
        adadelta__sum_squares(opt, &c);
    adadelta__update_call(opt, &c);
    return ADADELTA_OK;
}

int adadelta_finalize_variable_values(adadelta *opt)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "finalize_variable_values: NULL");
    int rc = adadelta__refuse_wrapped(opt, "finalize_variable_values");
    return rc ? rc : adadelta__finalize(opt);
}

int adadelta__finalize(adadelta *opt)
{
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
                   (size_t)opt->vars[v].size * opt->vars[v].esize);
    return ADADELTA_OK;
}
