/* variables.c - the variable registry: registration (checked names, dtypes
 * and shapes), lookup by name through a hash index, the getters and the
 * slot access. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ the name index */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Slot of name in the index: the one holding it, or the empty one where it
 * would go. The index is kept at most half full. */
static int index_slot(const adadelta *opt, const char *name)
{
    int mask = opt->name_index_cap - 1;
    int i = (int)(hash_name(name) & (uint64_t)mask);
    while (opt->name_index[i] && strcmp(opt->vars[opt->name_index[i] - 1].name, name) != 0)
        i = (i + 1) & mask;
    return i;
}

int adadelta__index_of(const adadelta *opt, const char *name)
{
    if (!opt->name_index_cap)
        return -1;
    int v = opt->name_index[index_slot(opt, name)];
    return v - 1;
}

/* Room for n names at most half full; rebuilt from vars when it grows. */
static int reserve_index(adadelta *opt, int n)
{
    if ((int64_t)n * 2 <= opt->name_index_cap)
        return ADADELTA_OK;
    int64_t cap = opt->name_index_cap ? opt->name_index_cap : 32;
    while (cap < (int64_t)n * 2)
        cap *= 2;
    if (cap > (1 << 30))
        return ADADELTA_ENOMEM;
    int *index = calloc((size_t)cap, sizeof *index);
    if (!index)
        return ADADELTA_ENOMEM;
    free(opt->name_index);
    opt->name_index = index;
    opt->name_index_cap = (int)cap;
    for (int v = 0; v < opt->n_vars; v++)
        opt->name_index[index_slot(opt, opt->vars[v].name)] = v + 1;
    return ADADELTA_OK;
}

/* ------------------------------------------------------------ growing */

/* realloc *pp (a pointer to any array pointer) to n elements of elem
 * bytes; *pp is left alone on failure. */
static int grow(void *pp, size_t n, size_t elem)
{
    void *old, *q; /* memcpy: *pp is some T *, not a void * */
    memcpy(&old, pp, sizeof old);
    if (!(q = realloc(old, n * elem)))
        return ADADELTA_ENOMEM;
    memcpy(pp, &q, sizeof q);
    return ADADELTA_OK;
}

static int doubled_capacity(int cap, int need, int first)
{
    int64_t c = cap ? cap : first;
    while (c < need)
        c *= 2;
    return c > INT32_MAX ? INT32_MAX : (int)c;
}

int adadelta__reserve(adadelta *opt, int n_vars, int n_shards)
{
    if (n_vars > opt->cap_vars) {
        size_t cap = (size_t)doubled_capacity(opt->cap_vars, n_vars, 16);
        if (grow(&opt->vars, cap, sizeof *opt->vars) ||
            grow(&opt->var_clip_b, cap, sizeof *opt->var_clip_b) ||
            grow(&opt->var_grads, cap, sizeof *opt->var_grads))
            return ADADELTA_ENOMEM;
        opt->cap_vars = (int)cap;
    }
    if (n_shards > opt->cap_shards) {
        size_t cap = (size_t)doubled_capacity(opt->cap_shards, n_shards, 64);
        if (grow(&opt->shards, cap, sizeof *opt->shards) ||
            grow(&opt->partials, cap, sizeof *opt->partials) ||
            grow(&opt->shard_flags, cap, sizeof *opt->shard_flags))
            return ADADELTA_ENOMEM;
        opt->cap_shards = (int)cap;
    }
    return reserve_index(opt, n_vars);
}

/* --------------------------------------------------------- registering */

/* 1 if s is well-formed UTF-8 (names go into a JSON header): no overlong
 * forms, no UTF-16 surrogates, nothing above U+10FFFF. */
static int valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        int n = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : (c & 0xF0) == 0xE0 ? 2
                : c >= 0xF0 && c <= 0xF4             ? 3
                                                     : -1;
        if (n < 0)
            return 0;
        for (int i = 1; i <= n; i++)
            if ((s[i] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) ||
            (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
            return 0; /* overlong, surrogate, above U+10FFFF */
        s += n + 1;
    }
    return 1;
}

/* Bytes of a name once written as a JSON string (jansson escapes '"', '\\'
 * and control characters, at most 6 bytes each). */
static size_t json_length(const char *name)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        n += *p == '"' || *p == '\\' ? 2 : *p < 0x20 ? 6 : 1;
    return n;
}

/* An upper bound of what a variable adds to a saved state's header: its
 * tensor entry and one per slot kind (each at most 120 bytes besides the
 * name), and its entry in the metadata's variable list, escaped twice. */
static size_t header_bytes(const char *name)
{
    size_t e = json_length(name);
    return (1 + ADADELTA_N_SLOTS) * (e + 120) + 2 * e + 8;
}

static int check_shape(const char *name, int ndim, const int64_t *shape, int64_t *size_out)
{
    if (ndim < 0 || ndim > ADADELTA_MAX_DIMS)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': ndim = %d is outside [0, %d]",
                              name, ndim, ADADELTA_MAX_DIMS);
    if (ndim > 0 && !shape)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': shape is NULL", name);
    int64_t size = 1;
    *size_out = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return adadelta__fail(ADADELTA_EINVAL,
                                  "add_variable '%s': shape[%d] = %lld is negative", name, d,
                                  (long long)shape[d]);
        if (shape[d] != 0 && size > (INT64_MAX / 8) / shape[d])
            return adadelta__fail(ADADELTA_EINVAL,
                                  "add_variable '%s': the shape has too many elements", name);
        size *= shape[d];
    }
    *size_out = size;
    return ADADELTA_OK;
}

static int check_new_variable(const adadelta *opt, const char *name, adadelta_dtype dtype,
                              const void *data, int ndim, const int64_t *shape,
                              int64_t *size_out)
{
    if (!name || !*name)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable: the name is empty");
    size_t len = strnlen(name, ADADELTA_VARIABLE_NAME_MAX + 1);
    if (len > ADADELTA_VARIABLE_NAME_MAX)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%.40s...': the name is longer than %d bytes", name,
                              ADADELTA_VARIABLE_NAME_MAX);
    /* Names become safetensors tensor names next to the optimizer's own. */
    if (!valid_utf8((const unsigned char *)name) || !strcmp(name, "__metadata__") ||
        !strncmp(name, "optimizer/", 10))
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': the name must be UTF-8 and neither "
                              "__metadata__ nor start with optimizer/",
                              name);
    if (opt->built)
        return adadelta__fail(ADADELTA_ESTATE,
                              "add_variable '%s': variables can only be added "
                              "before the optimizer is built (first apply, save, "
                              "load or slot access)",
                              name);
    if ((unsigned)dtype > ADADELTA_BF16)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': dtype %d is not supported "
                              "(ADADELTA_F32, ADADELTA_F64, ADADELTA_F16 or ADADELTA_BF16)",
                              name, (int)dtype);
    int rc = check_shape(name, ndim, shape, size_out);
    if (rc)
        return rc;
    if (!data && *size_out > 0)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': data is NULL", name);
    if (adadelta__index_of(opt, name) >= 0)
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%s': a variable with this name exists", name);
    /* What could be saved must load: the header stays under the readers'
     * limit (the config and the rest of the metadata take < 64 KiB). */
    if (opt->header_bytes + header_bytes(name) > ADADELTA_ST_MAX_HEADER - (64u << 10))
        return adadelta__fail(ADADELTA_EINVAL,
                              "add_variable '%.60s': with it the names of the %d variables "
                              "would make a saved state's header longer than the %u bytes "
                              "readers accept",
                              name, opt->n_vars + 1, ADADELTA_ST_MAX_HEADER);
    return ADADELTA_OK;
}

int adadelta_add_variable(adadelta *opt, const char *name, adadelta_dtype dtype, void *data,
                          int ndim, const int64_t *shape)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable: optimizer is NULL");
    int64_t size = 0;
    int rc = check_new_variable(opt, name, dtype, data, ndim, shape, &size);
    if (rc)
        return rc;
    if (opt->n_vars == INT32_MAX - 1)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': too many variables", name);
    int64_t n_new_shards = (size + ADADELTA_SHARD_ELEMS - 1) / ADADELTA_SHARD_ELEMS;
    if (n_new_shards > INT32_MAX - 1 - opt->n_shards)
        return adadelta__fail(ADADELTA_EINVAL, "add_variable '%s': too many elements", name);
    if (adadelta__reserve(opt, opt->n_vars + 1, opt->n_shards + (int)n_new_shards))
        return adadelta__fail(ADADELTA_ENOMEM, "add_variable '%s': out of memory", name);

    adadelta_var var;
    memset(&var, 0, sizeof var);
    if (!(var.name = strdup(name)))
        return adadelta__fail(ADADELTA_ENOMEM, "add_variable '%s': out of memory", name);
    var.dtype = dtype;
    var.esize = adadelta__dtype_size(dtype);
    var.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        var.shape[d] = shape[d];
    var.size = size;
    var.flat_offset = opt->total_elements;
    var.data = data;
    var.slot_begin = 0;
    var.slot_end = size;
    var.uses_weight_decay = 1;

    int v = opt->n_vars;
    opt->vars[v] = var;
    opt->n_vars++;
    opt->n_f64 += dtype == ADADELTA_F64;
    opt->n_half += dtype == ADADELTA_F16 || dtype == ADADELTA_BF16;
    opt->name_index[index_slot(opt, name)] = v + 1;
    opt->header_bytes += header_bytes(name);
    adadelta__add_shards(opt, v, size);
    opt->total_elements += size;
    return v;
}

/* ------------------------------------------------------------ getters */

const adadelta_var *adadelta__var_at(const adadelta *opt, int index)
{
    if (!opt || index < 0 || index >= opt->n_vars)
        return NULL;
    return &opt->vars[index];
}

int adadelta_num_variables(const adadelta *opt) { return opt ? opt->n_vars : 0; }

int adadelta_find_variable(const adadelta *opt, const char *name)
{
    if (!opt || !name)
        return adadelta__fail(ADADELTA_ENOTFOUND, "find_variable: NULL argument");
    int v = adadelta__index_of(opt, name);
    if (v >= 0)
        return v;
    return adadelta__fail(ADADELTA_ENOTFOUND, "no variable named '%s'", name);
}

const char *adadelta_variable_name(const adadelta *opt, int index)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    return v ? v->name : NULL;
}

int64_t adadelta_variable_size(const adadelta *opt, int index)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    return v ? v->size : -1;
}

int adadelta_variable_shape(const adadelta *opt, int index, int *ndim,
                            int64_t shape[ADADELTA_MAX_DIMS])
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    if (!v)
        return adadelta__fail(ADADELTA_ENOTFOUND, "variable index %d does not exist", index);
    if (!ndim || !shape)
        return adadelta__fail(ADADELTA_EINVAL, "variable_shape: NULL output");
    *ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++)
        shape[d] = v->shape[d];
    return ADADELTA_OK;
}

void *adadelta_variable_data(const adadelta *opt, int index)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    return v ? v->data : NULL;
}

int adadelta_variable_dtype(const adadelta *opt, int index)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    return v ? (int)v->dtype : -1;
}

void *adadelta_slot(const adadelta *opt, int index, adadelta_slot_kind slot)
{
    const adadelta_var *v = adadelta__var_at(opt, index);
    if (!v) {
        adadelta__fail(ADADELTA_ENOTFOUND, "slot: variable index %d does not exist", index);
        return NULL;
    }
    int k = (int)slot;
    int exists = k >= 0 && k < ADADELTA_N_SLOTS && adadelta__slot_needed(&opt->cfg, k);
    if (exists && adadelta__build(opt))
        return NULL;
    if (!exists || !v->slot[k]) {
        adadelta__fail(ADADELTA_ENOTFOUND, "slot: variable '%s' has no slot %d with this config",
                       v->name, k);
        return NULL;
    }
    if (adadelta__slot_length(v, k) != v->size) {
        adadelta__fail(ADADELTA_ESTATE, "slot: variable '%s' is sharded; use the MPI layer",
                       v->name);
        return NULL;
    }
    return v->slot[k];
}
