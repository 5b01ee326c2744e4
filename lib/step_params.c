/* step_params.c - the constants of one call, as Keras computes them, in
 * each variable dtype: the learning rate, the loss-scale divisor, rho and
 * epsilon, weight decay, the EMA momentum and overwrite, the clip constants
 * from the norms; and the LossScaleOptimizer's scale bookkeeping.
 *
 * Keras casts each Python float (a double) to the variable's dtype where it
 * meets a tensor, and computes Python-float arithmetic (1 - rho) in double
 * first. So a float32 variable sees f32(rho), f32(1 - rho), ...; a float64
 * variable sees the doubles themselves. The learning rate is a float32
 * value (Keras's variable or a schedule's float32 result), so a float64
 * variable sees f64(f32(lr)). */
#include "internal.h"

#include <math.h>

float adadelta__learning_rate_now(const adadelta *opt)
{
    return adadelta_lr_evaluate(&opt->cfg.learning_rate, opt->iterations);
}

/* LossScaleOptimizer: g / dynamic_scale, a float32 variable; a float64
 * gradient divided by it is float64 (Keras's result_type), so by
 * f64(scale). loss_scale_factor: a Python float, cast to the dtype. */
void adadelta__set_divisor(const adadelta *opt, adadelta_step_params *p,
                           adadelta_step_params_f64 *p64)
{
    int divide = 0;
    float d32 = 0;
    double d64 = 0;
    if (opt->cfg.dynamic_loss_scale) {
        divide = 1;
        d32 = opt->dynamic_scale;
        d64 = (double)opt->dynamic_scale;
    } else if (adadelta_is_set(opt->cfg.loss_scale_factor)) {
        divide = 1;
        d32 = (float)opt->cfg.loss_scale_factor;
        d64 = opt->cfg.loss_scale_factor;
    }
    if (divide) {
        p->divide = 1;
        p->divisor = d32;
        if (p64) {
            p64->divide = 1;
            p64->divisor = d64;
        }
    }
}

void adadelta__set_update_params(const adadelta *opt, adadelta_step_params *p,
                                 adadelta_step_params_f64 *p64, const float *lr)
{
    const adadelta_config *cfg = &opt->cfg;
    /* once per call, before anything changes (or already, by the checks) */
    p->lr = lr ? *lr : adadelta__learning_rate_now(opt);
    p->rho = (float)cfg->rho;
    p->one_minus_rho = (float)(1.0 - cfg->rho);
    p->epsilon = (float)cfg->epsilon;
    p->weight_decay = adadelta_is_set(cfg->weight_decay);
    p->wd = (float)cfg->weight_decay;
    if (!p64)
        return;
    p64->lr = (double)p->lr;
    p64->rho = cfg->rho;
    p64->one_minus_rho = 1.0 - cfg->rho;
    p64->epsilon = cfg->epsilon;
    p64->weight_decay = p->weight_decay;
    p64->wd = cfg->weight_decay;
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
/* momentum = cast(it != 0, dtype) * ema_momentum and 1 - momentum, both
 * in the variable's dtype. */
void adadelta__set_ema_params(const adadelta *opt, adadelta_step_params *p,
                              adadelta_step_params_f64 *p64)
{
    p->ema = opt->cfg.use_ema;
    if (p64)
        p64->ema = p->ema;
    if (!p->ema)
        return;
    int64_t it = public_iterations(opt);
    p->ema_m = (float)(it != 0) * (float)opt->cfg.ema_momentum;
    p->ema_one_minus_m = 1.0f - p->ema_m;
    int64_t f = opt->cfg.ema_overwrite_frequency;
    p->ema_overwrite = f > 0 && (it + 1) % f == 0;
    if (p64) {
        p64->ema_m = (double)(it != 0) * opt->cfg.ema_momentum;
        p64->ema_one_minus_m = 1.0 - p64->ema_m;
        p64->ema_overwrite = p->ema_overwrite;
    }
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

/* Each variable's sum of squares: its shards' partials added in order. */
static double variable_sum(const adadelta *opt, int v)
{
    double sum = 0.0;
    int end = v + 1 < opt->n_vars ? opt->vars[v + 1].first_shard : opt->n_shards;
    for (int s = opt->vars[v].first_shard; s < end; s++)
        sum += opt->partials[s];
    return sum;
}

/* Keras's _clip_by_norm per variable, in its dtype: var_clip_b gets the
 * denominators max(l2norm, c). */
static void set_clipnorm(adadelta *opt, adadelta_step_params *p, adadelta_step_params_f64 *p64)
{
    float c = (float)opt->cfg.clipnorm;
    double c64 = opt->cfg.clipnorm;
    p->clip = p64->clip = ADADELTA_CLIP_NORM;
    p->clip_a = c;
    p64->clip_a = c64;
    for (int v = 0; v < opt->n_vars; v++) {
        double sum = variable_sum(opt, v);
        if (opt->vars[v].dtype == ADADELTA_F64) {
            double l2norm = sum > 0 ? sqrt(sum) : sum;
            opt->var_clip_b[v] = isnan(l2norm) ? l2norm : (l2norm > c64 ? l2norm : c64);
            continue;
        }
        float l2sum = (float)sum;
        float l2norm = l2sum > 0 ? sqrtf(l2sum) : l2sum;
        opt->var_clip_b[v] = isnan(l2norm) ? l2norm : (l2norm > c ? l2norm : c);
    }
}

/* clip_by_global_norm when a float64 gradient takes part: Keras stacks the
 * variables' sums of squares (each in its dtype: a float32 one rounded to
 * float32) into float64 and computes the norm and the scale in float64; a
 * float32 gradient times that scale is float64, then cast back by the
 * step: f32(f64(g) * scale). */
static void set_global_clipnorm_f64(adadelta *opt, const adadelta_call *c,
                                    adadelta_step_params *p, adadelta_step_params_f64 *p64)
{
    double sum = 0.0;
    for (int v = 0; v < opt->n_vars; v++) {
        if (!c->grads[v])
            continue;
        double s = variable_sum(opt, v);
        sum += opt->vars[v].dtype == ADADELTA_F64 ? s : (double)(float)s;
    }
    double clip = opt->cfg.global_clipnorm;
    double norm = sqrt(sum);
    double inv_norm = 1.0 / norm, inv_c = 1.0 / clip;
    double smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
    double scale = clip * smaller + (norm - norm);
    p64->clip = ADADELTA_CLIP_SCALE;
    p64->clip_a = scale;
    p->clip = ADADELTA_CLIP_SCALE_WIDE;
    p->clip_wide = scale;
}

/* Keras's clip_by_global_norm: g * (c * min(1 / norm, 1 / c)), NaN kept.
 * All present gradients float32: the norm is float32 (this library adds
 * the squares in double and rounds once). */
static void set_global_clipnorm(adadelta *opt, const adadelta_call *c, adadelta_step_params *p,
                                adadelta_step_params_f64 *p64)
{
    for (int v = 0; opt->n_f64 && v < opt->n_vars; v++)
        if (c->grads[v] && opt->vars[v].dtype == ADADELTA_F64) {
            set_global_clipnorm_f64(opt, c, p, p64);
            return;
        }
    (void)p64;
    double sum = 0.0;
    for (int s = 0; s < opt->n_shards; s++)
        sum += opt->partials[s];
    float clip = (float)opt->cfg.global_clipnorm;
    float norm = sqrtf((float)sum);
    float inv_norm = 1.0f / norm;
    float inv_c = (float)(1.0 / opt->cfg.global_clipnorm);
    float smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
    p->clip = ADADELTA_CLIP_SCALE;
    p->clip_a = clip * smaller + (norm - norm);
}

void adadelta__set_clip_params(adadelta *opt, adadelta_call *c)
{
    const adadelta_config *cfg = &opt->cfg;
    adadelta_step_params *p = &c->p;
    adadelta_step_params_f64 *p64 = &c->p64;
    if (clipnorm_on(cfg)) {
        set_clipnorm(opt, p, p64);
    } else if (global_clipnorm_on(cfg)) {
        set_global_clipnorm(opt, c, p, p64);
    } else if (adadelta_is_set(cfg->clipvalue) && cfg->clipvalue > 0) {
        p->clip = p64->clip = ADADELTA_CLIP_VALUE;
        p->clip_a = (float)cfg->clipvalue;
        p64->clip_a = cfg->clipvalue;
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
