/* state.c - save and load the whole training state (state-format.md). */
#include "internal.h"
#include "safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const slot_dirs[ADADELTA_N_SLOTS] = {
    "accumulated_grad", "accumulated_delta_var", "ema", "gradient_accumulator"};
/* Order of the optimizer's tensors in the file: Keras's slot order. */
static const int slot_order[ADADELTA_N_SLOTS] = {
    ADADELTA_SLOT_ACCUMULATED_GRAD, ADADELTA_SLOT_ACCUMULATED_DELTA_VAR, ADADELTA_SLOT_EMA,
    ADADELTA_SLOT_GRADIENT_ACCUMULATOR};

static char *slot_tensor_name(int k, const char *var)
{
    size_t n = strlen("optimizer/") + strlen(slot_dirs[k]) + strlen(var) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "optimizer/%s/%s", slot_dirs[k], var);
    return s;
}

static char *variables_json(const adadelta *opt)
{
    json_t *a = json_array();
    for (int v = 0; v < opt->n_vars; v++)
        json_array_append_new(a, json_string(opt->vars[v].name));
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

int adadelta_save(const adadelta *opt, const char *path)
{
    if (!opt || !path)
        return adadelta__fail(ADADELTA_EINVAL, "save: NULL argument");
    if (adadelta__sharded(opt))
        return adadelta__fail(ADADELTA_ESTATE, "save: sharded optimizer; use adadelta_mpi_save");
    int built = adadelta__build(opt);
    if (built)
        return built;
    int max = opt->n_vars * (1 + ADADELTA_N_SLOTS) + 3;
    adadelta_st_out *t = calloc((size_t)max, sizeof *t);
    char **names = calloc((size_t)max, sizeof *names);
    char *config = adadelta_config_to_json(&opt->cfg);
    char *vars = variables_json(opt);
    int n = 0, rc = ADADELTA_OK;
    if (!t || !names || !config || !vars) {
        rc = adadelta__fail(ADADELTA_ENOMEM, "save %s: out of memory", path);
        goto done;
    }
    for (int v = 0; v < opt->n_vars; v++) {
        const adadelta_var *var = &opt->vars[v];
        t[n++] = (adadelta_st_out){var->name, ADADELTA_ST_F32, var->ndim, var->shape, var->data};
    }
    int64_t iterations = opt->iterations, step_counter = opt->step_counter;
    float scale = opt->dynamic_scale;
    t[n++] = (adadelta_st_out){"optimizer/iterations", ADADELTA_ST_I64, 0, NULL, &iterations};
    for (int i = 0; i < ADADELTA_N_SLOTS; i++) {
        int k = slot_order[i];
        if (!adadelta__slot_present(opt, k))
            continue;
        for (int v = 0; v < opt->n_vars; v++) {
            const adadelta_var *var = &opt->vars[v];
            if (!(names[n] = slot_tensor_name(k, var->name))) {
                rc = adadelta__fail(ADADELTA_ENOMEM, "save %s: out of memory", path);
                goto done;
            }
            t[n] = (adadelta_st_out){names[n], ADADELTA_ST_F32, var->ndim, var->shape,
                                     var->slot[k]};
            n++;
        }
    }
    if (opt->cfg.dynamic_loss_scale) {
        t[n++] = (adadelta_st_out){"optimizer/dynamic_scale", ADADELTA_ST_F32, 0, NULL, &scale};
        t[n++] = (adadelta_st_out){"optimizer/step_counter", ADADELTA_ST_I64, 0, NULL,
                                   &step_counter};
    }
    const char *meta[] = {"format", "adadelta-state", "version", "1",
                          "config", config,           "variables", vars};
    rc = adadelta_st_write(path, t, n, meta, 4, 1);
done:
    if (names)
        for (int i = 0; i < max; i++)
            free(names[i]);
    free(names);
    free(t);
    free(config);
    free(vars);
    return rc;
}

/* ---------------------------------------------------------------- load */

/* Fails with "<path>: [<what>: ]<the last error>" (copied first: the last
 * error is the buffer being written). */
static int refail(int status, const char *path, const char *what)
{
    char why[512];
    snprintf(why, sizeof why, "%s", adadelta_last_error());
    if (what)
        return adadelta__fail(status, "%s: %s: %s", path, what, why);
    return adadelta__fail(status, "%s: %s", path, why);
}

/* Header-level checks: format, version, checksum. */
static int check_file(const adadelta_st_file *f, const char *path)
{
    const char *format = adadelta_st_meta(f, "format");
    const char *version = adadelta_st_meta(f, "version");
    const char *checksum = adadelta_st_meta(f, "checksum");
    if (!format || strcmp(format, "adadelta-state") != 0)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata format is not adadelta-state",
                              path);
    if (!version || strcmp(version, "1") != 0)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: state version '%s' is not supported (1)",
                              path, version ? version : "(none)");
    if (!checksum)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata has no checksum", path);
    char got[9];
    snprintf(got, sizeof got, "%08x",
             adadelta__crc32c(0, f->buf + f->data_start, f->size - f->data_start));
    if (strcmp(got, checksum) != 0)
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: checksum mismatch (file says %s, data gives %s): the "
                              "file is corrupted",
                              path, checksum, got);
    if (!adadelta_st_meta(f, "config") || !adadelta_st_meta(f, "variables"))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata lacks config or variables", path);
    return ADADELTA_OK;
}

static int same_shape(const adadelta_st_tensor *t, const adadelta_var *var)
{
    if (t->ndim != var->ndim)
        return 0;
    for (int d = 0; d < var->ndim; d++)
        if (t->shape[d] != var->shape[d])
            return 0;
    return 1;
}

/* Finds tensor `name` with the variable's shape and F32, or fails. */
static int need_tensor(const adadelta_st_file *f, const char *path, const char *name,
                       const adadelta_var *var, const adadelta_st_tensor **out)
{
    const adadelta_st_tensor *t = adadelta_st_find(f, name);
    if (!t)
        return adadelta__fail(ADADELTA_EMISMATCH, "%s: tensor '%s' is missing", path, name);
    if (t->dtype != ADADELTA_ST_F32 || !same_shape(t, var))
        return adadelta__fail(ADADELTA_EMISMATCH,
                              "%s: tensor '%s' has another shape or dtype than variable '%s'",
                              path, name, var->name);
    *out = t;
    return ADADELTA_OK;
}

static int need_scalar(const adadelta_st_file *f, const char *path, const char *name,
                       adadelta_st_dtype dtype, const adadelta_st_tensor **out)
{
    const adadelta_st_tensor *t = adadelta_st_find(f, name);
    if (!t)
        return adadelta__fail(ADADELTA_EMISMATCH, "%s: tensor '%s' is missing", path, name);
    if (t->dtype != dtype || t->numel != 1)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: tensor '%s' must be one %s", path, name,
                              dtype == ADADELTA_ST_I64 ? "I64" : "F32");
    *out = t;
    return ADADELTA_OK;
}

static int check_variables(const adadelta_st_file *f, const char *path, const adadelta *opt)
{
    json_error_t err;
    json_t *list = json_loads(adadelta_st_meta(f, "variables"), 0, &err);
    int rc = ADADELTA_OK;
    if (!json_is_array(list))
        rc = adadelta__fail(ADADELTA_EFORMAT, "%s: metadata variables is not a JSON list", path);
    else if ((int)json_array_size(list) != opt->n_vars)
        rc = adadelta__fail(ADADELTA_EMISMATCH, "%s: holds %zu variables, the optimizer has %d",
                            path, json_array_size(list), opt->n_vars);
    for (int v = 0; !rc && v < opt->n_vars; v++) {
        json_t *name = json_array_get(list, (size_t)v);
        if (!json_is_string(name) || strcmp(json_string_value(name), opt->vars[v].name) != 0)
            rc = adadelta__fail(ADADELTA_EMISMATCH,
                                "%s: variable %d is '%s' in the file, '%s' in the optimizer",
                                path, v, json_is_string(name) ? json_string_value(name) : "?",
                                opt->vars[v].name);
    }
    json_decref(list);
    return rc;
}

/* The saved config must define the same state tensors. */
static int check_config(const adadelta_st_file *f, const char *path, const adadelta *opt)
{
    adadelta_config saved;
    int rc = adadelta__config_from_saved_json(&saved, adadelta_st_meta(f, "config"));
    if (rc)
        return refail(ADADELTA_EFORMAT, path, "saved config is invalid");
    const adadelta_config *c = &opt->cfg;
    if (saved.use_ema != c->use_ema ||
        saved.gradient_accumulation_steps != c->gradient_accumulation_steps ||
        saved.dynamic_loss_scale != c->dynamic_loss_scale)
        return adadelta__fail(ADADELTA_EMISMATCH,
                              "%s: saved config (use_ema %d, gradient_accumulation_steps "
                              "%lld, loss scaling %d) does not fit the optimizer's (%d, "
                              "%lld, %d)",
                              path, saved.use_ema, (long long)saved.gradient_accumulation_steps,
                              saved.dynamic_loss_scale, c->use_ema,
                              (long long)c->gradient_accumulation_steps, c->dynamic_loss_scale);
    return ADADELTA_OK;
}

/* Everything is looked up and checked first; only then copied. */
static int load_file(adadelta *opt, const adadelta_st_file *f, const char *path)
{
    int rc;
    if ((rc = check_file(f, path)) || (rc = check_variables(f, path, opt)) ||
        (rc = check_config(f, path, opt)))
        return rc;
    if (adadelta__sharded(opt))
        return adadelta__fail(ADADELTA_ESTATE, "load: sharded optimizer; use adadelta_mpi_load");
    if ((rc = adadelta__build(opt)))
        return rc;
    const adadelta_st_tensor *iterations, *scale = NULL, *counter = NULL;
    if ((rc = need_scalar(f, path, "optimizer/iterations", ADADELTA_ST_I64, &iterations)))
        return rc;
    if (opt->cfg.dynamic_loss_scale &&
        ((rc = need_scalar(f, path, "optimizer/dynamic_scale", ADADELTA_ST_F32, &scale)) ||
         (rc = need_scalar(f, path, "optimizer/step_counter", ADADELTA_ST_I64, &counter))))
        return rc;
    /* The counters and the scale must be values a run can reach: a crafted
     * file (valid checksum) with iterations = INT64_MAX would overflow on
     * the next apply, a zero or NaN scale would poison every step. */
    int64_t it, counter_value = 0;
    float scale_value = 1;
    memcpy(&it, iterations->data, 8);
    if (scale) {
        memcpy(&scale_value, scale->data, 4);
        memcpy(&counter_value, counter->data, 8);
    }
    if (it < 0 || it > ((int64_t)1 << 62))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: optimizer/iterations = %lld is out of range",
                              path, (long long)it);
    if (counter_value < 0 || counter_value > ((int64_t)1 << 62))
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/step_counter = %lld is out of range", path,
                              (long long)counter_value);
    if (!(scale_value > 0) || !isfinite(scale_value))
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/dynamic_scale = %g is not a finite number > 0", path,
                              (double)scale_value);
    if (scale && counter_value >= opt->cfg.dynamic_growth_steps)
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/step_counter = %lld is not below "
                              "dynamic_growth_steps = %lld",
                              path, (long long)counter_value,
                              (long long)opt->cfg.dynamic_growth_steps);
    int per_var = 1 + ADADELTA_N_SLOTS;
    const adadelta_st_tensor **found = calloc((size_t)opt->n_vars * per_var + 1, sizeof *found);
    if (!found)
        return adadelta__fail(ADADELTA_ENOMEM, "%s: out of memory", path);
    for (int v = 0; !rc && v < opt->n_vars; v++) {
        const adadelta_var *var = &opt->vars[v];
        rc = need_tensor(f, path, var->name, var, &found[v * per_var]);
        for (int k = 0; !rc && k < ADADELTA_N_SLOTS; k++) {
            if (!var->slot[k])
                continue;
            char *name = slot_tensor_name(k, var->name);
            rc = name ? need_tensor(f, path, name, var, &found[v * per_var + 1 + k])
                      : adadelta__fail(ADADELTA_ENOMEM, "%s: out of memory", path);
            free(name);
        }
    }
    if (!rc) {
        for (int v = 0; v < opt->n_vars; v++) {
            adadelta_var *var = &opt->vars[v];
            adadelta_st_copy_f32(found[v * per_var], var->data);
            for (int k = 0; k < ADADELTA_N_SLOTS; k++)
                if (var->slot[k])
                    adadelta_st_copy_f32(found[v * per_var + 1 + k], var->slot[k]);
        }
        memcpy(&opt->iterations, iterations->data, 8);
        if (scale) {
            memcpy(&opt->dynamic_scale, scale->data, 4);
            memcpy(&opt->step_counter, counter->data, 8);
        }
    }
    free(found);
    return rc;
}

int adadelta_load(adadelta *opt, const char *path)
{
    if (!opt || !path)
        return adadelta__fail(ADADELTA_EINVAL, "load: NULL argument");
    adadelta_st_file *f;
    int rc = adadelta_st_read(path, &f);
    if (rc)
        return rc;
    rc = load_file(opt, f, path);
    adadelta_st_free(f);
    return rc;
}

int adadelta_create_from_state(const char *path, const adadelta_config *override,
                               adadelta **out)
{
    if (!path || !out)
        return adadelta__fail(ADADELTA_EINVAL, "create_from_state: NULL argument");
    *out = NULL;
    adadelta_st_file *f;
    int rc = adadelta_st_read(path, &f);
    if (rc)
        return rc;
    adadelta_config cfg;
    adadelta *opt = NULL;
    json_t *list = NULL;
    if ((rc = check_file(f, path)))
        goto done;
    if (override) {
        cfg = *override;
    } else if ((rc = adadelta_config_from_json(&cfg, adadelta_st_meta(f, "config")))) {
        rc = refail(ADADELTA_EFORMAT, path, "saved config is invalid");
        goto done;
    }
    if ((rc = adadelta_create(&cfg, &opt)))
        goto done;
    json_error_t err;
    list = json_loads(adadelta_st_meta(f, "variables"), 0, &err);
    if (!json_is_array(list)) {
        rc = adadelta__fail(ADADELTA_EFORMAT, "%s: metadata variables is not a JSON list", path);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *name = json_array_get(list, i);
        const adadelta_st_tensor *t =
            json_is_string(name) ? adadelta_st_find(f, json_string_value(name)) : NULL;
        if (!t || t->dtype != ADADELTA_ST_F32) {
            rc = adadelta__fail(ADADELTA_EFORMAT,
                                "%s: variable %zu of the metadata has no F32 tensor", path, i);
            goto done;
        }
        float *data = adadelta__alloc_floats(t->numel);
        if (!data) {
            rc = adadelta__fail(ADADELTA_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        int v = adadelta_add_variable(opt, t->name, ADADELTA_F32, data, t->ndim, t->shape);
        if (v < 0) {
            free(data);
            rc = refail(v == ADADELTA_EINVAL ? ADADELTA_EFORMAT : v, path, NULL);
            goto done;
        }
        opt->vars[v].owns_data = 1;
    }
    rc = load_file(opt, f, path);
done:
    json_decref(list);
    adadelta_st_free(f);
    if (rc) {
        adadelta_destroy(opt);
        return rc;
    }
    *out = opt;
    return ADADELTA_OK;
}
