/* apply.c - one optimizer.apply(grads) in Keras's order: the checks, the
 * finite checks, the loss-scale skip, accumulation-only calls, then the
 * norms, clipping, weight decay, the step, the EMA and the counters. The
 * arithmetic is in kernels/step.c; this file decides which loops run over
 * which shards. Also finalize_variable_values. */
#include "internal.h"

#include <string.h>

int adadelta__check_grads(const adadelta *opt, const float *const *grads, const char *who)
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

static void shard_finite(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const float *g = c->grads[sh->var];
    opt->shard_flags[s] = !g || adadelta_kernel_all_finite(sh->end - sh->begin, g + sh->begin);
}

int adadelta__grads_finite(adadelta *opt, adadelta_call *c)
{
    adadelta__for_all_shards(opt, shard_finite, c);
    for (int s = 0; s < opt->n_shards; s++)
        if (!opt->shard_flags[s])
            return 0;
    return 1;
}

static float *accumulator(const adadelta_var *var, int64_t elem)
{
    return adadelta__slot_at(var, ADADELTA_SLOT_GRADIENT_ACCUMULATOR, elem);
}

static void shard_accumulate(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const float *g = c->grads[sh->var];
    if (g)
        adadelta_kernel_accumulate(&c->p, sh->end - sh->begin, g + sh->begin,
                                   accumulator(&opt->vars[sh->var], sh->begin));
}

static void shard_ema(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    adadelta_var *var = &opt->vars[sh->var];
    adadelta_kernel_ema(&c->p, sh->end - sh->begin, var->data + sh->begin,
                        adadelta__slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
}

void adadelta__shard_sum_squares(adadelta *opt, int s, void *vctx)
{
    adadelta_call *c = vctx;
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const float *g = c->grads[sh->var];
    opt->partials[s] = g ? adadelta_kernel_sum_squares(
                               &c->p, sh->end - sh->begin, g + sh->begin,
                               c->p.accumulate ? accumulator(var, sh->begin) : NULL)
                         : 0.0;
}

/* The step (or, for a variable without gradient, its EMA and accumulator
 * reset) over one shard. clipnorm's denominator is per variable. */
static void shard_step(adadelta *opt, int s, void *vctx)
{
    const adadelta_call *c = vctx;
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
        adadelta_kernel_step(&p, n, data, g + sh->begin,
                             p.accumulate ? accumulator(var, sh->begin) : NULL,
                             adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_GRAD, sh->begin),
                             adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR, sh->begin),
                             adadelta__slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
    } else {
        if (c->p.accumulate)
            memset(accumulator(var, sh->begin), 0, (size_t)n * sizeof(float));
        if (c->p.ema)
            adadelta_kernel_ema(&c->p, n, data,
                                adadelta__slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
    }
}

/* ------------------------------------------------------- call phases */

void adadelta__accumulate_call(adadelta *opt, adadelta_call *c)
{
    adadelta__for_all_shards(opt, shard_accumulate, c);
    adadelta__set_ema_params(opt, &c->p);
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
    adadelta_step_params *p = &c->p;
    adadelta__set_clip_params(opt, p);
    adadelta__set_ema_params(opt, p);
    adadelta__for_each_shard(opt, shard_step, c);
    opt->vars_changed = 1;
    adadelta__count_finite_call(opt);
    opt->iterations++;
}

int adadelta_apply(adadelta *opt, const void *const *vgrads)
{
    const float *const *grads = (const float *const *)vgrads;
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
    adadelta__set_divisor(opt, &c.p);
    if (!update) {
        adadelta__accumulate_call(opt, &c);
        return ADADELTA_OK;
    }
    if (opt->cfg.gradient_accumulation_steps) {
        c.p.accumulate = 1;
        c.p.steps = (float)opt->cfg.gradient_accumulation_steps;
    }
    adadelta__set_update_params(opt, &c.p, opt->cfg.check_finite ? &lr : NULL);
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
                   (size_t)opt->vars[v].size * sizeof(float));
    return ADADELTA_OK;
}
