/* state.c - save and load the whole training state to and from one file
 * (docs/state-format.md), through the state's tensor list
 * (state_tensors.h). */
#include "internal.h"
#include "state_tensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* A safetensors failure into the library's last error. */
static int st_status(int rc)
{
    if (rc)
        adadelta__fail(rc, "%s", adadelta_st_error());
    return rc;
}

static int state_metadata(const adadelta *opt, char **config, char **variables)
{
    json_t *a = json_array();
    for (int v = 0; v < opt->n_vars; v++)
        json_array_append_new(a, json_string(opt->vars[v].name));
    *variables = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    *config = adadelta_config_to_json(&opt->cfg);
    if (*config && *variables)
        return ADADELTA_OK;
    free(*config);
    free(*variables);
    *config = *variables = NULL;
    return adadelta__fail(ADADELTA_ENOMEM, "state: out of memory for the metadata");
}

int adadelta__state_plan(const adadelta *opt, const adadelta_state_list *l,
                         adadelta_st_layout *out)
{
    char *config = NULL, *vars = NULL;
    adadelta_st_out *t = calloc((size_t)l->n + 1, sizeof *t);
    int rc = t ? state_metadata(opt, &config, &vars)
               : adadelta__fail(ADADELTA_ENOMEM, "save: out of memory");
    if (!rc) {
        for (int i = 0; i < l->n; i++)
            t[i] = (adadelta_st_out){l->t[i].name, l->t[i].dtype, l->t[i].ndim, l->t[i].shape,
                                     NULL};
        const char *meta[] = {"format", "adadelta-state", "version", "2",
                              "config", config,           "variables", vars};
        rc = st_status(adadelta_st_plan(t, l->n, meta, 4, ADADELTA_ST_CHECKSUM_FILE, out));
    }
    free(t);
    free(config);
    free(vars);
    return rc;
}

#define WRITE_CHUNK ((size_t)1 << 20)

int adadelta__state_write_parts(const adadelta_state_list *l, const adadelta_st_layout *lay,
                                int fd, const char *path, adadelta_st_piece *p, int *n)
{
    for (int i = 0; i < l->n; i++) {
        const adadelta_state_tensor *t = &l->t[i];
        size_t esize = adadelta_st_dtype_size(t->dtype);
        size_t len = (size_t)(t->end - t->begin) * esize;
        size_t at = lay->offsets[i] + (size_t)t->begin * esize;
        if (!len)
            continue;
        /* a chunk's CRC, then its write: the data comes from memory once,
         * the write copies it from the cache */
        uint32_t crc = 0;
        for (size_t done = 0; done < len; done += WRITE_CHUNK) {
            size_t k = len - done < WRITE_CHUNK ? len - done : WRITE_CHUNK;
            const unsigned char *src = (const unsigned char *)t->data + done;
            crc = adadelta__crc32c(crc, src, k);
            int rc = st_status(adadelta_st_pwrite_all(fd, src, k, at + done, path));
            if (rc)
                return rc;
        }
        adadelta_st_piece *last = *n ? &p[*n - 1] : NULL;
        if (last && last->offset + last->length == at) {
            last->crc = adadelta__crc32c_combine(last->crc, crc, len);
            last->length += len;
        } else {
            p[(*n)++] = (adadelta_st_piece){at, len, crc};
        }
    }
    return ADADELTA_OK;
}

int adadelta__state_write_prefix(const adadelta_st_layout *lay, int fd, const char *path,
                                 adadelta_st_piece *p, int n)
{
    unsigned char *prefix = malloc(lay->data_start);
    if (!prefix)
        return adadelta__fail(ADADELTA_ENOMEM, "save %s: out of memory", path);
    adadelta_st_prefix(lay, prefix);
    p[n++] = (adadelta_st_piece){0, lay->data_start, adadelta__crc32c(0, prefix,
                                                                      lay->data_start)};
    uint32_t crc;
    int rc = adadelta_st_combine_pieces(p, n, lay->total, &crc);
    if (rc) {
        free(prefix);
        return adadelta__fail(ADADELTA_ESTATE, "save %s: %s", path, adadelta_st_error());
    }
    char digits[9];
    adadelta_st_checksum_digits(crc, digits);
    memcpy(prefix + lay->checksum_at, digits, 8);
    rc = st_status(adadelta_st_pwrite_all(fd, prefix, lay->data_start, 0, path));
    free(prefix);
    return rc;
}

int adadelta__state_write(const adadelta *opt, const adadelta_state_list *l, const char *path)
{
    adadelta_st_layout lay;
    int rc = adadelta__state_plan(opt, l, &lay);
    if (rc)
        return adadelta__fail(rc, "save %s: %s", path, adadelta_last_error());
    adadelta_st_piece *p = calloc((size_t)l->n + 1, sizeof *p);
    int fd = -1, n = 0;
    char *tmp = NULL;
    if (!p)
        rc = adadelta__fail(ADADELTA_ENOMEM, "save %s: out of memory", path);
    else
        rc = st_status(adadelta_st_create_temp(path, &fd, &tmp));
    if (!rc && !(rc = adadelta__state_write_parts(l, &lay, fd, path, p, &n)) &&
        !(rc = adadelta__state_write_prefix(&lay, fd, path, p, n)))
        rc = st_status(adadelta_st_commit(fd, tmp, path));
    else if (tmp)
        adadelta_st_abort(fd, tmp);
    free(p);
    adadelta_st_layout_free(&lay);
    return rc;
}

int adadelta_save(const adadelta *opt, const char *path)
{
    if (!opt || !path)
        return adadelta__fail(ADADELTA_EINVAL, "save: NULL argument");
    if (adadelta__sharded(opt))
        return adadelta__fail(ADADELTA_ESTATE, "save: sharded optimizer; use adadelta_mpi_save");
    adadelta_state_list l;
    int rc = adadelta__state_list(opt, 1, &l);
    if (rc)
        return rc;
    rc = adadelta__state_write(opt, &l, path);
    adadelta__state_list_free(&l);
    return rc;
}

/* Everything is checked first (the checksum unless `verified`); only
 * then built and copied. Saved hyperparameters that differ from the
 * optimizer's are reported (the optimizer's own are kept, as Keras keeps
 * the compiled optimizer's). */
static int load_file(adadelta *opt, const adadelta_st_file *f, const char *path, int verified)
{
    int rc = verified ? 0 : adadelta__state_check_file(f, path, opt->checkpoint_buffer);
    if (rc || (rc = adadelta__state_check(opt, f, path)))
        return rc;
    adadelta_state_list l;
    if ((rc = adadelta__state_list(opt, 1, &l)))
        return rc;
    rc = adadelta__state_import(opt, f, path, &l);
    adadelta__state_list_free(&l);
    char *mine = adadelta_config_to_json(&opt->cfg), diff[sizeof opt->load_report];
    int n = mine ? adadelta__config_diff(mine, adadelta_st_meta(f, "config"), "saved", diff,
                                           sizeof diff)
                 : 0;
    snprintf(opt->load_report, sizeof opt->load_report, "%.150s%s%.300s", n ? path : "",
             n ? ": the optimizer keeps its own hyperparameters where they differ from the "
                 "saved ones: "
               : "",
             n ? diff : "");
    free(mine);
    return rc;
}

const char *adadelta_load_report(const adadelta *opt) { return opt ? opt->load_report : ""; }

int adadelta_set_checkpoint_buffer(adadelta *opt, size_t bytes)
{
    if (!opt)
        return adadelta__fail(ADADELTA_EINVAL, "set_checkpoint_buffer: optimizer is NULL");
    if (bytes < 4096 || bytes > ((size_t)1 << 30))
        return adadelta__fail(ADADELTA_EINVAL,
                              "set_checkpoint_buffer: %zu bytes is outside [4096, 2^30]", bytes);
    opt->checkpoint_buffer = bytes;
    return ADADELTA_OK;
}

size_t adadelta_checkpoint_buffer(const adadelta *opt)
{
    return opt ? opt->checkpoint_buffer : ADADELTA_CHECKPOINT_BUFFER_DEFAULT;
}

int adadelta_load(adadelta *opt, const char *path)
{
    if (!opt || !path)
        return adadelta__fail(ADADELTA_EINVAL, "load: NULL argument");
    int rc = adadelta__refuse_wrapped(opt, "load");
    if (rc)
        return rc;
    if (adadelta__sharded(opt))
        return adadelta__fail(ADADELTA_ESTATE, "load: sharded optimizer; use adadelta_mpi_load");
    adadelta_st_file *f;
    if ((rc = st_status(adadelta_st_open(path, &f))))
        return rc;
    rc = load_file(opt, f, path, 0);
    adadelta_st_free(f);
    return rc;
}

/* The variables the file's metadata lists, with storage the optimizer
 * owns. */
static int add_saved_variables(adadelta *opt, const adadelta_st_file *f, const char *path)
{
    json_error_t err;
    json_t *list = json_loads(adadelta_st_meta(f, "variables"), 0, &err);
    int rc = ADADELTA_OK;
    if (!json_is_array(list))
        rc = adadelta__fail(ADADELTA_EFORMAT, "%s: metadata variables is not a JSON list", path);
    for (size_t i = 0; !rc && i < json_array_size(list); i++) {
        json_t *name = json_array_get(list, i);
        const adadelta_st_tensor *t =
            json_is_string(name) ? adadelta_st_find(f, json_string_value(name)) : NULL;
        if (!t || t->dtype == ADADELTA_ST_I64) {
            rc = adadelta__fail(ADADELTA_EFORMAT,
                                "%s: variable %zu of the metadata has no F32, F64, F16 or "
                                "BF16 tensor",
                                path, i);
            break;
        }
        void *data = adadelta__alloc_bytes((size_t)t->numel * adadelta_st_dtype_size(t->dtype));
        if (!data) {
            rc = adadelta__fail(ADADELTA_ENOMEM, "%s: out of memory", path);
            break;
        }
        int v = adadelta_add_variable(opt, t->name, (adadelta_dtype)t->dtype, data, t->ndim,
                                      t->shape);
        if (v < 0) {
            free(data);
            rc = adadelta__fail(v == ADADELTA_EINVAL ? ADADELTA_EFORMAT : v, "%s: %s", path,
                                adadelta_last_error());
            break;
        }
        opt->vars[v].owns_data = 1;
    }
    json_decref(list);
    return rc;
}

/* 1 if a saved config's learning rate is null (a callback when saved). */
static int saved_with_callback(const char *config)
{
    json_error_t err;
    json_t *c = json_loads(config, 0, &err);
    json_t *inner = json_object_get(json_object_get(json_object_get(c, "inner_optimizer"),
                                                    "config"),
                                    "learning_rate");
    json_t *lr = inner ? inner : json_object_get(c, "learning_rate");
    int null = lr && json_is_null(lr);
    json_decref(c);
    return null;
}

int adadelta_create_from_state(const char *path, const adadelta_config *override,
                               adadelta **out)
{
    if (!path || !out)
        return adadelta__fail(ADADELTA_EINVAL, "create_from_state: NULL argument");
    *out = NULL;
    adadelta_st_file *f;
    int rc = st_status(adadelta_st_open(path, &f));
    if (rc)
        return rc;
    adadelta_config cfg;
    adadelta *opt = NULL;
    if ((rc = adadelta__state_check_file(f, path, ADADELTA_CHECKPOINT_BUFFER_DEFAULT)))
        goto done;
    if (override)
        cfg = *override;
    else if (adadelta__config_from_saved_json(&cfg, adadelta_st_meta(f, "config"))) {
        rc = adadelta__fail(ADADELTA_EFORMAT, "%s: saved config is invalid: %s", path,
                            adadelta_last_error());
        goto done;
    } else if (saved_with_callback(adadelta_st_meta(f, "config"))) {
        rc = adadelta__fail(ADADELTA_EINVAL,
                            "%s: the state was saved with a callback learning rate, which a "
                            "file cannot hold: give the learning rate to resume (a config "
                            "override; the tools' --config)",
                            path);
        goto done;
    }
    if ((rc = adadelta_create(&cfg, &opt)) || (rc = add_saved_variables(opt, f, path)))
        goto done;
    rc = load_file(opt, f, path, 1);
done:
    adadelta_st_free(f);
    if (rc) {
        adadelta_destroy(opt);
        return rc;
    }
    *out = opt;
    return ADADELTA_OK;
}
