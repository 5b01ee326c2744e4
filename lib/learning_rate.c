/* learning_rate.c - the learning-rate helpers of adadelta.h: a constant, a
 * callback, or one of Keras's schedules with its constructor's defaults for
 * the arguments not given (schedule.c describes the schedules). */
#include "internal.h"

void adadelta_lr_constant(adadelta_learning_rate *lr, double value)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_CONSTANT);
    lr->value = value;
}

void adadelta_lr_exponential_decay(adadelta_learning_rate *lr, double initial,
                                   double decay_steps, double decay_rate, int staircase)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_EXPONENTIAL_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->decay_rate = decay_rate;
    lr->staircase = staircase;
}

void adadelta_lr_inverse_time_decay(adadelta_learning_rate *lr, double initial,
                                    double decay_steps, double decay_rate, int staircase)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_INVERSE_TIME_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->decay_rate = decay_rate;
    lr->staircase = staircase;
}

void adadelta_lr_polynomial_decay(adadelta_learning_rate *lr, double initial,
                                  double decay_steps, double end_learning_rate, double power,
                                  int cycle)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_POLYNOMIAL_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->end_learning_rate = end_learning_rate;
    lr->power = power;
    lr->cycle = cycle;
}

int adadelta_lr_piecewise_constant_decay(adadelta_learning_rate *lr, int n_boundaries,
                                         const double *boundaries, const double *values)
{
    if (!lr || (n_boundaries > 0 && !boundaries) || !values)
        return adadelta__fail(ADADELTA_EINVAL, "PiecewiseConstantDecay: NULL argument");
    if (n_boundaries < 1 || n_boundaries > ADADELTA_MAX_PIECES)
        return adadelta__fail(ADADELTA_EINVAL,
                              "PiecewiseConstantDecay: %d boundaries is "
                              "outside [1, %d]",
                              n_boundaries, ADADELTA_MAX_PIECES);
    adadelta__lr_start(lr, ADADELTA_LR_PIECEWISE_CONSTANT_DECAY);
    lr->n_boundaries = n_boundaries;
    for (int i = 0; i < n_boundaries; i++)
        lr->boundaries[i] = boundaries[i];
    for (int i = 0; i <= n_boundaries; i++)
        lr->values[i] = values[i];
    return ADADELTA_OK;
}

void adadelta_lr_cosine_decay(adadelta_learning_rate *lr, double initial, double decay_steps,
                              double alpha, double warmup_target, double warmup_steps)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_COSINE_DECAY);
    lr->initial_learning_rate = initial;
    lr->decay_steps = decay_steps;
    lr->alpha = alpha;
    lr->warmup_target = warmup_target;
    lr->warmup_steps = warmup_steps;
}

void adadelta_lr_cosine_decay_restarts(adadelta_learning_rate *lr, double initial,
                                       double first_decay_steps, double t_mul, double m_mul,
                                       double alpha)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_COSINE_DECAY_RESTARTS);
    lr->initial_learning_rate = initial;
    lr->decay_steps = first_decay_steps;
    lr->t_mul = t_mul;
    lr->m_mul = m_mul;
    lr->alpha = alpha;
}

void adadelta_lr_from_callback(adadelta_learning_rate *lr, adadelta_lr_callback fn,
                               void *user_data)
{
    if (!lr)
        return;
    adadelta__lr_start(lr, ADADELTA_LR_CALLBACK);
    lr->callback = fn;
    lr->user_data = user_data;
}
