/* step_params.c - the float32 constants of one call, as Keras computes
 * them: the learning rate, the loss-scale divisor, rho and epsilon, weight
 * decay, the EMA momentum and overwrite, the clip constants from the norms;
 * and the LossScaleOptimizer's scale bookkeeping. */
#include "internal.h"

#include <math.h>

float adadelta__learning_rate_now(const adadelta *opt)
{
    return adadelta_lr_evaluate(&opt->cfg.learning_rate, opt->iterations);
}

void adadelta__set_divisor(const adadelta *opt, adadelta_step_params *p)
{
    if (opt->cfg.dynamic_loss_scale) {
        p->divide = 1;
        p->divisor = opt->dynamic_scale;
    } else if (adadelta_is_set(opt->cfg.loss_scale_factor)) {
        p->divide = 1;
        p->divisor = (float)opt->cfg.loss_scale_factor;
    }
}

void adadelta__set_update_params(const adadelta *opt, adadelta_step_params *p,
                                 const float *lr)
{
    const adadelta_config *cfg = &opt->cfg;
    /* once per call, before anything changes (or already, by the checks) */
    p->lr = lr ? *lr : adadelta__learning_rate_now(opt);
    p->rho = (float)cfg->rho;
    p->one_minus_rho = (float)(1.0 - cfg->rho);
    p->epsilon = (float)cfg->epsilon;
    p->weight_decay = adadelta_is_set(cfg->weight_decay);
    p->wd = (float)cfg->weight_decay;
}

int adadelta__refuse_nonfinite_lr(const adadelta *opt, float lr)
{
    if (!opt->cfg.check_finite || isfinite(lr))
        return ADADELTA_OK;
    return adadelta__fail(ADADELTA_ENONFINITE,
                          "apply: the learning rate is %g (check_finite is on); nothing was "
                          "changed",
                          (double)lr);
}

static int64_t public_iterations(const adadelta *opt)
{
    int64_t n = opt->cfg.gradient_accumulation_steps;
    return n ? opt->iterations / n : opt->iterations;
}

/* Keras's _update_model_variables_moving_average and the overwrite check,
 * both on the "public" iteration count. */
void adadelta__set_ema_params(const adadelta *opt, adadelta_step_params *p)
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

static int clipnorm_on(const adadelta_config *cfg)
{
    return adadelta_is_set(cfg->clipnorm) && cfg->clipnorm > 0;
}

static int global_clipnorm_on(const adadelta_config *cfg)
{
    return adadelta_is_set(cfg->global_clipnorm) && cfg->global_clipnorm > 0;
}

int adadelta__needs_norms(const adadelta_config *cfg)
{
    return clipnorm_on(cfg) || global_clipnorm_on(cfg);
}

/* Keras's _clip_by_norm per variable: var_clip_b gets the denominators. */
static void set_clipnorm(adadelta *opt, adadelta_step_params *p)
{
    float c = (float)opt->cfg.clipnorm;
    p->clip = ADADELTA_CLIP_NORM;
    p->clip_a = c;
    int s = 0;
    for (int v = 0; v < opt->n_vars; v++) {
        double sum = 0.0;
        for (; s < opt->n_shards && opt->shards[s].var == v; s++)
            sum += opt->partials[s];
        float l2sum = (float)sum;
        float l2norm = l2sum > 0 ? sqrtf(l2sum) : l2sum;
        opt->var_clip_b[v] = isnan(l2norm) ? l2norm : (l2norm > c ? l2norm : c);
    }
}

/* Keras's clip_by_global_norm: g * (c * min(1 / norm, 1 / c)), NaN kept. */
static void set_global_clipnorm(adadelta *opt, adadelta_step_params *p)
{
    double sum = 0.0;
    for (int s = 0; s < opt->n_shards; s++)
        sum += opt->partials[s];
    float c = (float)opt->cfg.global_clipnorm;
    float norm = sqrtf((float)sum);
    float inv_norm = 1.0f / norm;
    float inv_c = (float)(1.0 / opt->cfg.global_clipnorm);
    float smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
    p->clip = ADADELTA_CLIP_SCALE;
    p->clip_a = c * smaller + (norm - norm);
}

void adadelta__set_clip_params(adadelta *opt, adadelta_step_params *p)
{
    const adadelta_config *cfg = &opt->cfg;
    if (clipnorm_on(cfg)) {
        set_clipnorm(opt, p);
    } else if (global_clipnorm_on(cfg)) {
        set_global_clipnorm(opt, p);
    } else if (adadelta_is_set(cfg->clipvalue) && cfg->clipvalue > 0) {
        p->clip = ADADELTA_CLIP_VALUE;
        p->clip_a = (float)cfg->clipvalue;
    }
}

int adadelta__is_accumulation_only(const adadelta *opt)
{
    int64_t n = opt->cfg.gradient_accumulation_steps;
    return n && (opt->iterations + 1) % n != 0;
}

/* After a call with finite gradients (an update or an accumulation-only
 * call alike): grow the scale every growth_steps calls. */
void adadelta__count_finite_call(adadelta *opt)
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

void adadelta__skip_nonfinite_call(adadelta *opt)
{
    opt->step_counter = 0;
    opt->dynamic_scale = opt->dynamic_scale / 2.0f;
    opt->vars_changed = 0;
}
