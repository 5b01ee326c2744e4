/* test_config.c - Keras's defaults, refusals with their messages, JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adadelta.h"
#include "harness.h"

static void defaults_are_keras_defaults(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    assert_int_equal(c.learning_rate.kind, ADADELTA_LR_CONSTANT);
    assert_true(c.learning_rate.value == 0.001);
    assert_true(c.rho == 0.95);
    assert_true(c.epsilon == 1e-7);
    assert_true(c.ema_momentum == 0.99);
    assert_string_equal(c.name, "adadelta");
    assert_false(adadelta_is_set(c.weight_decay));
    assert_false(adadelta_is_set(c.clipnorm));
    assert_false(adadelta_is_set(c.clipvalue));
    assert_false(adadelta_is_set(c.global_clipnorm));
    assert_false(adadelta_is_set(c.loss_scale_factor));
    assert_int_equal(c.use_ema, 0);
    assert_int_equal(c.gradient_accumulation_steps, 0);
    assert_int_equal(c.ema_overwrite_frequency, 0);
    assert_int_equal(adadelta_config_validate(&c), ADADELTA_OK);
}

/* Creating with cfg must fail with EINVAL, leave *out NULL, and name `what`. */
static void refused(const adadelta_config *cfg, const char *what)
{
    adadelta *opt = (adadelta *)0x1;
    assert_int_equal(adadelta_create(cfg, &opt), ADADELTA_EINVAL);
    assert_null(opt);
    if (!strstr(adadelta_last_error(), what)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", adadelta_last_error(), what);
        fail();
    }
}

static void invalid_values_are_refused_with_their_name_and_value(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c), c.rho = 2;
    refused(&c, "rho = 2 is outside [0, 1]");
    adadelta_config_default(&c), c.rho = -0.5;
    refused(&c, "rho = -0.5");
    adadelta_config_default(&c), c.rho = NAN;
    refused(&c, "rho");
    adadelta_config_default(&c), c.epsilon = -1;
    refused(&c, "epsilon = -1");
    adadelta_config_default(&c), c.epsilon = INFINITY;
    refused(&c, "epsilon = inf");
    adadelta_config_default(&c), adadelta_lr_constant(&c.learning_rate, NAN);
    refused(&c, "learning_rate");
    adadelta_config_default(&c), c.use_ema = 1, c.ema_momentum = 1.5;
    refused(&c, "ema_momentum = 1.5");
    adadelta_config_default(&c), c.use_ema = 1, c.ema_overwrite_frequency = -3;
    refused(&c, "ema_overwrite_frequency = -3");
    adadelta_config_default(&c), c.gradient_accumulation_steps = 1;
    refused(&c, "gradient_accumulation_steps = 1");
    adadelta_config_default(&c), c.clipnorm = 1, c.global_clipnorm = 1;
    refused(&c, "only one of clipnorm, clipvalue and global_clipnorm");
    adadelta_config_default(&c), c.clipvalue = 0, c.clipnorm = 0;
    refused(&c, "only one of");
    adadelta_config_default(&c), c.weight_decay = INFINITY;
    refused(&c, "weight_decay");
    adadelta_config_default(&c), c.dynamic_loss_scale = 1, c.dynamic_growth_steps = 0;
    refused(&c, "dynamic_growth_steps = 0");
    adadelta_config_default(&c);
    adadelta_lr_exponential_decay(&c.learning_rate, 1.0, 0, 0.5, 0);
    refused(&c, "learning_rate.decay_steps = 0");
    adadelta_config_default(&c);
    adadelta_lr_cosine_decay_restarts(&c.learning_rate, 1.0, -2, 2, 1, 0);
    refused(&c, "first_decay_steps = -2");
}

static void keras_edge_values_are_accepted(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c), c.rho = 0, c.epsilon = 0;
    assert_int_equal(adadelta_config_validate(&c), 0);
    adadelta_config_default(&c), c.rho = 1;
    assert_int_equal(adadelta_config_validate(&c), 0);
    /* Keras checks ema_momentum only with use_ema. */
    adadelta_config_default(&c), c.ema_momentum = 3;
    assert_int_equal(adadelta_config_validate(&c), 0);
    adadelta_config_default(&c), c.clipnorm = 0; /* set, but no clipping */
    assert_int_equal(adadelta_config_validate(&c), 0);
}

static void json_refusals_name_the_key(void **state)
{
    (void)state;
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"rho\": 2}", "rho = 2"},
        {"{\"rhoo\": 0.9}", "unknown key rhoo"},
        {"{\"rho\": \"0.9\"}", "rho must be a number"},
        {"{\"use_ema\": 1}", "use_ema must be true or false"},
        {"{\"gradient_accumulation_steps\": 1.5}", "gradient_accumulation_steps"},
        {"{\"rho\": NaN}", "not valid JSON"},
        {"{\"clipnorm\": 1, \"clipvalue\": 1}", "only one of"},
        {"{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": "
         "{\"initial_learning_rate\": 1, \"decay_steps\": 0, \"decay_rate\": 0.5}}}",
         "learning_rate.decay_steps = 0"},
        {"{\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", \"config\": "
         "{\"boundaries\": [1, 2], \"values\": [1, 2]}}}",
         "values has 2 entries, boundaries has 2"},
        {"{\"learning_rate\": {\"class_name\": \"Nope\", \"config\": {}}}", "Nope"},
        {"{\"learning_rate\": {\"class_name\": \"CosineDecay\", \"config\": "
         "{\"initial_learning_rate\": 1}}}",
         "learning_rate.config.decay_steps is missing"},
        {"[1, 2]", "JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        adadelta_config c;
        adadelta_config_default(&c);
        c.rho = 0.5; /* must survive a refused parse */
        assert_int_equal(adadelta_config_from_json(&c, cases[i].json), ADADELTA_EINVAL);
        assert_true(c.rho == 0.5);
        if (!strstr(adadelta_last_error(), cases[i].needle)) {
            fprintf(stderr, "'%s': message '%s' lacks '%s'\n", cases[i].json,
                    adadelta_last_error(), cases[i].needle);
            fail();
        }
    }
}

static void json_missing_keys_take_defaults_and_null_means_unset(void **state)
{
    (void)state;
    adadelta_config c;
    assert_int_equal(adadelta_config_from_json(&c, "{\"clipnorm\": null, \"learning_rate\": 1}"),
                     0);
    assert_true(c.learning_rate.value == 1.0);
    assert_true(c.rho == 0.95);
    assert_false(adadelta_is_set(c.clipnorm));
    /* "decay" is accepted and ignored, as Keras does. */
    assert_int_equal(adadelta_config_from_json(&c, "{\"decay\": 0.1}"), 0);
    /* Keras tests these for truth: 0 and 0.0 act as None. */
    assert_int_equal(adadelta_config_from_json(&c, "{\"gradient_accumulation_steps\": 0.0, "
                                                   "\"use_ema\": true, "
                                                   "\"ema_overwrite_frequency\": 0}"),
                     0);
    assert_int_equal(c.gradient_accumulation_steps, 0);
    assert_int_equal(c.ema_overwrite_frequency, 0);
}

static void get_config_round_trips(void **state)
{
    (void)state;
    adadelta_config a, b;
    adadelta_config_default(&a);
    adadelta_lr_polynomial_decay(&a.learning_rate, 0.5, 7, 0.01, 2.0, 1);
    a.weight_decay = 0.004;
    a.global_clipnorm = 1.5;
    a.use_ema = 1;
    a.ema_momentum = 0.9;
    a.ema_overwrite_frequency = 3;
    a.gradient_accumulation_steps = 4;
    a.rho = 0.9;
    a.epsilon = 1e-6;
    strcpy(a.name, "my_opt");
    char *json = adadelta_config_to_json(&a);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"global_clipnorm\": 1.5"));
    assert_non_null(strstr(json, "\"clipnorm\": null"));
    assert_non_null(strstr(json, "\"PolynomialDecay\""));
    /* floats as Python writes them: shortest text, 1.0 not 1 */
    assert_non_null(strstr(json, "\"rho\": 0.9,"));
    assert_non_null(strstr(json, "\"epsilon\": 1e-06"));
    assert_non_null(strstr(json, "\"power\": 2.0,"));
    assert_non_null(strstr(json, "\"weight_decay\": 0.004,"));
    assert_int_equal(adadelta_config_from_json(&b, json), 0);
    free(json);
    assert_memory_equal(&a.learning_rate, &b.learning_rate, offsetof(adadelta_learning_rate, callback));
    assert_true(b.weight_decay == a.weight_decay && b.global_clipnorm == a.global_clipnorm);
    assert_true(b.rho == a.rho && b.epsilon == a.epsilon && b.ema_momentum == a.ema_momentum);
    assert_int_equal(b.use_ema, 1);
    assert_int_equal(b.ema_overwrite_frequency, 3);
    assert_int_equal(b.gradient_accumulation_steps, 4);
    assert_string_equal(b.name, "my_opt");
}

static void loss_scale_optimizer_config_round_trips(void **state)
{
    (void)state;
    const char *keras = "{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": "
                        "{\"module\": \"keras.optimizers\", \"class_name\": \"Adadelta\", "
                        "\"config\": {\"learning_rate\": 1.0, \"rho\": 0.9}, "
                        "\"registered_name\": null}, \"initial_scale\": 1024.0, "
                        "\"dynamic_growth_steps\": 3}";
    adadelta_config a, b;
    assert_int_equal(adadelta_config_from_json(&a, keras), 0);
    assert_int_equal(a.dynamic_loss_scale, 1);
    assert_true(a.initial_scale == 1024.0);
    assert_int_equal(a.dynamic_growth_steps, 3);
    assert_true(a.rho == 0.9);
    char *json = adadelta_config_to_json(&a);
    assert_non_null(strstr(json, "\"inner_optimizer\""));
    assert_int_equal(adadelta_config_from_json(&b, json), 0);
    free(json);
    assert_int_equal(b.dynamic_loss_scale, 1);
    assert_true(b.initial_scale == 1024.0 && b.rho == 0.9);
    assert_int_equal(b.dynamic_growth_steps, 3);
    /* Keras's LossScaleOptimizer refuses its own base arguments unless they
     * are the defaults, and accepts dynamic=True only. */
    const char *outer_clip = "{\"inner_optimizer\": {\"class_name\": \"Adadelta\", "
                             "\"config\": {}}, \"clipnorm\": 1.0}";
    assert_int_equal(adadelta_config_from_json(&b, outer_clip), ADADELTA_EINVAL);
    assert_non_null(strstr(adadelta_last_error(), "does not support clipnorm"));
    const char *defaults = "{\"inner_optimizer\": {\"class_name\": \"Adadelta\", "
                           "\"config\": {}}, \"clipnorm\": null, \"use_ema\": false, "
                           "\"ema_momentum\": 0.99, \"dynamic\": true}";
    assert_int_equal(adadelta_config_from_json(&b, defaults), 0);
    const char *not_dynamic = "{\"inner_optimizer\": {\"class_name\": \"Adadelta\", "
                              "\"config\": {}}, \"dynamic\": false}";
    assert_int_equal(adadelta_config_from_json(&b, not_dynamic), ADADELTA_EINVAL);
}

static void schedules_keep_keras_names(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    double b[1] = {3}, v[2] = {1, 0.5};
    adadelta_lr_piecewise_constant_decay(&c.learning_rate, 1, b, v);
    assert_string_equal(c.learning_rate.name, "PiecewiseConstant");
    char *json = adadelta_config_to_json(&c);
    assert_non_null(strstr(json, "\"name\": \"PiecewiseConstant\""));
    free(json);
    adadelta_lr_cosine_decay_restarts(&c.learning_rate, 1, 10, 2, 1, 0);
    json = adadelta_config_to_json(&c);
    assert_non_null(strstr(json, "\"name\": \"SGDRDecay\""));
    free(json);
    /* a custom name survives the round trip */
    const char *named = "{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", "
                        "\"config\": {\"initial_learning_rate\": 1, \"decay_steps\": 2, "
                        "\"decay_rate\": 0.5, \"name\": \"warm\"}}}";
    assert_int_equal(adadelta_config_from_json(&c, named), 0);
    assert_string_equal(c.learning_rate.name, "warm");
    json = adadelta_config_to_json(&c);
    assert_non_null(strstr(json, "\"name\": \"warm\""));
    free(json);
}

static void status_names_and_messages_exist(void **state)
{
    (void)state;
    assert_string_equal(adadelta_status_name(ADADELTA_EINVAL), "ADADELTA_EINVAL");
    assert_string_equal(adadelta_status_name(ADADELTA_ENOGRAD), "ADADELTA_ENOGRAD");
    assert_string_equal(adadelta_strerror(ADADELTA_OK), "success");
    assert_string_equal(adadelta_status_name(12345), "ADADELTA_UNKNOWN");
    assert_int_equal(adadelta_version(), ADADELTA_VERSION_HEX);
    assert_string_equal(adadelta_version_string(), "0.1.0");
}

/* Keras's optimizer.learning_rate = x during training: a float or a
 * schedule from the next apply on; a refused value changes nothing. */
static void learning_rate_can_change_during_training(void **state)
{
    (void)state;
    adadelta *opt;
    assert_int_equal(adadelta_create_from_json("{\"learning_rate\": 1.0, \"rho\": 0.9}", &opt), 0);
    assert_true(adadelta_get_config(opt)->rho == 0.9);
    float w[2] = {1, 2}, g[2] = {0.5f, -0.5f};
    int64_t shape[1] = {2};
    assert_int_equal(adadelta_add_variable(opt, "w", ADADELTA_F32, w, 1, shape), 0);
    const float *grads[1] = {g};
    assert_int_equal(adadelta_apply(opt, grads), 0);
    assert_int_equal(adadelta_set_learning_rate_json(opt, "0.25"), 0);
    assert_true(adadelta_current_learning_rate(opt) == 0.25f);
    /* ExponentialDecay at iteration 1: 2 * 0.5^(1/4) in float32 */
    assert_int_equal(adadelta_set_learning_rate_json(
                         opt, "{\"class_name\": \"ExponentialDecay\", \"config\": "
                              "{\"initial_learning_rate\": 2.0, \"decay_steps\": 4, "
                              "\"decay_rate\": 0.5}}"),
                     0);
    assert_true(adadelta_current_learning_rate(opt) == 2.0f * powf(0.5f, 0.25f));
    adadelta_learning_rate bad;
    adadelta_lr_constant(&bad, INFINITY);
    th_assert_refused(adadelta_set_learning_rate(opt, &bad), ADADELTA_EINVAL, "learning_rate");
    th_assert_refused(adadelta_set_learning_rate_json(opt, "\"fast\""), ADADELTA_EINVAL,
                      "learning_rate");
    th_assert_refused(adadelta_set_learning_rate_json(opt, "{\"class_name\": \"Nope\", "
                                                           "\"config\": {}}"),
                      ADADELTA_EINVAL, "Nope");
    assert_true(adadelta_current_learning_rate(opt) == 2.0f * powf(0.5f, 0.25f));
    adadelta_destroy(opt);
    adadelta *refused;
    th_assert_refused(adadelta_create_from_json("{\"rho\": 2}", &refused), ADADELTA_EINVAL, "rho");
    assert_null(refused);
}

/* Messages that help: a near miss of a key is named; Keras's full
 * serialize() form is read; decay is accepted with Keras's warning. */
static void config_messages_help(void **state)
{
    (void)state;
    adadelta_config c;
    th_assert_refused(adadelta_config_from_json(&c, "{\"rhoo\": 0.9}"), ADADELTA_EINVAL,
                      "unknown key rhoo; did you mean rho?");
    th_assert_refused(adadelta_config_from_json(&c, "{\"learning_rate\": {\"class_name\": "
                                                    "\"ExponentialDecay\", \"config\": {"
                                                    "\"initial_learning_rate\": 1, "
                                                    "\"decay_step\": 2, \"decay_rate\": 0.5}}}"),
                      ADADELTA_EINVAL, "did you mean learning_rate.config.decay_steps?");
    th_assert_refused(adadelta_config_from_json(&c, "{\"speed\": 1}"), ADADELTA_EINVAL,
                      "unknown key speed");
    assert_null(strstr(adadelta_last_error(), "did you mean"));
    assert_int_equal(adadelta_config_from_json(
                         &c, "{\"module\": \"keras.optimizers\", \"class_name\": \"Adadelta\", "
                             "\"config\": {\"rho\": 0.9, \"learning_rate\": 0.5}, "
                             "\"registered_name\": null}"),
                     0);
    assert_true(c.rho == 0.9 && c.learning_rate.value == 0.5);
    assert_string_equal(adadelta_last_warning(), "");
    assert_int_equal(adadelta_config_from_json(&c, "{\"decay\": 0.01}"), 0);
    assert_non_null(strstr(adadelta_last_warning(), "decay"));
    assert_int_equal(adadelta_config_from_json(&c, "{\"decay\": null}"), 0);
    assert_string_equal(adadelta_last_warning(), "");
}

/* The step computes in float32: values that are valid as doubles but not
 * after that conversion are refused, naming the key. */
static void values_invalid_as_float32_are_refused(void **state)
{
    (void)state;
    adadelta_config c;
    adadelta_config_default(&c);
    adadelta_lr_exponential_decay(&c.learning_rate, 1.0, 1e-50, 0.9, 0);
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "decay_steps");
    adadelta_lr_exponential_decay(&c.learning_rate, 1e39, 10, 0.9, 0);
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "initial_learning_rate");
    adadelta_lr_cosine_decay_restarts(&c.learning_rate, 1.0, 10, 1e-50, 1.0, 0.0);
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "t_mul");
    adadelta_config_default(&c);
    c.dynamic_loss_scale = 1;
    c.initial_scale = 1e-50;
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "initial_scale");
    adadelta_config_default(&c);
    c.clipnorm = 1e-50;
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "clipnorm");
    adadelta_config_default(&c);
    c.weight_decay = 1e39;
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "weight_decay");
    adadelta_config_default(&c);
    c.loss_scale_factor = 1e-50;
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "loss_scale_factor");
    adadelta_config_default(&c);
    c.epsilon = 1e39;
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "epsilon");
    /* a schedule's name must be a terminated string */
    adadelta_config_default(&c);
    adadelta_lr_exponential_decay(&c.learning_rate, 1.0, 10, 0.9, 0);
    memset(c.learning_rate.name, 'x', sizeof c.learning_rate.name);
    th_assert_refused(adadelta_config_validate(&c), ADADELTA_EINVAL, "learning_rate.name");
    /* float32-representable small values stay valid */
    adadelta_config_default(&c);
    adadelta_lr_exponential_decay(&c.learning_rate, 1.0, 1e-30, 0.9, 0);
    assert_int_equal(adadelta_config_validate(&c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_keras_defaults),
        cmocka_unit_test(invalid_values_are_refused_with_their_name_and_value),
        cmocka_unit_test(keras_edge_values_are_accepted),
        cmocka_unit_test(json_refusals_name_the_key),
        cmocka_unit_test(json_missing_keys_take_defaults_and_null_means_unset),
        cmocka_unit_test(get_config_round_trips),
        cmocka_unit_test(loss_scale_optimizer_config_round_trips),
        cmocka_unit_test(schedules_keep_keras_names),
        cmocka_unit_test(status_names_and_messages_exist),
        cmocka_unit_test(learning_rate_can_change_during_training),
        cmocka_unit_test(values_invalid_as_float32_are_refused),
        cmocka_unit_test(config_messages_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
