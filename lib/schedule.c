/* schedule.c - Keras's six learning-rate schedules, in float32 as Keras's
 * ops compute them (keras/src/optimizers/schedules/learning_rate_schedule.py).
 * Hyperparameters are cast to float32 where Keras casts them; "1 - alpha" of
 * CosineDecay is a Python (double) subtraction there. */
#include "internal.h"

#include <math.h>

static float exponential(const adadelta_learning_rate *lr, float step)
{
    float p = step / (float)lr->decay_steps;
    if (lr->staircase)
        p = floorf(p);
    return (float)lr->initial_learning_rate * powf((float)lr->decay_rate, p);
}

static float inverse_time(const adadelta_learning_rate *lr, float step)
{
    float p = step / (float)lr->decay_steps;
    if (lr->staircase)
        p = floorf(p);
    return (float)lr->initial_learning_rate / (1.0f + (float)lr->decay_rate * p);
}

static float polynomial(const adadelta_learning_rate *lr, float step)
{
    float decay_steps = (float)lr->decay_steps;
    if (lr->cycle) {
        float multiplier = step == 0.0f ? 1.0f : ceilf(step / decay_steps);
        decay_steps = decay_steps * multiplier;
    } else {
        step = fminf(step, decay_steps);
    }
    float p = step / decay_steps;
    float initial = (float)lr->initial_learning_rate;
    float end = (float)lr->end_learning_rate;
    return (initial - end) * powf(1.0f - p, (float)lr->power) + end;
}

static float piecewise(const adadelta_learning_rate *lr, int64_t step)
{
    int n = lr->n_boundaries;
    double s = (double)step;
    for (int i = 0; i < n; i++)
        if (s <= lr->boundaries[i])
            return (float)lr->values[i];
    return (float)lr->values[n];
}

/* CosineDecay's _decay_function. */
static float cosine_part(const adadelta_learning_rate *lr, float step,
                         float decay_steps, float from)
{
    float fraction = step / decay_steps;
    float cosine = 0.5f * (1.0f + cosf((float)M_PI * fraction));
    float decayed = (float)(1.0 - lr->alpha) * cosine + (float)lr->alpha;
    return from * decayed;
}

static float cosine(const adadelta_learning_rate *lr, float step)
{
    float initial = (float)lr->initial_learning_rate;
    float decay_steps = (float)lr->decay_steps;
    if (!adadelta_is_set(lr->warmup_target)) {
        step = fminf(step, decay_steps);
        return cosine_part(lr, step, decay_steps, initial);
    }
    float target = (float)lr->warmup_target;
    float warmup = (float)lr->warmup_steps;
    step = fminf(step, decay_steps + warmup);
    if (step < warmup)
        return (target - initial) * (step / warmup) + initial;
    return cosine_part(lr, step - warmup, decay_steps, target);
}

static float cosine_restarts(const adadelta_learning_rate *lr, float step)
{
    float fraction = step / (float)lr->decay_steps;
    float t_mul = (float)lr->t_mul, m_mul = (float)lr->m_mul;
    float alpha = (float)lr->alpha;
    float i_restart;
    if (t_mul == 1.0f) {
        i_restart = floorf(fraction);
        fraction -= i_restart;
    } else {
        i_restart = floorf(logf(1.0f - fraction * (1.0f - t_mul)) / logf(t_mul));
        float sum_r = (1.0f - powf(t_mul, i_restart)) / (1.0f - t_mul);
        fraction = (fraction - sum_r) / powf(t_mul, i_restart);
    }
    float m_fac = powf(m_mul, i_restart);
    float cosine = 0.5f * m_fac * (1.0f + cosf((float)M_PI * fraction));
    float decayed = (1.0f - alpha) * cosine + alpha;
    return (float)lr->initial_learning_rate * decayed;
}

float adadelta_lr_evaluate(const adadelta_learning_rate *lr, int64_t step)
{
    if (!lr || (lr->kind == ADADELTA_LR_PIECEWISE_CONSTANT_DECAY &&
                (lr->n_boundaries < 0 || lr->n_boundaries > ADADELTA_MAX_PIECES)))
        return NAN;
    float s = (float)step;
    switch (lr->kind) {
    case ADADELTA_LR_CONSTANT:
        return (float)lr->value;
    case ADADELTA_LR_EXPONENTIAL_DECAY:
        return exponential(lr, s);
    case ADADELTA_LR_INVERSE_TIME_DECAY:
        return inverse_time(lr, s);
    case ADADELTA_LR_POLYNOMIAL_DECAY:
        return polynomial(lr, s);
    case ADADELTA_LR_PIECEWISE_CONSTANT_DECAY:
        return piecewise(lr, step);
    case ADADELTA_LR_COSINE_DECAY:
        return cosine(lr, s);
    case ADADELTA_LR_COSINE_DECAY_RESTARTS:
        return cosine_restarts(lr, s);
    case ADADELTA_LR_CALLBACK:
        return lr->callback ? lr->callback(lr->user_data) : NAN;
    }
    return NAN;
}
