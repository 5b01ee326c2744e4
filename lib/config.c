/* config.c - Keras's defaults, the learning-rate helpers, and validation
 * with the conditions of Keras's constructors. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int adadelta_is_set(double x) { return !isnan(x); }

/* Keras's default `name` of each schedule class. */
static const char *const default_names[] = {
    [ADADELTA_LR_EXPONENTIAL_DECAY] = "ExponentialDecay",
    [ADADELTA_LR_INVERSE_TIME_DECAY] = "InverseTimeDecay",
    [ADADELTA_LR_POLYNOMIAL_DECAY] = "PolynomialDecay",
    [ADADELTA_LR_PIECEWISE_CONSTANT_DECAY] = "PiecewiseConstant",
    [ADADELTA_LR_COSINE_DECAY] = "CosineDecay",
    [ADADELTA_LR_COSINE_DECAY_RESTARTS] = "SGDRDecay",
};

void adadelta__lr_set_kind(adadelta_learning_rate *lr, adadelta_lr_kind kind)
{
    lr->kind = kind;
    const char *name = (size_t)kind < sizeof default_names / sizeof default_names[0]
                           ? default_names[kind]
                           : NULL;
    snprintf(lr->name, sizeof lr->name, "%s", name ? name : "");
}

static void lr_clear(adadelta_learning_rate *lr)
{
    memset(lr, 0, sizeof *lr);
    lr->end_learning_rate = 0.0001;
    lr->power = 1.0;
    lr->warmup_target = ADADELTA_UNSET;
    lr->t_mul = 2.0;
    lr->m_mul = 1.0;
}

void adadelta_lr_constant(adadelta_learning_rate *lr, double value)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_CONSTANT);
    lr->value = value;
}

void adadelta_lr_exponential_decay(adadelta_learning_rate *lr, double initial,
                                   double decay_steps, double decay_rate,
                                   int staircase)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_EXPONENTIAL_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->decay_rate = decay_rate;
    lr->staircase = staircase;
}

void adadelta_lr_inverse_time_decay(adadelta_learning_rate *lr, double initial,
                                    double decay_steps, double decay_rate,
                                    int staircase)
{
    if (!lr)
        return;
    adadelta_lr_exponential_decay(lr, initial, decay_steps, decay_rate,
                                  staircase);
    adadelta__lr_set_kind(lr, ADADELTA_LR_INVERSE_TIME_DECAY);
}

void adadelta_lr_polynomial_decay(adadelta_learning_rate *lr, double initial,
                                  double decay_steps, double end_learning_rate,
                                  double power, int cycle)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_POLYNOMIAL_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->end_learning_rate = end_learning_rate;
    lr->power = power;
    lr->cycle = cycle;
}

int adadelta_lr_piecewise_constant_decay(adadelta_learning_rate *lr,
                                         int n_boundaries,
                                         const double *boundaries,
                                         const double *values)
{
    if (!lr || (n_boundaries > 0 && !boundaries) || !values)
        return adadelta__fail(ADADELTA_EINVAL, "PiecewiseConstantDecay: NULL argument");
    if (n_boundaries < 0 || n_boundaries > ADADELTA_MAX_PIECES)
        return adadelta__fail(ADADELTA_EINVAL,
                              "PiecewiseConstantDecay: %d boundaries is "
                              "outside [0, %d]",
                              n_boundaries, ADADELTA_MAX_PIECES);
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_PIECEWISE_CONSTANT_DECAY);
    lr->n_boundaries = n_boundaries;
    for (int i = 0; i < n_boundaries; i++)
        lr->boundaries[i] = boundaries[i];
    for (int i = 0; i <= n_boundaries; i++)
        lr->values[i] = values[i];
    return ADADELTA_OK;
}

void adadelta_lr_cosine_decay(adadelta_learning_rate *lr, double initial,
                              double decay_steps, double alpha,
                              double warmup_target, double warmup_steps)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_COSINE_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->alpha = alpha;
    lr->warmup_target = warmup_target;
    lr->warmup_steps = warmup_steps;
}

void adadelta_lr_cosine_decay_restarts(adadelta_learning_rate *lr,
                                       double initial,
                                       double first_decay_steps, double t_mul,
                                       double m_mul, double alpha)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_COSINE_DECAY_RESTARTS);
    lr->initial_learning_rate = initial;
    lr->decay_steps = first_decay_steps;
    lr->t_mul = t_mul;
    lr->m_mul = m_mul;
    lr->alpha = alpha;
}

void adadelta_lr_from_callback(adadelta_learning_rate *lr,
                               adadelta_lr_callback fn, void *user_data)
{
    if (!lr)
        return;
    lr_clear(lr);
    adadelta__lr_set_kind(lr, ADADELTA_LR_CALLBACK);
    lr->callback = fn;
    lr->user_data = user_data;
}

void adadelta_config_default(adadelta_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    adadelta_lr_constant(&cfg->learning_rate, 0.001);
    cfg->rho = 0.95;
    cfg->epsilon = 1e-7;
    cfg->weight_decay = ADADELTA_UNSET;
    cfg->clipnorm = ADADELTA_UNSET;
    cfg->clipvalue = ADADELTA_UNSET;
    cfg->global_clipnorm = ADADELTA_UNSET;
    cfg->use_ema = 0;
    cfg->ema_momentum = 0.99;
    cfg->ema_overwrite_frequency = 0;
    cfg->loss_scale_factor = ADADELTA_UNSET;
    cfg->gradient_accumulation_steps = 0;
    strcpy(cfg->name, "adadelta");
    cfg->dynamic_loss_scale = 0;
    cfg->initial_scale = 32768.0;
    cfg->dynamic_growth_steps = 2000;
    strcpy(cfg->loss_scale_name, "loss_scale_optimizer");
    cfg->check_finite = 0;
}

/* Each check names the argument and the value, as jansson's errors do. */
static int need_finite(const char *what, double x)
{
    if (!isfinite(x))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g is not a finite number",
                              what, x);
    return ADADELTA_OK;
}

static int need_range(const char *what, double x, double lo, double hi)
{
    int rc = need_finite(what, x);
    if (rc)
        return rc;
    if (x < lo || x > hi)
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g is outside [%g, %g]",
                              what, x, lo, hi);
    return ADADELTA_OK;
}

static int need_positive(const char *what, double x)
{
    int rc = need_finite(what, x);
    if (rc)
        return rc;
    if (!(x > 0))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g must be > 0", what, x);
    return ADADELTA_OK;
}

static int optional_finite(const char *what, double x)
{
    /* NaN is "unset"; only infinities can be wrong here. */
    if (isinf(x))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g is not a finite number",
                              what, x);
    return ADADELTA_OK;
}

int adadelta__validate_lr(const adadelta_learning_rate *lr)
{
    int rc = ADADELTA_OK;
    switch (lr->kind) {
    case ADADELTA_LR_CONSTANT:
        /* stored in a float32 variable, as Keras does: it must fit */
        if ((rc = need_finite("learning_rate", lr->value)))
            return rc;
        return need_finite("learning_rate (as float32)", (float)lr->value);
    case ADADELTA_LR_EXPONENTIAL_DECAY:
    case ADADELTA_LR_INVERSE_TIME_DECAY:
        if ((rc = need_finite("learning_rate.initial_learning_rate",
                              lr->initial_learning_rate)) ||
            (rc = need_positive("learning_rate.decay_steps", lr->decay_steps)) ||
            (rc = need_finite("learning_rate.decay_rate", lr->decay_rate)))
            return rc;
        return ADADELTA_OK;
    case ADADELTA_LR_POLYNOMIAL_DECAY:
        if ((rc = need_finite("learning_rate.initial_learning_rate",
                              lr->initial_learning_rate)) ||
            (rc = need_positive("learning_rate.decay_steps", lr->decay_steps)) ||
            (rc = need_finite("learning_rate.end_learning_rate",
                              lr->end_learning_rate)) ||
            (rc = need_finite("learning_rate.power", lr->power)))
            return rc;
        return ADADELTA_OK;
    case ADADELTA_LR_PIECEWISE_CONSTANT_DECAY:
        if (lr->n_boundaries < 0 || lr->n_boundaries > ADADELTA_MAX_PIECES)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: learning_rate.boundaries has %d "
                                  "entries, outside [0, %d]",
                                  lr->n_boundaries, ADADELTA_MAX_PIECES);
        for (int i = 0; i < lr->n_boundaries; i++)
            if ((rc = need_finite("learning_rate.boundaries[]", lr->boundaries[i])))
                return rc;
        for (int i = 0; i <= lr->n_boundaries; i++)
            if ((rc = need_finite("learning_rate.values[]", lr->values[i])))
                return rc;
        return ADADELTA_OK;
    case ADADELTA_LR_COSINE_DECAY:
        if ((rc = need_finite("learning_rate.initial_learning_rate",
                              lr->initial_learning_rate)) ||
            (rc = need_positive("learning_rate.decay_steps", lr->decay_steps)) ||
            (rc = need_finite("learning_rate.alpha", lr->alpha)) ||
            (rc = optional_finite("learning_rate.warmup_target", lr->warmup_target)) ||
            (rc = need_range("learning_rate.warmup_steps", lr->warmup_steps, 0,
                             INFINITY)))
            return rc;
        return ADADELTA_OK;
    case ADADELTA_LR_COSINE_DECAY_RESTARTS:
        if ((rc = need_finite("learning_rate.initial_learning_rate",
                              lr->initial_learning_rate)) ||
            (rc = need_positive("learning_rate.first_decay_steps", lr->decay_steps)) ||
            (rc = need_positive("learning_rate.t_mul", lr->t_mul)) ||
            (rc = need_finite("learning_rate.m_mul", lr->m_mul)) ||
            (rc = need_finite("learning_rate.alpha", lr->alpha)))
            return rc;
        return ADADELTA_OK;
    case ADADELTA_LR_CALLBACK:
        if (!lr->callback)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: learning_rate callback is NULL");
        return ADADELTA_OK;
    }
    return adadelta__fail(ADADELTA_EINVAL, "config: learning_rate kind %d is unknown",
                          (int)lr->kind);
}

int adadelta_config_validate(const adadelta_config *cfg)
{
    int rc;
    if (!cfg)
        return adadelta__fail(ADADELTA_EINVAL, "config: NULL");
    if ((rc = adadelta__validate_lr(&cfg->learning_rate)) ||
        (rc = need_range("rho", cfg->rho, 0, 1)) ||
        (rc = need_range("epsilon", cfg->epsilon, 0, INFINITY)) ||
        (rc = optional_finite("weight_decay", cfg->weight_decay)) ||
        (rc = optional_finite("clipnorm", cfg->clipnorm)) ||
        (rc = optional_finite("clipvalue", cfg->clipvalue)) ||
        (rc = optional_finite("global_clipnorm", cfg->global_clipnorm)) ||
        (rc = optional_finite("loss_scale_factor", cfg->loss_scale_factor)))
        return rc;
    int n_clip = adadelta_is_set(cfg->clipnorm) + adadelta_is_set(cfg->clipvalue) +
                 adadelta_is_set(cfg->global_clipnorm);
    if (n_clip > 1)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: only one of clipnorm, clipvalue and "
                              "global_clipnorm can be set (clipnorm = %g, "
                              "clipvalue = %g, global_clipnorm = %g)",
                              cfg->clipnorm, cfg->clipvalue, cfg->global_clipnorm);
    if (cfg->use_ema != 0 && cfg->use_ema != 1)
        return adadelta__fail(ADADELTA_EINVAL, "config: use_ema = %d is not 0 or 1",
                              cfg->use_ema);
    if (cfg->use_ema) {
        if ((rc = need_range("ema_momentum", cfg->ema_momentum, 0, 1)))
            return rc;
        if (cfg->ema_overwrite_frequency < 0)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: ema_overwrite_frequency = %lld must "
                                  "be an integer >= 1 or unset",
                                  (long long)cfg->ema_overwrite_frequency);
    } else if (isnan(cfg->ema_momentum) || isinf(cfg->ema_momentum)) {
        return need_finite("ema_momentum", cfg->ema_momentum);
    }
    if (cfg->gradient_accumulation_steps != 0 && cfg->gradient_accumulation_steps < 2)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: gradient_accumulation_steps = %lld must "
                              "be an integer >= 2 or unset",
                              (long long)cfg->gradient_accumulation_steps);
    if (!memchr(cfg->name, '\0', sizeof cfg->name))
        return adadelta__fail(ADADELTA_EINVAL, "config: name is longer than %d bytes",
                              ADADELTA_NAME_MAX - 1);
    if (cfg->dynamic_loss_scale) {
        if ((rc = need_positive("initial_scale", cfg->initial_scale)))
            return rc;
        if (cfg->dynamic_growth_steps < 1)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: dynamic_growth_steps = %lld must be "
                                  "an integer >= 1",
                                  (long long)cfg->dynamic_growth_steps);
        if (!memchr(cfg->loss_scale_name, '\0', sizeof cfg->loss_scale_name))
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: loss_scale_name is longer than %d bytes",
                                  ADADELTA_NAME_MAX - 1);
    }
    return ADADELTA_OK;
}
