/* config_json.c - Keras get_config() JSON, both ways (jansson). */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ writing */

static json_t *optional_real(double x) { return adadelta_is_set(x) ? json_real(x) : json_null(); }
static json_t *optional_int(int64_t x) { return x ? json_integer(x) : json_null(); }

/* Step counts are ints in Keras configs: write 5, not 5.0, when integral. */
json_t *adadelta__json_steps(double x)
{
    if (x == floor(x) && fabs(x) < 9e15)
        return json_integer((json_int_t)x);
    return json_real(x);
}

static json_t *adadelta_to_json(const adadelta_config *cfg)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(cfg->name));
    json_object_set_new(o, "learning_rate", adadelta__schedule_to_json(&cfg->learning_rate));
    json_object_set_new(o, "weight_decay", optional_real(cfg->weight_decay));
    json_object_set_new(o, "clipnorm", optional_real(cfg->clipnorm));
    json_object_set_new(o, "global_clipnorm", optional_real(cfg->global_clipnorm));
    json_object_set_new(o, "clipvalue", optional_real(cfg->clipvalue));
    json_object_set_new(o, "use_ema", json_boolean(cfg->use_ema));
    json_object_set_new(o, "ema_momentum", json_real(cfg->ema_momentum));
    json_object_set_new(o, "ema_overwrite_frequency", optional_int(cfg->ema_overwrite_frequency));
    json_object_set_new(o, "loss_scale_factor", optional_real(cfg->loss_scale_factor));
    json_object_set_new(o, "gradient_accumulation_steps",
                        optional_int(cfg->gradient_accumulation_steps));
    json_object_set_new(o, "rho", json_real(cfg->rho));
    json_object_set_new(o, "epsilon", json_real(cfg->epsilon));
    return o;
}

/* Python writes a float as the shortest text that reads back as the same
 * double (0.95, not 0.94999999999999996). jansson has one precision for a
 * whole document, so each floating-point literal outside strings is
 * rewritten here, in place (never longer than jansson's 17 digits). */
static void shortest_reals(char *text)
{
    char *out = text;
    for (const char *p = text; *p;) {
        if (*p == '"') { /* copy a string literal as is */
            *out++ = *p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    *out++ = *p++;
                *out++ = *p++;
            }
            if (*p)
                *out++ = *p++;
            continue;
        }
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            size_t n = strspn(p, "-+0123456789.eE");
            if (strcspn(p, ".eE") < n) {
                char lit[64], best[64];
                if (n >= sizeof lit)
                    n = sizeof lit - 1;
                memcpy(lit, p, n);
                lit[n] = '\0';
                double x = strtod(lit, NULL);
                for (int prec = 1; prec <= 17; prec++) {
                    snprintf(best, sizeof best, "%.*g", prec, x);
                    if (strtod(best, NULL) == x)
                        break;
                }
                if (!strpbrk(best, ".eEn")) /* 1 -> 1.0, as Python */
                    strcat(best, ".0");
                size_t m = strlen(best);
                if (m <= n) {
                    memcpy(out, best, m);
                    out += m;
                    p += n;
                    continue;
                }
            }
            memmove(out, p, n);
            out += n;
            p += n;
            continue;
        }
        *out++ = *p++;
    }
    *out = '\0';
}

char *adadelta_config_to_json(const adadelta_config *cfg)
{
    if (adadelta_config_validate(cfg))
        return NULL;
    json_t *o = adadelta_to_json(cfg);
    if (cfg->dynamic_loss_scale) {
        json_t *inner = json_pack("{s:s, s:s, s:o, s:n}", "module", "keras.optimizers",
                                  "class_name", "Adadelta", "config", o, "registered_name");
        json_object_set_new(json_object_get(inner, "config"), "loss_scale_factor", json_null());
        o = json_object();
        json_object_set_new(o, "name", json_string(cfg->loss_scale_name));
        json_object_set_new(o, "inner_optimizer", inner);
        json_object_set_new(o, "initial_scale", json_real(cfg->initial_scale));
        json_object_set_new(o, "dynamic_growth_steps", json_integer(cfg->dynamic_growth_steps));
    }
    char *text = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!text)
        adadelta__fail(ADADELTA_ENOMEM, "config_to_json: out of memory");
    else
        shortest_reals(text);
    return text;
}

/* ------------------------------------------------------------ differences */

typedef struct diff_out {
    char *buf;
    size_t cap, at;
    int n;
    const char *label; /* whose the other values are */
} diff_out;

static void diff_value(diff_out *o, const char *path, json_t *mine, json_t *theirs)
{
    if (json_is_object(mine) && json_is_object(theirs)) {
        const char *key;
        json_t *v;
        json_object_foreach(mine, key, v)
        {
            char sub[256];
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
            diff_value(o, sub, v, json_object_get(theirs, key));
        }
        json_object_foreach(theirs, key, v)
        {
            if (!json_object_get(mine, key)) {
                char sub[256];
                snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
                diff_value(o, sub, NULL, v);
            }
        }
        return;
    }
    if (mine && theirs && json_equal(mine, theirs))
        return;
    char *a = mine ? json_dumps(mine, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))
                   : NULL;
    char *b = theirs
                  ? json_dumps(theirs, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))
                  : NULL;
    if (a)
        shortest_reals(a);
    if (b)
        shortest_reals(b);
    if (o->at < o->cap)
        o->at += (size_t)snprintf(o->buf + o->at, o->cap - o->at, "%s%s %s (%s %s)",
                                  o->n ? ", " : "", path, a ? a : "absent", o->label,
                                  b ? b : "absent");
    o->n++;
    free(a);
    free(b);
}

int adadelta__config_diff(const char *mine, const char *theirs, const char *label, char *out,
                          size_t cap)
{
    out[0] = '\0';
    json_error_t err;
    json_t *a = json_loads(mine, 0, &err), *b = json_loads(theirs, 0, &err);
    diff_out o = {out, cap, 0, 0, label};
    if (a && b)
        diff_value(&o, "", a, b);
    json_decref(a);
    json_decref(b);
    return o.n;
}

/* ------------------------------------------------------------ reading */

/* Typed getters: each returns 0 when the key is absent (the default stays),
 * and fails with a message naming the key when its type is wrong. */
int adadelta__json_number(json_t *o, const char *prefix, const char *key, double *out,
                      int nullable)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (json_is_null(v)) {
        if (!nullable)
            return adadelta__fail(ADADELTA_EINVAL, "config: %s%s must be a number, not null",
                                  prefix, key);
        *out = ADADELTA_UNSET;
        return 0;
    }
    if (!json_is_number(v))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s must be a number", prefix, key);
    *out = json_number_value(v);
    return 0;
}

/* An integer. nullable: null, 0 and 0.0 are unset (Keras tests these
 * arguments for truth, so 0 acts as None). integral reals (2.0) count as
 * integers unless int_only (Keras's isinstance(x, int) checks). */
static int get_int(json_t *o, const char *prefix, const char *key, int64_t *out, int nullable,
                   int int_only)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (json_is_null(v) && nullable) {
        *out = 0;
        return 0;
    }
    int64_t x;
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
        fabs(json_real_value(v)) < 9e15 && (!int_only || json_real_value(v) == 0))
        x = (int64_t)json_real_value(v); /* 2.0 is 2 (Python's json writes it so) */
    else if (json_is_integer(v))
        x = json_integer_value(v);
    else
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s must be an integer%s", prefix,
                              key, nullable ? " or null" : "");
    *out = x;
    return 0;
}

int adadelta__json_bool(json_t *o, const char *prefix, const char *key, int *out)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s must be true or false", prefix,
                              key);
    *out = json_is_true(v);
    return 0;
}

int adadelta__json_string(json_t *o, const char *prefix, const char *key, char *out, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s must be a string", prefix, key);
    if (json_string_length(v) >= cap)
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s is longer than %zu bytes", prefix,
                              key, cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* Edit distance of two short strings (insert, delete, substitute). */
static size_t distance(const char *a, const char *b)
{
    size_t n = strlen(b), row[64];
    if (n >= 64 || strlen(a) >= 64)
        return 64;
    for (size_t j = 0; j <= n; j++)
        row[j] = j;
    for (size_t i = 1; a[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[n];
}

int adadelta__json_only_keys(json_t *o, const char *prefix, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        int known = 0;
        for (int i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (known)
            continue;
        /* A near miss (at most 2 edits, fewer than half the key) is named. */
        const char *near = NULL;
        size_t best = 3;
        for (int i = 0; allowed[i]; i++) {
            size_t d = distance(key, allowed[i]);
            if (d < best && 2 * d < strlen(allowed[i])) {
                best = d;
                near = allowed[i];
            }
        }
        if (near)
            return adadelta__fail(ADADELTA_EINVAL, "config: unknown key %s%s; did you mean %s%s?",
                                  prefix, key, prefix, near);
        return adadelta__fail(ADADELTA_EINVAL, "config: unknown key %s%s", prefix, key);
    }
    return 0;
}

int adadelta__json_need_key(json_t *o, const char *prefix, const char *key)
{
    if (!json_object_get(o, key))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s%s is missing", prefix, key);
    return 0;
}

static const char *const adadelta_keys[] = {
    "name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue",
    "use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
    "gradient_accumulation_steps", "rho", "epsilon", "decay", NULL};

static int adadelta_from_json(json_t *o, const char *P, adadelta_config *cfg, int saved)
{
    if (!json_is_object(o))
        return adadelta__fail(ADADELTA_EINVAL, "config: %s must be a JSON object",
                              *P ? P : "the top level");
    if (adadelta__json_only_keys(o, P, adadelta_keys))
        return ADADELTA_EINVAL;
    json_t *lr = json_object_get(o, "learning_rate");
    if (lr && json_is_object(lr)) {
        if (adadelta__schedule_from_json(lr, &cfg->learning_rate))
            return ADADELTA_EINVAL;
    } else if (lr && !(saved && json_is_null(lr))) {
        if (!json_is_number(lr))
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: %slearning_rate must be a number or a schedule", P);
        adadelta_lr_constant(&cfg->learning_rate, json_number_value(lr));
    }
    /* "decay" is accepted and ignored, as Keras warns and ignores it (the
     * warning: adadelta_last_warning). */
    if (adadelta__json_string(o, P, "name", cfg->name, sizeof cfg->name) ||
        adadelta__json_number(o, P, "weight_decay", &cfg->weight_decay, 1) ||
        adadelta__json_number(o, P, "clipnorm", &cfg->clipnorm, 1) ||
        adadelta__json_number(o, P, "global_clipnorm", &cfg->global_clipnorm, 1) ||
        adadelta__json_number(o, P, "clipvalue", &cfg->clipvalue, 1) ||
        adadelta__json_bool(o, P, "use_ema", &cfg->use_ema) ||
        adadelta__json_number(o, P, "ema_momentum", &cfg->ema_momentum, 0) ||
        get_int(o, P, "ema_overwrite_frequency", &cfg->ema_overwrite_frequency, 1, 1) ||
        adadelta__json_number(o, P, "loss_scale_factor", &cfg->loss_scale_factor, 1) ||
        get_int(o, P, "gradient_accumulation_steps", &cfg->gradient_accumulation_steps, 1, 0) ||
        adadelta__json_number(o, P, "rho", &cfg->rho, 0) || adadelta__json_number(o, P, "epsilon", &cfg->epsilon, 0))
        return ADADELTA_EINVAL;
    return ADADELTA_OK;
}

static int loss_scale_from_json(json_t *o, adadelta_config *cfg, int saved)
{
    static const char *const keys[] = {
        "name", "inner_optimizer", "initial_scale", "dynamic_growth_steps", "dynamic",
        /* LossScaleOptimizer's own base-optimizer keys: Keras refuses any
         * value but the default */
        "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema", "ema_momentum",
        "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps", NULL};
    if (adadelta__json_only_keys(o, "", keys))
        return ADADELTA_EINVAL;
    for (int i = 5; keys[i]; i++) {
        json_t *v = json_object_get(o, keys[i]);
        int is_default = !v || json_is_null(v) ||
                         (!strcmp(keys[i], "use_ema") && json_is_false(v)) ||
                         (!strcmp(keys[i], "ema_momentum") && json_is_number(v) &&
                          json_number_value(v) == 0.99);
        if (!is_default)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "config: LossScaleOptimizer does not support %s (set it on "
                                  "inner_optimizer)",
                                  keys[i]);
    }
    json_t *dynamic = json_object_get(o, "dynamic");
    if (dynamic && !json_is_true(dynamic))
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: dynamic must be true (only dynamic loss scaling exists)");
    json_t *inner = json_object_get(o, "inner_optimizer");
    if (!json_is_object(inner))
        return adadelta__fail(ADADELTA_EINVAL, "config: inner_optimizer must be an object");
    static const char *const outer[] = {"module", "class_name", "config", "registered_name",
                                        NULL};
    if (adadelta__json_only_keys(inner, "inner_optimizer.", outer))
        return ADADELTA_EINVAL;
    json_t *cls = json_object_get(inner, "class_name");
    if (!json_is_string(cls) || strcmp(json_string_value(cls), "Adadelta") != 0)
        return adadelta__fail(ADADELTA_EINVAL,
                              "config: inner_optimizer.class_name must be \"Adadelta\"");
    if (adadelta_from_json(json_object_get(inner, "config"), "inner_optimizer.config.", cfg,
                           saved))
        return ADADELTA_EINVAL;
    cfg->dynamic_loss_scale = 1;
    cfg->loss_scale_factor = ADADELTA_UNSET;
    if (adadelta__json_string(o, "", "name", cfg->loss_scale_name, sizeof cfg->loss_scale_name) ||
        adadelta__json_number(o, "", "initial_scale", &cfg->initial_scale, 0) ||
        get_int(o, "", "dynamic_growth_steps", &cfg->dynamic_growth_steps, 0, 0))
        return ADADELTA_EINVAL;
    return ADADELTA_OK;
}

static _Thread_local char last_warning[256];

const char *adadelta_last_warning(void) { return last_warning; }

/* keras.optimizers.serialize()'s form around a config: the config inside,
 * or o itself when it is not that form. */
static json_t *unwrap_serialized(json_t *o)
{
    json_t *cls = json_object_get(o, "class_name"), *c = json_object_get(o, "config");
    if (!json_is_string(cls) || !json_is_object(c))
        return o;
    const char *name = json_string_value(cls);
    static const char *const outer[] = {"module", "class_name", "config", "registered_name",
                                        NULL};
    if ((strcmp(name, "Adadelta") && strcmp(name, "LossScaleOptimizer")) ||
        adadelta__json_only_keys(o, "", outer))
        return o;
    return c;
}

static int parse_config(adadelta_config *cfg, const char *text, int saved)
{
    if (!cfg || !text)
        return adadelta__fail(ADADELTA_EINVAL, "config_from_json: NULL argument");
    json_error_t err;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!o)
        return adadelta__fail(ADADELTA_EINVAL, "config: not valid JSON: %s (line %d, column %d)",
                              err.text, err.line, err.column);
    adadelta_config tmp;
    adadelta_config_default(&tmp);
    last_warning[0] = '\0';
    json_t *c = json_is_object(o) ? unwrap_serialized(o) : o;
    int rc;
    if (json_is_object(c) && json_object_get(c, "inner_optimizer"))
        rc = loss_scale_from_json(c, &tmp, saved);
    else
        rc = adadelta_from_json(c, "", &tmp, saved);
    json_t *inner = json_object_get(json_object_get(json_object_get(c, "inner_optimizer"),
                                                    "config"),
                                    "decay");
    json_t *decay = inner ? inner : json_is_object(c) ? json_object_get(c, "decay") : NULL;
    if (!rc && decay && !json_is_null(decay))
        snprintf(last_warning, sizeof last_warning,
                 "config: decay is no longer supported and is ignored (Keras warns the same)");
    json_decref(o);
    if (!rc)
        rc = adadelta_config_validate(&tmp);
    if (rc)
        return rc;
    *cfg = tmp;
    return ADADELTA_OK;
}

int adadelta__learning_rate_from_json(const char *text, adadelta_learning_rate *out)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!v)
        return adadelta__fail(ADADELTA_EINVAL,
                              "learning_rate: not valid JSON: %s (line %d, column %d)", err.text,
                              err.line, err.column);
    adadelta_learning_rate lr;
    int rc = ADADELTA_OK;
    if (json_is_number(v))
        adadelta_lr_constant(&lr, json_number_value(v));
    else if (json_is_object(v))
        rc = adadelta__schedule_from_json(v, &lr);
    else
        rc = adadelta__fail(ADADELTA_EINVAL,
                            "config: learning_rate must be a number or a schedule");
    json_decref(v);
    if (!rc)
        *out = lr;
    return rc;
}

int adadelta_set_learning_rate_json(adadelta *opt, const char *text)
{
    if (!opt || !text)
        return adadelta__fail(ADADELTA_EINVAL, "set_learning_rate_json: NULL argument");
    adadelta_learning_rate lr;
    int rc = adadelta__learning_rate_from_json(text, &lr);
    return rc ? rc : adadelta_set_learning_rate(opt, &lr);
}

int adadelta_config_from_json(adadelta_config *cfg, const char *text)
{
    return parse_config(cfg, text, 0);
}

int adadelta__config_from_saved_json(adadelta_config *cfg, const char *text)
{
    return parse_config(cfg, text, 1);
}
