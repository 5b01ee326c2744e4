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
 * variable sees f64(f32(lr)).
 *
 * The 16-bit dtypes (float16, bfloat16) hold their constants as floats of
 * their values: T(rho) and T(1 - rho) straight from the double, T(f32(lr));
 * their gradients are in T, except inside a LossScaleOptimizer, whose
 * float32 scale makes them float32 until the step casts them (Keras's
 * result_type). */
#include "internal.h"
#include "kernels/half.h"

#include <math.h>

/* ------------------------------------------------------------ 16-bit */

/* A 16-bit dtype's rounding of a float and of a double. */
typedef struct half_type {
    adadelta_dtype dtype;
    float (*round)(float);
    float (*round_double)(double);
} half_type;

static float round_f16(float x) { return f16_round(x); }
static float round_f16_double(double x) { return f16_round_double(x); }
static float round_bf16(float x) { return bf16_round(x); }
static float round_bf16_double(double x) { return bf16_round_double(x); }

static const half_type half_f16 = {ADADELTA_F16, round_f16, round_f16_double};
static const half_type half_bf16 = {ADADELTA_BF16, round_bf16, round_bf16_double};

static adadelta_step_params *half_params(adadelta_call *c, const half_type *h)
{
    return h->dtype == ADADELTA_F16 ? &c->p16 : &c->pbf16;
}

static void set_half(const adadelta *opt, const adadelta_step_params *p, adadelta_step_params *q,
                     const half_type *h)
{
    const adadelta_config *cfg = &opt->cfg;
    float (*rd)(double) = h->round_double;
    *q = *p; /* flags; the clip is set by set_clip_params */
    q->wide_grad = cfg->dynamic_loss_scale; /* g / float32 scale is float32 */
    q->wide_clip = q->wide_grad; /* a clip of a float32 gradient is float32 */
    if (p->divide && !cfg->dynamic_loss_scale)
        q->divisor = rd(cfg->loss_scale_factor);
    if (p->accumulate && !q->wide_grad)
        q->steps = rd((double)cfg->gradient_accumulation_steps);
    q->lr = h->round(p->lr);
    q->rho = rd(cfg->rho);
    q->one_minus_rho = rd(1.0 - cfg->rho);
    q->epsilon = rd(cfg->epsilon);
    q->wd = rd(cfg->weight_decay);
    if (p->ema) {
        q->ema_m = p->ema_m != 0.0f ? rd(cfg->ema_momentum) : 0.0f;
        q->ema_one_minus_m = h->round(1.0f - q->ema_m);
    }
}

void adadelta__set_half_params(const adadelta *opt, adadelta_call *c)
{
    if (!opt->n_half)
        return;
    set_half(opt, &c->p, &c->p16, &half_f16);
    set_half(opt, &c->p, &c->pbf16, &half_bf16);
}

static const half_type *half_of(const adadelta_var *var)
{
    return var->dtype == ADADELTA_F16    ? &half_f16
           : var->dtype == ADADELTA_BF16 ? &half_bf16
                                         : NULL;
}

/* The dtype a variable's gradient is clipped in: its own, float32 for a
 * 16-bit one inside a LossScaleOptimizer. */
static int gradient_dtype(const adadelta *opt, const adadelta_var *var)
{
    if (half_of(var) && opt->cfg.dynamic_loss_scale)
        return ADADELTA_F32;
    return var->dtype;
}

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
        const half_type *h = half_of(&opt->vars[v]);
        int d = gradient_dtype(opt, &opt->vars[v]);
        sum += d == ADADELTA_F64 ? s : h && d != ADADELTA_F32 ? (double)h->round_double(s) : (double)(float)s;
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
    /* every shard's partial in order; a 16-bit gradient's sum rounded to
     * its dtype first (Keras's per-variable sums in their dtypes) */
    double sum = 0.0;
    for (int v = 0; v < opt->n_vars; v++) {
        const half_type *h = half_of(&opt->vars[v]);
        if (h && gradient_dtype(opt, &opt->vars[v]) != ADADELTA_F32) {
            if (c->grads[v])
                sum += (double)h->round_double(variable_sum(opt, v));
            continue;
        }
        int end = v + 1 < opt->n_vars ? opt->vars[v + 1].first_shard : opt->n_shards;
        for (int s = opt->vars[v].first_shard; s < end; s++)
            sum += opt->partials[s];
    }
    float clip = (float)opt->cfg.global_clipnorm;
    float norm = sqrtf((float)sum);
    float inv_norm = 1.0f / norm;
    float inv_c = (float)(1.0 / opt->cfg.global_clipnorm);
    float smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
    p->clip = ADADELTA_CLIP_SCALE;
    p->clip_a = clip * smaller + (norm - norm);
}

/* _clip_by_norm of a 16-bit gradient in its dtype T: the squares were
 * rounded to T (the kernel), their double sum is rounded once to T. */
static double half_clipnorm_b(double sum, float c, const half_type *h)
{
    float l2sum = h->round_double(sum);
    float l2norm = l2sum > 0 ? h->round(sqrtf(l2sum)) : l2sum;
    return isnan(l2norm) ? l2norm : (l2norm > c ? l2norm : c);
}

/* clip_by_global_norm when every present gradient is of one 16-bit dtype
 * T (not float32): the stack of the variables' sums is in T (this library
 * adds them in double, rounding each variable's sum and the total to T). */
static void set_global_clipnorm_half(adadelta *opt, const adadelta_call *c,
                                     adadelta_step_params *q, const half_type *h)
{
    double sum = 0.0;
    for (int v = 0; v < opt->n_vars; v++)
        if (c->grads[v])
            sum += (double)h->round_double(variable_sum(opt, v));
    double cn = opt->cfg.global_clipnorm;
    float clip = h->round_double(cn);
    float norm = h->round(sqrtf(h->round_double(sum)));
    float inv_norm = h->round(1.0f / norm);
    float inv_c = h->round_double(1.0 / cn);
    float smaller = isnan(inv_norm) ? inv_norm : (inv_norm < inv_c ? inv_norm : inv_c);
    q->clip = ADADELTA_CLIP_SCALE;
    q->clip_a = h->round(h->round(clip * smaller) + h->round(norm - norm));
}

/* The clips of the 16-bit dtypes, after the float32 (and float64) ones. */
static void set_half_clip_params(adadelta *opt, adadelta_call *c)
{
    const adadelta_config *cfg = &opt->cfg;
    const half_type *types[2] = {&half_f16, &half_bf16};
    for (int k = 0; k < 2; k++) {
        const half_type *h = types[k];
        adadelta_step_params *q = half_params(c, h);
        int wide = q->wide_grad;
        if (c->p.clip == ADADELTA_CLIP_VALUE) {
            q->clip = ADADELTA_CLIP_VALUE;
            q->clip_a = wide ? (float)cfg->clipvalue : h->round_double(cfg->clipvalue);
        } else if (c->p.clip == ADADELTA_CLIP_NORM) {
            q->clip = ADADELTA_CLIP_NORM;
            q->clip_a = wide ? (float)cfg->clipnorm : h->round_double(cfg->clipnorm);
        }
    }
    if (c->p.clip == ADADELTA_CLIP_NORM) {
        for (int v = 0; v < opt->n_vars; v++) {
            const half_type *h = half_of(&opt->vars[v]);
            if (h && !opt->cfg.dynamic_loss_scale)
                opt->var_clip_b[v] = half_clipnorm_b(variable_sum(opt, v),
                                                     half_params(c, h)->clip_a, h);
        }
        return;
    }
    if (c->p.clip != ADADELTA_CLIP_SCALE && c->p.clip != ADADELTA_CLIP_SCALE_WIDE)
        return;
    /* the global norm: its dtype is the widest of the present gradients' */
    int one = -1, wider = 0;
    for (int v = 0; v < opt->n_vars; v++) {
        if (!c->grads[v])
            continue;
        int d = gradient_dtype(opt, &opt->vars[v]);
        if (d == ADADELTA_F16 || d == ADADELTA_BF16) {
            wider |= one >= 0 && one != d;
            one = d;
        } else {
            wider = 1;
        }
    }
    for (int k = 0; k < 2; k++) {
        adadelta_step_params *q = half_params(c, types[k]);
        if (!wider && one == (int)types[k]->dtype) {
            set_global_clipnorm_half(opt, c, q, types[k]);
        } else if (c->p.clip == ADADELTA_CLIP_SCALE_WIDE) {
            q->clip = ADADELTA_CLIP_SCALE_WIDE; /* float64: T(f64(g) * scale) */
            q->clip_wide = c->p.clip_wide;
        } else {
            q->clip = ADADELTA_CLIP_SCALE; /* float32: T(f32(g) * scale) */
            q->clip_a = c->p.clip_a;
            q->wide_clip = 1;
        }
    }
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
    if (opt->n_half)
        set_half_clip_params(opt, c);
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
