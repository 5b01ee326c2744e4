/* weight_decay.c - Keras's exclude_from_weight_decay: which variables the
 * decoupled weight decay skips (by index, or by a pattern searched in the
 * short name). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *short_name(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

int adadelta_exclude_from_weight_decay(adadelta *opt, const int *indices,
                                       int n_indices, const char *const *names,
                                       int n_names)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "exclude_from_weight_decay: NULL");
    if (opt->applied)
        return adadelta__fail(ADADELTA_ESTATE,
                              "exclude_from_weight_decay: only before the "
                              "first apply");
    if (n_indices < 0 || n_names < 0 || (n_indices && !indices) || (n_names && !names))
        return adadelta__fail(ADADELTA_EINVAL,
                              "exclude_from_weight_decay: bad list arguments");
    for (int i = 0; i < n_indices; i++)
        if (indices[i] < 0 || indices[i] >= opt->n_vars)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "exclude_from_weight_decay: variable index "
                                  "%d does not exist",
                                  indices[i]);
    size_t len = 1;
    for (int i = 0; i < n_names; i++) {
        if (!names[i])
            return adadelta__fail(ADADELTA_EINVAL,
                                  "exclude_from_weight_decay: names[%d] is NULL", i);
        len += strlen(names[i]) + 1;
    }
    regex_t re;
    int have_re = 0;
    if (n_names > 0) {
        char *pattern = malloc(len);
        if (!pattern)
            return adadelta__fail(ADADELTA_ENOMEM, "exclude_from_weight_decay: out of memory");
        pattern[0] = '\0';
        for (int i = 0; i < n_names; i++) {
            if (i)
                strcat(pattern, "|");
            strcat(pattern, names[i]);
        }
        int err = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
        if (err) {
            char msg[128];
            regerror(err, &re, msg, sizeof msg);
            adadelta__fail(ADADELTA_EINVAL,
                           "exclude_from_weight_decay: pattern '%s' is not a "
                           "valid regular expression: %s",
                           pattern, msg);
            free(pattern);
            return ADADELTA_EINVAL;
        }
        free(pattern);
        have_re = 1;
    }
    /* Like Keras, each call replaces the previous exclusions. */
    if (opt->has_exclude_regex)
        regfree(&opt->exclude_regex);
    opt->has_exclude_regex = have_re;
    if (have_re)
        opt->exclude_regex = re;
    for (int v = 0; v < opt->n_vars; v++)
        opt->vars[v].excluded_by_index = 0;
    for (int i = 0; i < n_indices; i++)
        opt->vars[indices[i]].excluded_by_index = 1;
    for (int v = 0; v < opt->n_vars; v++) {
        adadelta_var *var = &opt->vars[v];
        int excluded = var->excluded_by_index ||
                       (have_re && regexec(&opt->exclude_regex, short_name(var->name),
                                           0, NULL, 0) == 0);
        var->uses_weight_decay = !excluded;
    }
    return ADADELTA_OK;
}

int adadelta_uses_weight_decay(const adadelta *opt, int index)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    return v ? v->uses_weight_decay : 0;
}

