/* config.c - Keras's defaults and the validation of a config with the
 * conditions of Keras's constructors (the learning rate's in schedule.c). */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int adadelta_is_set(double x) { return !isnan(x); }

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

/* Each check names the argument and the value, as jansson's errors do.
 * The step uses every hyperparameter in float32: a value must also be valid
 * after that conversion (1e-50 is 0 there, 1e39 infinite). */
int adadelta__need_finite(const char *what, double x)
{
    if (!isfinite(x))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g is not a finite number",
                              what, x);
    if (!isfinite((float)x))
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: %s = %g is not finite as float32 (the step's precision)",
                              what, x);
    return ADADELTA_OK;
}

/* A non-zero value that float32 rounds to 0. */
static int need_nonzero_f32(const char *what, double x)
{
    if (x != 0 && (float)x == 0)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: %s = %g is 0 as float32 (the step's precision)", what, x);
    return ADADELTA_OK;
}

int adadelta__need_range(const char *what, double x, double lo, double hi)
{
    int rc = adadelta__need_finite(what, x);
    if (rc)
        return rc;
    if (x < lo || x > hi)
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g is outside [%g, %g]",
                              what, x, lo, hi);
    return ADADELTA_OK;
}

int adadelta__need_positive(const char *what, double x)
{
    int rc = adadelta__need_finite(what, x);
    if (rc)
        return rc;
    if (!(x > 0))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s = %g must be > 0", what, x);
    return need_nonzero_f32(what, x);
}

int adadelta__optional_finite(const char *what, double x)
{
    /* NaN is "unset"; only infinities (and values float32 cannot hold)
     * can be wrong here. */
    if (isnan(x))
        return ADADELTA_OK;
    int rc = adadelta__need_finite(what, x);
    return rc ? rc : need_nonzero_f32(what, x);
}

int adadelta_config_validate(const adadelta_config *cfg)
{
    int rc;
    if (!cfg)
        return adadelta__fail(ADADELTA_EINVAL, "config: NULL");
    if ((rc = adadelta__validate_lr(&cfg->learning_rate)) ||
        (rc = adadelta__need_range("rho", cfg->rho, 0, 1)) ||
        (rc = adadelta__need_range("epsilon", cfg->epsilon, 0, INFINITY)) ||
        (rc = adadelta__optional_finite("weight_decay", cfg->weight_decay)) ||
        (rc = adadelta__optional_finite("clipnorm", cfg->clipnorm)) ||
        (rc = adadelta__optional_finite("clipvalue", cfg->clipvalue)) ||
        (rc = adadelta__optional_finite("global_clipnorm", cfg->global_clipnorm)) ||
        (rc = adadelta__optional_finite("loss_scale_factor", cfg->loss_scale_factor)))
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
        if ((rc = adadelta__need_range("ema_momentum", cfg->ema_momentum, 0, 1)))
            return rc;
        if (cfg->ema_overwrite_frequency < 0)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: ema_overwrite_frequency = %lld must "
                                  "be an integer >= 1 or unset",
                                  (long long)cfg->ema_overwrite_frequency);
    } else if (isnan(cfg->ema_momentum) || isinf(cfg->ema_momentum)) {
        return adadelta__need_finite("ema_momentum", cfg->ema_momentum);
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
        if ((rc = adadelta__need_positive("initial_scale", cfg->initial_scale)))
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
