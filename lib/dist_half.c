/* dist_half.c - the float16 and bfloat16 variables of a data-parallel step.
 *
 * The MPI layer reduces float32 words: a 16-bit variable contributes its
 * prepared gradient as a float32 value (a value of its dtype; float32 itself
 * inside LossScaleOptimizer, where Keras divides by a float32 scale), and
 * gets back the float32 mean over the processes. That mean becomes the
 * gradient Keras's update_step casts (the kernels' narrow: rounded to the
 * dtype, divided by the accumulation steps, clipped, cast) in a 16-bit
 * scratch, and the fused step runs on it without divide or clip. With the
 * mean of equal contributions (exact in float32) these are the bits of
 * adadelta_apply. */
#include "internal.h"
#include "kernels/half.h"

#include <stdlib.h>
#include <string.h>

int adadelta__dist_setup(adadelta *opt)
{
    int64_t n = 0;
    for (int v = 0; v < opt->n_vars; v++) {
        adadelta_var *var = &opt->vars[v];
        if (var->dtype == ADADELTA_F16 || var->dtype == ADADELTA_BF16) {
            var->half_off = n;
            n += var->size;
        }
    }
    if (!n || opt->dist_half)
        return ADADELTA_OK;
    if (!(opt->dist_half = malloc((size_t)n * sizeof *opt->dist_half)))
        return adadelta__fail(ADADELTA_ENOMEM,
                              "data-parallel setup: out of memory for %lld 16-bit gradients",
                              (long long)n);
    return ADADELTA_OK;
}

/* The two 16-bit kernel sets have the same function types. */
#define HALF_KERNEL(var, fn)                                                  \
    ((var)->dtype == ADADELTA_F16 ? adadelta__kernels()->f16.fn : adadelta__kernels()->bf16.fn)

/* narrow's params: the mean divided by the accumulation steps (in the
 * dtype, or in float32 with a float32 gradient), no clip. */
static adadelta_step_params narrow_params(const adadelta *opt, const adadelta_var *var)
{
    adadelta_step_params q;
    memset(&q, 0, sizeof q);
    int64_t n = opt->cfg.gradient_accumulation_steps;
    q.wide_grad = q.wide_clip = opt->cfg.dynamic_loss_scale;
    if (n) {
        q.divide = 1;
        q.divisor = q.wide_grad ? (float)n
                    : var->dtype == ADADELTA_F16 ? f16_round_double((double)n)
                                                 : bf16_round_double((double)n);
    }
    return q;
}

static uint16_t *scratch(const adadelta *opt, const adadelta_var *var, int64_t elem)
{
    return opt->dist_half + var->half_off + elem;
}

double adadelta__half_mean_sum_squares(adadelta *opt, int s, const adadelta_call *c)
{
    const adadelta_shard *sh = &opt->shards[s];
    const adadelta_var *var = &opt->vars[sh->var];
    const float *mean = (const float *)c->grads[sh->var] + sh->begin;
    int64_t n = sh->end - sh->begin;
    adadelta_step_params q = narrow_params(opt, var);
    if (q.wide_grad) /* squares of a float32 gradient: the float32 loop */
        return adadelta__kernels()->f32.sum_squares(&q, n, mean, NULL);
    uint16_t *g = scratch(opt, var, sh->begin);
    HALF_KERNEL(var, narrow)(&q, n, mean, g);
    q.divide = 0;
    return HALF_KERNEL(var, sum_squares)(&q, n, g, NULL);
}

void adadelta__half_mean_step(adadelta *opt, int s, const adadelta_call *c,
                              const adadelta_step_params *q)
{
    const adadelta_shard *sh = &opt->shards[s];
    adadelta_var *var = &opt->vars[sh->var];
    const float *mean = (const float *)c->grads[sh->var] + sh->begin;
    int64_t n = sh->end - sh->begin;
    adadelta_step_params nq = narrow_params(opt, var);
    nq.clip = q->clip;
    nq.clip_a = q->clip_a;
    nq.clip_b = q->clip_b;
    nq.clip_wide = q->clip_wide;
    nq.wide_clip = q->wide_clip;
    uint16_t *g = scratch(opt, var, sh->begin);
    HALF_KERNEL(var, narrow)(&nq, n, mean, g);
    adadelta_step_params sq = *q;
    sq.divide = sq.accumulate = 0;
    sq.clip = ADADELTA_CLIP_NONE;
    sq.wide_grad = sq.wide_clip = 0;
    HALF_KERNEL(var, step)(&sq, n, adadelta__data_at(var, sh->begin), g, NULL,
                           adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_GRAD, sh->begin),
                           adadelta__slot_at(var, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR, sh->begin),
                           adadelta__slot_at(var, ADADELTA_SLOT_EMA, sh->begin));
}
