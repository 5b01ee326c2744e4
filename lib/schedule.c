/* schedule.c - Keras's learning-rate schedules as one table: per schedule
 * class its Keras class name, default name, config keys (with their JSON
 * type and validation) and its evaluation in float32 as Keras's ops compute
 * it (keras/src/optimizers/schedules/learning_rate_schedule.py). A new
 * schedule is one entry here (plus its enum value and helper in
 * adadelta.h). Hyperparameters are cast to float32 where Keras casts them;
 * "1 - alpha" of CosineDecay is a Python (double) subtraction there. */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ evaluation */

static float exponential(const adadelta_learning_rate *lr, float step, int64_t raw_step)
{
    (void)raw_step;
    float p = step / (float)lr->decay_steps;
    if (lr->staircase)
        p = floorf(p);
    return (float)lr->initial_learning_rate * powf((float)lr->decay_rate, p);
}

static float inverse_time(const adadelta_learning_rate *lr, float step, int64_t raw_step)
{
    (void)raw_step;
    float p = step / (float)lr->decay_steps;
    if (lr->staircase)
        p = floorf(p);
    return (float)lr->initial_learning_rate / (1.0f + (float)lr->decay_rate * p);
}

static float polynomial(const adadelta_learning_rate *lr, float step, int64_t raw_step)
{
    (void)raw_step;
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

/* Keras casts each boundary to the step's integer type (truncation: -0.5
 * acts as 0; a boundary beyond int64 saturates here) and sums indicators
 * times values in float32 (so unsorted boundaries give what Keras gives,
 * and a selected -0.0 comes out as +0.0). */
static int64_t boundary(double b)
{
    if (b >= 9223372036854775807.0)
        return INT64_MAX;
    if (b <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)b;
}

static float piecewise(const adadelta_learning_rate *lr, float step_f32, int64_t step)
{
    (void)step_f32;
    int n = lr->n_boundaries;
    float result = 0.0f;
    result += (float)(step <= boundary(lr->boundaries[0])) * (float)lr->values[0];
    result += (float)(step > boundary(lr->boundaries[n - 1])) * (float)lr->values[n];
    for (int i = 0; i + 1 < n; i++) {
        int in = step > boundary(lr->boundaries[i]) && step <= boundary(lr->boundaries[i + 1]);
        result += (float)in * (float)lr->values[i + 1];
    }
    return result;
}

/* CosineDecay's _decay_function. */
static float cosine_part(const adadelta_learning_rate *lr, float step, float decay_steps,
                         float from)
{
    float fraction = step / decay_steps;
    float cosine = 0.5f * (1.0f + cosf((float)M_PI * fraction));
    float decayed = (float)(1.0 - lr->alpha) * cosine + (float)lr->alpha;
    return from * decayed;
}

static float cosine(const adadelta_learning_rate *lr, float step, int64_t raw_step)
{
    (void)raw_step;
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

static float cosine_restarts(const adadelta_learning_rate *lr, float step, int64_t raw_step)
{
    (void)raw_step;
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

/* ------------------------------------------------------------ the table */

/* A config key: its JSON form and its check. */
typedef enum { REAL, STEPS, BOOL, OPTIONAL_REAL, NAME, PIECES } key_type;
typedef enum { ANY, FINITE, POSITIVE, NONNEGATIVE, OPTIONAL_FINITE } key_check;

typedef struct schedule_key {
    const char *key;
    size_t offset; /* of its double (or int for BOOL) in adadelta_learning_rate */
    key_type type;
    key_check check;
    int required; /* in a JSON config */
} schedule_key;

#define MAX_KEYS 8

typedef struct schedule_class {
    adadelta_lr_kind kind;
    const char *class_name;   /* get_config's class_name */
    const char *default_name; /* the class's default `name` */
    schedule_key keys[MAX_KEYS]; /* in Keras's get_config order; ends at NULL */
    /* float32 step and the raw integer step */
    float (*evaluate)(const adadelta_learning_rate *lr, float step, int64_t raw_step);
} schedule_class;

#define F(field) offsetof(adadelta_learning_rate, field)
#define INITIAL {"initial_learning_rate", F(initial_learning_rate), REAL, FINITE, 1}

static const schedule_class classes[] = {
    {ADADELTA_LR_EXPONENTIAL_DECAY, "ExponentialDecay", "ExponentialDecay",
     {INITIAL,
      {"decay_steps", F(decay_steps), STEPS, POSITIVE, 1},
      {"decay_rate", F(decay_rate), REAL, FINITE, 1},
      {"staircase", F(staircase), BOOL, ANY, 0},
      {"name", 0, NAME, ANY, 0}},
     exponential},
    {ADADELTA_LR_INVERSE_TIME_DECAY, "InverseTimeDecay", "InverseTimeDecay",
     {INITIAL,
      {"decay_steps", F(decay_steps), STEPS, POSITIVE, 1},
      {"decay_rate", F(decay_rate), REAL, FINITE, 1},
      {"staircase", F(staircase), BOOL, ANY, 0},
      {"name", 0, NAME, ANY, 0}},
     inverse_time},
    {ADADELTA_LR_POLYNOMIAL_DECAY, "PolynomialDecay", "PolynomialDecay",
     {INITIAL,
      {"decay_steps", F(decay_steps), STEPS, POSITIVE, 1},
      {"end_learning_rate", F(end_learning_rate), REAL, FINITE, 0},
      {"power", F(power), REAL, FINITE, 0},
      {"cycle", F(cycle), BOOL, ANY, 0},
      {"name", 0, NAME, ANY, 0}},
     polynomial},
    {ADADELTA_LR_PIECEWISE_CONSTANT_DECAY, "PiecewiseConstantDecay", "PiecewiseConstant",
     {{"boundaries", 0, PIECES, ANY, 1}, {"name", 0, NAME, ANY, 0}},
     piecewise},
    {ADADELTA_LR_COSINE_DECAY, "CosineDecay", "CosineDecay",
     {INITIAL,
      {"decay_steps", F(decay_steps), STEPS, POSITIVE, 1},
      {"alpha", F(alpha), REAL, FINITE, 0},
      {"name", 0, NAME, ANY, 0},
      {"warmup_target", F(warmup_target), OPTIONAL_REAL, OPTIONAL_FINITE, 0},
      {"warmup_steps", F(warmup_steps), STEPS, NONNEGATIVE, 0}},
     cosine},
    {ADADELTA_LR_COSINE_DECAY_RESTARTS, "CosineDecayRestarts", "SGDRDecay",
     {INITIAL,
      {"first_decay_steps", F(decay_steps), STEPS, POSITIVE, 1},
      {"t_mul", F(t_mul), REAL, POSITIVE, 0},
      {"m_mul", F(m_mul), REAL, FINITE, 0},
      {"alpha", F(alpha), REAL, FINITE, 0},
      {"name", 0, NAME, ANY, 0}},
     cosine_restarts},
};
#define N_CLASSES ((int)(sizeof classes / sizeof classes[0]))

static const schedule_class *class_of(adadelta_lr_kind kind)
{
    for (int i = 0; i < N_CLASSES; i++)
        if (classes[i].kind == kind)
            return &classes[i];
    return NULL;
}

static double *real_at(adadelta_learning_rate *lr, const schedule_key *k)
{
    return (double *)((char *)lr + k->offset);
}
static double real_of(const adadelta_learning_rate *lr, const schedule_key *k)
{
    return *(const double *)((const char *)lr + k->offset);
}
static int *int_at(adadelta_learning_rate *lr, const schedule_key *k)
{
    return (int *)((char *)lr + k->offset);
}

/* ------------------------------------------------------------ defaults */

void adadelta__lr_start(adadelta_learning_rate *lr, adadelta_lr_kind kind)
{
    memset(lr, 0, sizeof *lr);
    lr->end_learning_rate = 0.0001;
    lr->power = 1.0;
    lr->warmup_target = ADADELTA_UNSET;
    lr->t_mul = 2.0;
    lr->m_mul = 1.0;
    lr->kind = kind;
    const schedule_class *c = class_of(kind);
    snprintf(lr->name, sizeof lr->name, "%s", c ? c->default_name : "");
}

/* ------------------------------------------------------------ evaluation */

float adadelta_lr_evaluate(const adadelta_learning_rate *lr, int64_t step)
{
    if (!lr || (lr->kind == ADADELTA_LR_PIECEWISE_CONSTANT_DECAY &&
                (lr->n_boundaries < 1 || lr->n_boundaries > ADADELTA_MAX_PIECES)))
        return NAN;
    if (lr->kind == ADADELTA_LR_CONSTANT)
        return (float)lr->value;
    if (lr->kind == ADADELTA_LR_CALLBACK)
        return lr->callback ? lr->callback(lr->user_data) : NAN;
    const schedule_class *c = class_of(lr->kind);
    return c ? c->evaluate(lr, (float)step, step) : NAN;
}

/* ------------------------------------------------------------ validation */

static int check_key(const char *key, key_check check, double x)
{
    char what[96];
    snprintf(what, sizeof what, "learning_rate.%s", key);
    switch (check) {
    case ANY:
        return ADADELTA_OK;
    case OPTIONAL_FINITE:
        return adadelta__optional_finite(what, x);
    case FINITE:
        return adadelta__need_finite(what, x);
    case POSITIVE:
        return adadelta__need_positive(what, x);
    case NONNEGATIVE:
        return adadelta__need_range(what, x, 0, INFINITY);
    }
    return ADADELTA_OK;
}

static int validate_pieces(const adadelta_learning_rate *lr)
{
    int rc;
    /* Keras reads boundaries[0]: an empty list fails at the first step. */
    if (lr->n_boundaries < 1 || lr->n_boundaries > ADADELTA_MAX_PIECES)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: learning_rate.boundaries has %d "
                              "entries, outside [1, %d]",
                              lr->n_boundaries, ADADELTA_MAX_PIECES);
    for (int i = 0; i < lr->n_boundaries; i++)
        if ((rc = adadelta__need_finite("learning_rate.boundaries[]", lr->boundaries[i])))
            return rc;
    for (int i = 0; i <= lr->n_boundaries; i++)
        if ((rc = adadelta__need_finite("learning_rate.values[]", lr->values[i])))
            return rc;
    return ADADELTA_OK;
}

int adadelta__validate_lr(const adadelta_learning_rate *lr)
{
    int rc;
    if (!memchr(lr->name, '\0', sizeof lr->name))
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: learning_rate.name is not terminated within its %zu bytes",
                              sizeof lr->name);
    if (lr->kind == ADADELTA_LR_CONSTANT) {
        /* stored in a float32 variable, as Keras does: it must fit */
        if ((rc = adadelta__need_finite("learning_rate", lr->value)))
            return rc;
        return adadelta__need_finite("learning_rate (as float32)", (float)lr->value);
    }
    if (lr->kind == ADADELTA_LR_CALLBACK)
        return lr->callback ? ADADELTA_OK
                            : adadelta__fail(ADADELTA_EINVAL,
                                             "config: learning_rate callback is NULL");
    const schedule_class *c = class_of(lr->kind);
    if (!c)
        return adadelta__fail(ADADELTA_EINVAL, "config: learning_rate kind %d is unknown",
                              (int)lr->kind);
    for (const schedule_key *k = c->keys; k->key; k++) {
        if (k->type == PIECES)
            rc = validate_pieces(lr);
        else if (k->type == NAME || k->type == BOOL)
            rc = ADADELTA_OK;
        else
            rc = check_key(k->key, k->check, real_of(lr, k));
        if (rc)
            return rc;
    }
    return ADADELTA_OK;
}

/* ------------------------------------------------------------ JSON */

static json_t *pieces_json(const double *x, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(x[i]));
    return a;
}

json_t *adadelta__schedule_to_json(const adadelta_learning_rate *lr)
{
    if (lr->kind == ADADELTA_LR_CONSTANT)
        return json_real((double)(float)lr->value);
    const schedule_class *c = class_of(lr->kind);
    if (!c) /* a callback: get_config writes null */
        return json_null();
    json_t *o = json_object();
    for (const schedule_key *k = c->keys; k->key; k++) {
        json_t *v = NULL;
        switch (k->type) {
        case REAL:
            v = json_real(real_of(lr, k));
            break;
        case STEPS:
            v = adadelta__json_steps(real_of(lr, k));
            break;
        case OPTIONAL_REAL:
            v = adadelta_is_set(real_of(lr, k)) ? json_real(real_of(lr, k)) : json_null();
            break;
        case BOOL:
            v = json_boolean(*int_at((adadelta_learning_rate *)lr, k));
            break;
        case NAME:
            v = json_string(lr->name);
            break;
        case PIECES:
            json_object_set_new(o, "boundaries", pieces_json(lr->boundaries, lr->n_boundaries));
            v = pieces_json(lr->values, lr->n_boundaries + 1);
            json_object_set_new(o, "values", v);
            continue;
        }
        json_object_set_new(o, k->key, v);
    }
    return json_pack("{s:s, s:s, s:o, s:n}", "module", "keras.optimizers.schedules",
                     "class_name", c->class_name, "config", o, "registered_name");
}

static int pieces_from_json(json_t *c, adadelta_learning_rate *lr)
{
    json_t *b = json_object_get(c, "boundaries"), *vals = json_object_get(c, "values");
    if (!json_is_array(b) || !json_is_array(vals))
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: learning_rate.config.boundaries and values must "
                              "be arrays");
    size_t nb = json_array_size(b), nv = json_array_size(vals);
    if (nv != nb + 1)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: learning_rate.config.values has %zu entries, "
                              "boundaries has %zu: values needs one more",
                              nv, nb);
    if (nb > ADADELTA_MAX_PIECES)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: learning_rate.config.boundaries has %zu "
                              "entries, at most %d",
                              nb, ADADELTA_MAX_PIECES);
    lr->n_boundaries = (int)nb;
    for (size_t i = 0; i < nv; i++) {
        json_t *x = json_array_get(vals, i), *y = i < nb ? json_array_get(b, i) : NULL;
        if (!json_is_number(x) || (i < nb && !json_is_number(y)))
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: learning_rate.config.boundaries/values "
                                  "must hold numbers");
        lr->values[i] = json_number_value(x);
        if (i < nb)
            lr->boundaries[i] = json_number_value(y);
    }
    return ADADELTA_OK;
}

/* The keys of a class's config: its own, "values" with "boundaries". */
static int only_class_keys(json_t *o, const schedule_class *c)
{
    const char *allowed[MAX_KEYS + 2];
    int n = 0;
    for (const schedule_key *k = c->keys; k->key; k++) {
        allowed[n++] = k->key;
        if (k->type == PIECES)
            allowed[n++] = "values";
    }
    allowed[n] = NULL;
    return adadelta__json_only_keys(o, "learning_rate.config.", allowed);
}

/* Fills lr from a class's config object: the required keys first, then
 * each key as its type reads; the schedule's own name last (absent or
 * null keeps the class default). */
static int class_from_json(json_t *o, const schedule_class *c, adadelta_learning_rate *lr)
{
    const char *P = "learning_rate.config.";
    if (only_class_keys(o, c))
        return ADADELTA_EINVAL;
    for (const schedule_key *k = c->keys; k->key; k++)
        if (k->required && k->type != PIECES && adadelta__json_need_key(o, P, k->key))
            return ADADELTA_EINVAL;
    for (const schedule_key *k = c->keys; k->key; k++) {
        int rc = 0;
        if (k->type == PIECES)
            rc = pieces_from_json(o, lr);
        else if (k->type == BOOL)
            rc = adadelta__json_bool(o, P, k->key, int_at(lr, k));
        else if (k->type != NAME)
            rc = adadelta__json_number(o, P, k->key, real_at(lr, k), k->type == OPTIONAL_REAL);
        if (rc)
            return ADADELTA_EINVAL;
    }
    return adadelta__json_string(o, P, "name", lr->name, sizeof lr->name) ? ADADELTA_EINVAL
                                                                        : ADADELTA_OK;
}

int adadelta__schedule_from_json(json_t *v, adadelta_learning_rate *lr)
{
    static const char *const outer[] = {"module", "class_name", "config", "registered_name",
                                        NULL};
    if (adadelta__json_only_keys(v, "learning_rate.", outer))
        return ADADELTA_EINVAL;
    json_t *cls = json_object_get(v, "class_name"), *o = json_object_get(v, "config");
    if (!json_is_string(cls))
        return adadelta__fail(ADADELTA_EINVAL, "config: learning_rate.class_name must be a string");
    if (!json_is_object(o))
        return adadelta__fail(ADADELTA_EINVAL, "config: learning_rate.config must be an object");
    const char *name = json_string_value(cls);
    for (int i = 0; i < N_CLASSES; i++)
        if (!strcmp(name, classes[i].class_name)) {
            adadelta__lr_start(lr, classes[i].kind);
            return class_from_json(o, &classes[i], lr);
        }
    return adadelta__fail(ADADELTA_EINVAL,
                          "config: learning_rate.class_name '%s' is not a Keras schedule", name);
}
