/* state_tensors.c - the training state as tensors in memory (see
 * state_tensors.h): the list in file order, the checks of a saved file
 * against it, and the copy from a file into it. */
#include "internal.h"
#include "state_tensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the list */

static size_t slot_name_bytes(const adadelta *opt, int k)
{
    size_t n = 0;
    for (int v = 0; v < opt->n_vars; v++)
        n += strlen("optimizer/") + strlen(adadelta__slots[k].dir) + 1 +
             strlen(opt->vars[v].name) + 1;
    return n;
}

static adadelta_state_tensor *add(adadelta_state_list *l, const char *name,
                                  adadelta_st_dtype dtype, adadelta_tensor_role role)
{
    adadelta_state_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->role = role;
    t->var = t->slot = -1;
    t->numel = t->end = 1; /* a scalar until a shape is set */
    return t;
}

static void set_shape(adadelta_state_tensor *t, const adadelta_var *var)
{
    t->ndim = var->ndim;
    memcpy(t->shape, var->shape, sizeof t->shape);
    t->numel = t->end = var->size;
}

int adadelta__state_list(const adadelta *opt, int with_data, adadelta_state_list *l)
{
    memset(l, 0, sizeof *l);
    int rc = with_data ? adadelta__build(opt) : ADADELTA_OK;
    if (rc)
        return rc;
    size_t names = 1;
    int n = opt->n_vars + 3;
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        if (adadelta__slot_needed(&opt->cfg, k)) {
            names += slot_name_bytes(opt, k);
            n += opt->n_vars;
        }
    l->t = calloc((size_t)n, sizeof *l->t);
    l->names = malloc(names);
    if (!l->t || !l->names) {
        adadelta__state_list_free(l);
        return adadelta__fail(ADADELTA_ENOMEM, "state: out of memory for %d tensors", n);
    }
    l->iterations = opt->iterations;
    l->dynamic_scale = opt->dynamic_scale;
    l->step_counter = opt->step_counter;
    for (int v = 0; v < opt->n_vars; v++) {
        adadelta_state_tensor *t = add(l, opt->vars[v].name, (adadelta_st_dtype)opt->vars[v].dtype,
                                       ADADELTA_TENSOR_VARIABLE);
        set_shape(t, &opt->vars[v]);
        t->var = v;
        t->data = with_data ? opt->vars[v].data : NULL;
    }
    add(l, "optimizer/iterations", ADADELTA_ST_I64, ADADELTA_TENSOR_COUNTER)->data = &l->iterations;
    char *at = l->names;
    for (int k = 0; k < ADADELTA_N_SLOTS; k++) {
        if (!adadelta__slot_needed(&opt->cfg, k))
            continue;
        for (int v = 0; v < opt->n_vars; v++) {
            const adadelta_var *var = &opt->vars[v];
            int len = sprintf(at, "optimizer/%s/%s", adadelta__slots[k].dir, var->name);
            /* slots take the variable's dtype (add_variable_from_reference) */
            adadelta_state_tensor *t = add(l, at, (adadelta_st_dtype)var->dtype, ADADELTA_TENSOR_SLOT);
            at += len + 1;
            set_shape(t, var);
            t->var = v;
            t->slot = k;
            t->begin = adadelta__slot_first(var, k);
            t->end = t->begin + adadelta__slot_length(var, k);
            t->data = with_data ? var->slot[k] : NULL;
        }
    }
    if (opt->cfg.dynamic_loss_scale) {
        add(l, "optimizer/dynamic_scale", ADADELTA_ST_F32, ADADELTA_TENSOR_COUNTER)->data =
            &l->dynamic_scale;
        add(l, "optimizer/step_counter", ADADELTA_ST_I64, ADADELTA_TENSOR_COUNTER)->data =
            &l->step_counter;
    }
    return ADADELTA_OK;
}

void adadelta__state_list_free(adadelta_state_list *l)
{
    free(l->t);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------ checks */

int adadelta__state_check_header(const adadelta_st_file *f, const char *path)
{
    const char *format = adadelta_st_meta(f, "format");
    const char *version = adadelta_st_meta(f, "version");
    if (!format || strcmp(format, "adadelta-state") != 0)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata format is not adadelta-state",
                              path);
    int v1 = version && !strcmp(version, "1"), v2 = version && !strcmp(version, "2");
    if (!v1 && !v2)
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: state version '%s' is not supported (1 or 2)", path,
                              version ? version : "(none)");
    if (!adadelta_st_meta(f, "checksum"))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata has no checksum", path);
    if (v2 && !adadelta_st_checksum_at(f))
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: the header must hold exactly one \"checksum\" entry", path);
    return ADADELTA_OK;
}

/* Version 1 covers the data, version 2 the whole file (the header with
 * its names, shapes and config too) with its own digits read as '0'. */
void adadelta__state_checksum_span(const adadelta_st_file *f, size_t *base, size_t *zero_at)
{
    int v2 = !strcmp(adadelta_st_meta(f, "version"), "2");
    *base = v2 ? 0 : f->data_start;
    *zero_at = v2 ? adadelta_st_checksum_at(f) : 0;
}

int adadelta__state_checksum_verdict(const adadelta_st_file *f, const char *path, uint32_t crc)
{
    const char *checksum = adadelta_st_meta(f, "checksum");
    char got[9];
    adadelta_st_checksum_digits(crc, got);
    if (strcmp(got, checksum) != 0)
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: checksum mismatch (file says %s, %s gives %s): the "
                              "file is corrupted",
                              path, checksum,
                              strcmp(adadelta_st_meta(f, "version"), "2") ? "the data"
                                                                          : "the file",
                              got);
    return ADADELTA_OK;
}

static int check_metadata(const adadelta_st_file *f, const char *path)
{
    if (!adadelta_st_meta(f, "config") || !adadelta_st_meta(f, "variables"))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: metadata lacks config or variables", path);
    return ADADELTA_OK;
}

int adadelta__state_check_file(const adadelta_st_file *f, const char *path, size_t cap)
{
    int rc = adadelta__state_check_header(f, path);
    if (rc)
        return rc;
    size_t base, zero_at;
    adadelta__state_checksum_span(f, &base, &zero_at);
    void *buf = f->fd >= 0 ? malloc(cap) : NULL;
    if (f->fd >= 0 && !buf)
        return adadelta__fail(ADADELTA_ENOMEM, "%s: out of memory for a %zu-byte buffer", path,
                              cap);
    uint32_t crc = 0;
    rc = adadelta_st_crc_range(f, base, f->size, zero_at, buf, cap, &crc);
    free(buf);
    if (rc)
        return adadelta__fail(rc, "%s", adadelta_st_error());
    if ((rc = adadelta__state_checksum_verdict(f, path, crc)))
        return rc;
    return check_metadata(f, path);
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
    if (adadelta__config_from_saved_json(&saved, adadelta_st_meta(f, "config")))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: saved config is invalid: %s", path,
                              adadelta_last_error());
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

/* A counter must be one scalar of its dtype. */
static int check_counter(const adadelta_st_file *f, const char *path,
                         const adadelta_state_tensor *want, const adadelta_st_tensor **out)
{
    const adadelta_st_tensor *t = adadelta_st_find(f, want->name);
    if (!t)
        return adadelta__fail(ADADELTA_EMISMATCH, "%s: tensor '%s' is missing", path, want->name);
    if (t->dtype != want->dtype || t->numel != 1)
        return adadelta__fail(ADADELTA_EFORMAT, "%s: tensor '%s' must be one %s", path,
                              want->name, adadelta_st_dtype_name(want->dtype));
    *out = t;
    return ADADELTA_OK;
}

/* A read of an opened file that failed, into the library's last error. */
static int read_failed(int rc)
{
    return rc ? adadelta__fail(rc, "%s", adadelta_st_error()) : 0;
}

static int read_i64(const adadelta_st_file *f, const adadelta_st_tensor *t, int64_t *x)
{
    *x = 0;
    return t ? read_failed(adadelta_st_read_data(f, t, 0, 8, x)) : 0;
}

/* The counters and the scale must be values a run can reach: a crafted
 * file (valid checksum) with iterations = INT64_MAX would overflow on the
 * next apply, a zero or NaN scale would poison every step. */
static int check_counters(const adadelta_st_file *f, const char *path, const adadelta *opt,
                          const adadelta_state_list *l)
{
    const adadelta_st_tensor *found[3] = {NULL, NULL, NULL};
    int k = 0, rc;
    for (int i = 0; i < l->n; i++)
        if (l->t[i].role == ADADELTA_TENSOR_COUNTER &&
            (rc = check_counter(f, path, &l->t[i], &found[k++])))
            return rc;
    int64_t it, counter;
    float scale = 1;
    if ((rc = read_i64(f, found[0], &it)) || (rc = read_i64(f, found[2], &counter)) ||
        (found[1] && (rc = read_failed(adadelta_st_read_data(f, found[1], 0, 4, &scale)))))
        return rc;
    if (it < 0 || it > ((int64_t)1 << 62))
        return adadelta__fail(ADADELTA_EFORMAT, "%s: optimizer/iterations = %lld is out of range",
                              path, (long long)it);
    if (counter < 0 || counter > ((int64_t)1 << 62))
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/step_counter = %lld is out of range", path,
                              (long long)counter);
    if (!(scale > 0) || !isfinite(scale))
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/dynamic_scale = %g is not a finite number > 0", path,
                              (double)scale);
    if (found[1] && counter >= opt->cfg.dynamic_growth_steps)
        return adadelta__fail(ADADELTA_EFORMAT,
                              "%s: optimizer/step_counter = %lld is not below "
                              "dynamic_growth_steps = %lld",
                              path, (long long)counter, (long long)opt->cfg.dynamic_growth_steps);
    return ADADELTA_OK;
}

static int same_shape(const adadelta_st_tensor *t, const adadelta_state_tensor *want)
{
    if (t->ndim != want->ndim)
        return 0;
    for (int d = 0; d < want->ndim; d++)
        if (t->shape[d] != want->shape[d])
            return 0;
    return 1;
}

/* A variable's or slot's tensor with the variable's dtype and shape. */
static int check_tensor(const adadelta_st_file *f, const char *path, const adadelta *opt,
                        const adadelta_state_tensor *want)
{
    const adadelta_st_tensor *t = adadelta_st_find(f, want->name);
    if (!t)
        return adadelta__fail(ADADELTA_EMISMATCH, "%s: tensor '%s' is missing", path, want->name);
    if (t->dtype != want->dtype || !same_shape(t, want))
        return adadelta__fail(ADADELTA_EMISMATCH,
                              "%s: tensor '%s' has another shape or dtype than variable '%s'",
                              path, want->name, opt->vars[want->var].name);
    return ADADELTA_OK;
}

int adadelta__state_check(const adadelta *opt, const adadelta_st_file *f, const char *path)
{
    int rc;
    if ((rc = adadelta__state_check_header(f, path)) || (rc = check_metadata(f, path)) ||
        (rc = check_variables(f, path, opt)) || (rc = check_config(f, path, opt)))
        return rc;
    adadelta_state_list l;
    if ((rc = adadelta__state_list(opt, 0, &l)))
        return rc;
    rc = check_counters(f, path, opt, &l);
    /* Variable by variable: the variable (list entry v), then its slot of
     * each kind (the kinds' blocks follow optimizer/iterations). */
    int kinds = (l.n - opt->n_vars - 1 - 2 * opt->cfg.dynamic_loss_scale) /
                (opt->n_vars ? opt->n_vars : 1);
    for (int v = 0; !rc && v < opt->n_vars; v++) {
        rc = check_tensor(f, path, opt, &l.t[v]);
        for (int j = 0; !rc && j < kinds; j++)
            rc = check_tensor(f, path, opt, &l.t[opt->n_vars + 1 + j * opt->n_vars + v]);
    }
    adadelta__state_list_free(&l);
    return rc;
}

/* ------------------------------------------------------------ import */

int adadelta__state_import(adadelta *opt, const adadelta_st_file *f, const char *path,
                           const adadelta_state_list *l)
{
    int rc = ADADELTA_OK;
    /* the tensors, then the counters: a read error midway leaves the
     * counters as they were */
    for (int i = 0; !rc && i < l->n; i++) {
        const adadelta_state_tensor *want = &l->t[i];
        size_t esize = adadelta_st_dtype_size(want->dtype);
        if (want->role != ADADELTA_TENSOR_COUNTER)
            rc = read_failed(adadelta_st_read_data(f, adadelta_st_find(f, want->name),
                                                   (size_t)want->begin * esize,
                                                   (size_t)(want->end - want->begin) * esize,
                                                   want->data));
    }
    for (int i = 0; !rc && i < l->n; i++) {
        const adadelta_state_tensor *want = &l->t[i];
        const adadelta_st_tensor *t = adadelta_st_find(f, want->name);
        if (want->role != ADADELTA_TENSOR_COUNTER)
            continue;
        if (!strcmp(want->name, "optimizer/iterations"))
            rc = read_i64(f, t, &opt->iterations);
        else if (!strcmp(want->name, "optimizer/step_counter"))
            rc = read_i64(f, t, &opt->step_counter);
        else
            rc = read_failed(adadelta_st_read_data(f, t, 0, 4, &opt->dynamic_scale));
    }
    (void)path; /* the read errors name it */
    if (rc)
        adadelta__fail(rc, "%s (the state is partly loaded: load a good file again)",
                       adadelta_last_error());
    return rc;
}
