/* replay_common.c - options and input files of the replay drivers. */
#include "replay_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage_line(const char *prog)
{
    fprintf(stderr,
            "usage: %s --params FILE --grads FILE [--config FILE] [--out FILE] "
            "[--threads N] [--exclude-from-weight-decay NAMES] [--finalize] "
            "[--resume FILE]%s\n",
            prog,
            strstr(prog, "mpi") ? " [--mode replicated|sharded] [--overlap [--bucket-bytes B] "
                                  "[--order reverse|forward|shuffle]] [--verbose]"
                                : "");
}

const char *replay_prog = "adadelta-replay";

int replay_parse_args(int argc, char **argv, int with_mode, replay_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *slash = strrchr(argv[0], '/');
    replay_prog = slash ? slash + 1 : argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--params"))
            slot = &o->params;
        else if (!strcmp(a, "--grads"))
            slot = &o->grads;
        else if (!strcmp(a, "--config"))
            slot = &o->config;
        else if (!strcmp(a, "--out"))
            slot = &o->out;
        else if (!strcmp(a, "--resume"))
            slot = &o->resume;
        else if (!strcmp(a, "--exclude-from-weight-decay"))
            slot = &o->exclude;
        else if (with_mode && !strcmp(a, "--mode"))
            slot = &o->mode;
        else if (with_mode && !strcmp(a, "--order"))
            slot = &o->order;
        else if (with_mode && !strcmp(a, "--overlap")) {
            o->overlap = 1;
            continue;
        } else if (with_mode && !strcmp(a, "--verbose")) {
            o->verbose = 1;
            continue;
        } else if (with_mode && !strcmp(a, "--bucket-bytes")) {
            char *end;
            errno = 0;
            long long n = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || errno || *end || n < 1) {
                fprintf(stderr, "%s: --bucket-bytes needs an integer >= 1\n", replay_prog);
                return EXIT_USAGE;
            }
            o->bucket_bytes = n;
            i++;
            continue;
        }
        else if (!strcmp(a, "--finalize")) {
            o->finalize = 1;
            continue;
        } else if (!strcmp(a, "--threads")) {
            char *end;
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --threads needs a value\n", replay_prog);
                return EXIT_USAGE;
            }
            errno = 0;
            long n = strtol(argv[++i], &end, 10);
            if (errno || *end || n < 1 || n > 4096) {
                fprintf(stderr, "%s: --threads = '%s' is not an integer in [1, 4096]\n",
                        replay_prog, argv[i]);
                return EXIT_USAGE;
            }
            o->threads = (int)n;
            continue;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_line(argv[0]);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            replay_print_version(argv[0]);
            exit(0);
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", replay_prog, a);
            return EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", replay_prog, a);
            return EXIT_USAGE;
        }
        *slot = argv[++i];
    }
    if (!o->grads) {
        fprintf(stderr, "%s: --grads is required\n", replay_prog);
        return EXIT_USAGE;
    }
    if (!o->params && !o->resume) {
        fprintf(stderr, "%s: --params is required (or --resume)\n", replay_prog);
        return EXIT_USAGE;
    }
    if (o->order && strcmp(o->order, "reverse") && strcmp(o->order, "forward") &&
        strcmp(o->order, "shuffle")) {
        fprintf(stderr, "%s: --order = '%s' is not reverse, forward or shuffle\n", replay_prog,
                o->order);
        return EXIT_USAGE;
    }
    if ((o->order || o->bucket_bytes) && !o->overlap) {
        fprintf(stderr, "%s: --order and --bucket-bytes need --overlap\n", replay_prog);
        return EXIT_USAGE;
    }
    if (o->mode && strcmp(o->mode, "replicated") && strcmp(o->mode, "sharded")) {
        fprintf(stderr, "%s: --mode = '%s' is not replicated or sharded\n", replay_prog, o->mode);
        return EXIT_USAGE;
    }
    return 0;
}

void replay_print_version(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    printf("%s %s (kernel %s)\n", slash ? slash + 1 : argv0, adadelta_version_string(),
           adadelta_kernel());
}

int replay_exit_code(int status)
{
    switch (status) {
    case ADADELTA_OK:
        return 0;
    case ADADELTA_EIO:
    case ADADELTA_EFORMAT:
        return EXIT_BAD_FILE;
    case ADADELTA_EMISMATCH:
    case ADADELTA_ENOGRAD:
    case ADADELTA_ENOTFOUND:
    case ADADELTA_ENONFINITE:
        return EXIT_MISMATCH;
    case ADADELTA_EINVAL:
        return EXIT_USAGE;
    default:
        return 1;
    }
}

static int fail(int status)
{
    fprintf(stderr, "%s: %s\n", replay_prog, adadelta_last_error());
    return replay_exit_code(status);
}

/* A safetensors reader failure (its own message channel). */
static int st_fail(int status)
{
    fprintf(stderr, "%s: %s\n", replay_prog, adadelta_st_error());
    return replay_exit_code(status);
}

/* A config file: a regular file of JSON text (no NUL), at most 64 MiB. */
static int read_text(const char *path, char **out)
{
    int fd;
    size_t size;
    if (adadelta_st_open_regular(path, &fd, &size))
        return st_fail(ADADELTA_EIO);
    unsigned char *buf = NULL;
    int rc = size > (64u << 20) ? -1 : adadelta_st_read_fd(fd, path, size, &buf);
    close(fd);
    if (rc < 0 && !buf && size > (64u << 20)) {
        fprintf(stderr, "%s: %s: larger than 64 MiB, not a config\n", replay_prog, path);
        return EXIT_BAD_FILE;
    }
    if (rc)
        return st_fail(rc);
    char *s = realloc(buf, size + 1);
    if (!s) {
        free(buf);
        fprintf(stderr, "%s: %s: out of memory\n", replay_prog, path);
        return 1;
    }
    s[size] = '\0';
    if (strlen(s) != size) {
        free(s);
        fprintf(stderr, "%s: %s: holds a NUL byte, not JSON text\n", replay_prog, path);
        return EXIT_USAGE;
    }
    *out = s;
    return 0;
}

static const char *dtype_name(int dtype)
{
    return adadelta_st_dtype_name((adadelta_st_dtype)dtype);
}

/* Each --params tensor becomes a variable of its own dtype (F32, F64, F16
 * or BF16). */
static int add_params(const char *path, adadelta *opt)
{
    adadelta_st_file *f;
    int rc = adadelta_st_read(path, &f);
    if (rc)
        return st_fail(rc);
    for (int i = 0; i < f->n && !rc; i++) {
        const adadelta_st_tensor *t = &f->t[i];
        if (t->dtype == ADADELTA_ST_I64) {
            fprintf(stderr, "%s: %s: variable '%s' is %s (variables are F32, F64, F16 or BF16)\n",
                    replay_prog, path, t->name, adadelta_st_dtype_name(t->dtype));
            rc = ADADELTA_EFORMAT;
            break;
        }
        void *data = malloc(t->nbytes ? t->nbytes : 8);
        if (!data) {
            fprintf(stderr, "%s: %s: out of memory\n", replay_prog, path);
            rc = ADADELTA_ENOMEM;
            break;
        }
        if (t->nbytes)
            memcpy(data, t->data, t->nbytes);
        int v = adadelta_add_variable(opt, t->name, (adadelta_dtype)t->dtype, data, t->ndim,
                                      t->shape);
        if (v < 0) {
            free(data);
            fprintf(stderr, "%s: %s: %s\n", replay_prog, path, adadelta_last_error());
            rc = ADADELTA_EFORMAT;
        }
    }
    adadelta_st_free(f);
    return rc ? replay_exit_code(rc) : 0;
}

int replay_make_optimizer(const replay_opts *o, adadelta **out)
{
    *out = NULL;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    int rc;
    if (o->config) {
        char *text = NULL;
        if ((rc = read_text(o->config, &text)))
            return rc;
        rc = adadelta_config_from_json(&cfg, text);
        free(text);
        if (!rc && *adadelta_last_warning())
            fprintf(stderr, "%s: warning: %s: %s\n", replay_prog, o->config,
                    adadelta_last_warning());
        if (rc) {
            fprintf(stderr, "%s: %s: %s\n", replay_prog, o->config, adadelta_last_error());
            return EXIT_USAGE;
        }
    }
    adadelta *opt = NULL;
    if (o->resume) {
        if ((rc = adadelta_create_from_state(o->resume, o->config ? &cfg : NULL, &opt)))
            return fail(rc);
        if (*adadelta_load_report(opt))
            fprintf(stderr, "%s: note: %s\n", replay_prog, adadelta_load_report(opt));
    } else {
        if ((rc = adadelta_create(&cfg, &opt)))
            return fail(rc);
        if ((rc = add_params(o->params, opt))) {
            replay_destroy_optimizer(o, opt);
            return rc;
        }
    }
    if (o->threads && (rc = adadelta_set_threads(opt, o->threads)))
        goto failed;
    if (o->exclude) {
        char *copy = strdup(o->exclude);
        const char *names[256];
        int n = 0;
        char *tok = NULL;
        for (tok = copy ? strtok(copy, ",") : NULL; tok && n < 256; tok = strtok(NULL, ","))
            if (*tok)
                names[n++] = tok;
        if (!copy || tok) {
            fprintf(stderr, "%s: --exclude-from-weight-decay: %s\n", replay_prog,
                    copy ? "more than 256 names" : "out of memory");
            free(copy);
            replay_destroy_optimizer(o, opt);
            return EXIT_USAGE;
        }
        rc = adadelta_exclude_from_weight_decay(opt, NULL, 0, names, n);
        free(copy);
        if (rc) {
            fprintf(stderr, "%s: --exclude-from-weight-decay: %s\n", replay_prog, adadelta_last_error());
            replay_destroy_optimizer(o, opt);
            return EXIT_USAGE;
        }
    }
    *out = opt;
    return 0;
failed:
    fprintf(stderr, "%s: %s\n", replay_prog, adadelta_last_error());
    replay_destroy_optimizer(o, opt);
    return replay_exit_code(rc);
}

void replay_destroy_optimizer(const replay_opts *o, adadelta *opt)
{
    /* --params variables were malloc'ed by add_params; --resume ones belong
     * to the optimizer. */
    if (opt && !o->resume)
        for (int v = 0; v < adadelta_num_variables(opt); v++)
            free(adadelta_variable_data(opt, v));
    adadelta_destroy(opt);
}

void replay_free_grads(replay_grads *g)
{
    free(g->data);
    free(g->table);
    memset(g, 0, sizeof *g);
}

/* "grads/<k>/<name>": k and the name, or -1. */
static long parse_grad_name(const char *s, const char **name)
{
    if (strncmp(s, "grads/", 6) != 0)
        return -1;
    s += 6;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '/'))
        return -1; /* one spelling per call: no sign, no leading zero */
    char *end;
    errno = 0;
    long k = strtol(s, &end, 10);
    if (errno || *end != '/' || k > 10000000)
        return -1;
    *name = end + 1;
    return k;
}

int replay_load_grads(const char *path, const adadelta *opt, replay_grads *g)
{
    memset(g, 0, sizeof *g);
    adadelta_st_file *f;
    int rc = adadelta_st_read(path, &f);
    if (rc)
        return st_fail(rc);
    int n_vars = adadelta_num_variables(opt);
    long calls = 0;
    for (int i = 0; i < f->n; i++) {
        const adadelta_st_tensor *t = &f->t[i];
        const char *name;
        long k = parse_grad_name(t->name, &name);
        if (k < 0) {
            fprintf(stderr, "%s: %s: tensor '%s' is not named grads/<call>/<variable>\n", replay_prog,
                    path, t->name);
            adadelta_st_free(f);
            return EXIT_BAD_FILE;
        }
        int v = adadelta_find_variable(opt, name);
        int ndim;
        int64_t shape[ADADELTA_MAX_DIMS];
        if (v < 0) {
            fprintf(stderr, "%s: %s: tensor '%s' is a gradient for unknown variable '%s'\n", replay_prog,
                    path, t->name, name);
            adadelta_st_free(f);
            return EXIT_MISMATCH;
        }
        adadelta_variable_shape(opt, v, &ndim, shape);
        int dtype = adadelta_variable_dtype(opt, v);
        if ((int)t->dtype != dtype) {
            fprintf(stderr, "%s: %s: tensor '%s' is %s, variable '%s' is %s (a gradient has "
                    "its variable's dtype)\n",
                    replay_prog, path, t->name, adadelta_st_dtype_name(t->dtype), name,
                    dtype_name(dtype));
            adadelta_st_free(f);
            return EXIT_MISMATCH;
        }
        int same = t->ndim == ndim;
        for (int d = 0; same && d < ndim; d++)
            same = t->shape[d] == shape[d];
        if (!same) {
            fprintf(stderr,
                    "%s: %s: tensor '%s' has another shape or dtype than variable '%s'\n", replay_prog,
                    path, t->name, name);
            adadelta_st_free(f);
            return EXIT_MISMATCH;
        }
        if (k + 1 > calls)
            calls = k + 1;
    }
    if (calls > f->n) {
        /* Fewer tensors than calls: some call has no gradient at all. Say
         * which before allocating a calls x variables table. */
        unsigned char *seen = calloc((size_t)f->n + 1, 1);
        long first = 0;
        if (seen) {
            for (int i = 0; i < f->n; i++) {
                const char *name;
                long k = parse_grad_name(f->t[i].name, &name);
                if (k <= f->n)
                    seen[k] = 1;
            }
            while (seen[first])
                first++;
            free(seen);
        }
        fprintf(stderr, "%s: %s: call %ld has no gradient for any variable\n", replay_prog, path, first);
        adadelta_st_free(f);
        return EXIT_MISMATCH;
    }
    /* Each tensor 64-byte aligned (a float64 one may sit at any offset). */
    size_t data_bytes = 0;
    for (int i = 0; i < f->n; i++)
        data_bytes += (f->t[i].nbytes + 63) & ~(size_t)63;
    g->calls = (int)calls;
    g->n_vars = n_vars;
    g->data = aligned_alloc(64, data_bytes ? data_bytes : 64);
    g->table = calloc((size_t)calls * (size_t)n_vars + 1, sizeof *g->table);
    if (!g->data || !g->table) {
        adadelta_st_free(f);
        replay_free_grads(g);
        fprintf(stderr, "%s: %s: out of memory\n", replay_prog, path);
        return 1;
    }
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const adadelta_st_tensor *t = &f->t[i];
        const char *name;
        long k = parse_grad_name(t->name, &name);
        int v = adadelta_find_variable(opt, name);
        if (g->table[k * n_vars + v]) {
            fprintf(stderr, "%s: %s: tensor '%s' is a second gradient for '%s' in call %ld\n", replay_prog,
                    path, t->name, name, k);
            adadelta_st_free(f);
            replay_free_grads(g);
            return EXIT_BAD_FILE;
        }
        if (t->nbytes)
            memcpy(g->data + at, t->data, t->nbytes);
        g->table[k * n_vars + v] = g->data + at;
        at += (t->nbytes + 63) & ~(size_t)63;
    }
    adadelta_st_free(f);
    for (int k = 0; k < g->calls; k++) {
        int any = 0;
        for (int v = 0; v < n_vars; v++)
            any |= g->table[k * n_vars + v] != NULL;
        if (!any) {
            fprintf(stderr, "%s: %s: call %d has no gradient for any variable\n", replay_prog, path, k);
            replay_free_grads(g);
            return EXIT_MISMATCH;
        }
    }
    return 0;
}
