/* create.c - creating, wrapping and destroying an adadelta_mpi, and its
 * local calls: variables, exclusions, threads, the getters. */
#include "mpi_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int64_t adadelta_mpi__env_int(const char *name, int64_t fallback, int64_t lo, int64_t hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    return errno || *end || x < lo || x > hi ? fallback : (int64_t)x;
}

/* The MPI calls' chunk: their int counts and displacements must hold
 * R times a chunk; ADADELTA_MPI_CHUNK_ELEMENTS may lower it (tests). */
static int64_t chunk_elements(int size)
{
    int64_t limit = (INT_MAX / (size > 1 ? size : 2)) & ~(int64_t)15;
    return adadelta_mpi__env_int("ADADELTA_MPI_CHUNK_ELEMENTS", limit, 1, limit);
}

static int wrap(MPI_Comm comm, adadelta *core, adadelta_mpi_mode mode, int local_rc,
                adadelta_mpi **out)
{
    adadelta_mpi *m = calloc(1, sizeof *m);
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int rc = local_rc;
    if (!rc && !CORE)
        rc = adadelta_mpi__fail(ADADELTA_EINVAL, "libadadelta_mpi: no private interface");
    if (!rc && !m)
        rc = adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi_create: out of memory");
    if (!rc && mode != ADADELTA_MPI_REPLICATED && mode != ADADELTA_MPI_SHARDED)
        rc = adadelta_mpi__fail(ADADELTA_EINVAL,
                                "adadelta_mpi_create: mode %d is not "
                                "ADADELTA_MPI_REPLICATED or ADADELTA_MPI_SHARDED",
                                (int)mode);
    /* The mode must be the same everywhere. */
    int mm[2] = {(int)mode, -(int)mode}, g[2];
    MPI_Allreduce(mm, g, 2, MPI_INT, MPI_MIN, comm);
    if (!rc && g[0] != -g[1])
        rc = adadelta_mpi__fail(ADADELTA_EMISMATCH,
                                "adadelta_mpi_create: ranks disagree on the mode "
                                "(replicated on some, sharded on others)");
    rc = adadelta_mpi__agree_comm(comm, rc);
    if (rc) {
        free(m);
        return rc;
    }
    MPI_Comm_dup(comm, &m->comm);
    m->rank = rank;
    m->size = size;
    m->core = core;
    m->mode = mode;
    CORE->set_wrapped(core, 1);
    const char *env = getenv("ADADELTA_MPI_CHECK");
    m->check = env && *env && strcmp(env, "0") != 0;
    env = getenv("ADADELTA_MPI_INITIAL_CHECK");
    m->initial_check = !(env && !strcmp(env, "0"));
    env = getenv("ADADELTA_MPI_SHM");
    m->shm_wanted = env && !strcmp(env, "0") ? 0 : env && !strcmp(env, "1") ? 1 : -1;
    m->bucket_bytes = ADADELTA_MPI_DEFAULT_BUCKET_BYTES;
    m->chunk = chunk_elements(size);
    env = getenv("ADADELTA_MPI_COMPRESSION");
    m->compress = env && !strcmp(env, "bf16")  ? ADADELTA_MPI_COMPRESS_BF16
                  : env && !strcmp(env, "f16") ? ADADELTA_MPI_COMPRESS_F16
                                               : ADADELTA_MPI_COMPRESS_NONE;
    env = getenv("ADADELTA_MPI_TIMEOUT");
    char *end = NULL;
    double t = env ? strtod(env, &end) : 0;
    m->timeout = env && end != env && *end == '\0' && t >= 0 ? t : ADADELTA_MPI_DEFAULT_TIMEOUT;
    *out = m;
    return 0;
}

int adadelta_mpi_create(MPI_Comm comm, const adadelta_config *cfg, adadelta_mpi_mode mode,
                        adadelta_mpi **out)
{
    adadelta_mpi__clear_error();
    if (!out)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_create: out is NULL");
    *out = NULL;
    adadelta *core = NULL;
    int rc = adadelta_create(cfg, &core);
    rc = wrap(comm, core, mode, rc, out);
    if (rc)
        adadelta_destroy(core);
    return rc;
}

int adadelta_mpi_wrap(MPI_Comm comm, adadelta *core, adadelta_mpi_mode mode, adadelta_mpi **out)
{
    adadelta_mpi__clear_error();
    int rc = 0;
    if (!out)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_wrap: out is NULL");
    *out = NULL;
    if (!core)
        rc = adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_wrap: core is NULL");
    return wrap(comm, core, mode, rc, out);
}

void adadelta_mpi_destroy(adadelta_mpi *m)
{
    if (!m)
        return;
    adadelta_destroy(m->core);
    adadelta_mpi__free_plan(m);
    MPI_Comm_free(&m->comm);
    free(m);
}

const adadelta *adadelta_mpi_core(const adadelta_mpi *m) { return m ? m->core : NULL; }

adadelta_mpi_mode adadelta_mpi_get_mode(const adadelta_mpi *m)
{
    return m ? m->mode : ADADELTA_MPI_REPLICATED;
}

int adadelta_mpi_set_threads(adadelta_mpi *m, int threads)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_threads: NULL");
    return adadelta_set_threads(m->core, threads);
}

void adadelta_mpi_set_check_identical(adadelta_mpi *m, int on)
{
    if (!m)
        return;
    m->check = on != 0; /* a wish: the checks run where any rank wishes */
}

int adadelta_mpi_set_checkpoint_buffer(adadelta_mpi *m, size_t bytes)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_checkpoint_buffer: NULL");
    return adadelta_set_checkpoint_buffer(m->core, bytes);
}

void adadelta_mpi_set_initial_check(adadelta_mpi *m, int on)
{
    if (!m)
        return;
    m->initial_check = on != 0; /* a wish, as above */
}

int adadelta_mpi_add_variable(adadelta_mpi *m, const char *name, adadelta_dtype dtype, void *data,
                              int ndim, const int64_t *shape)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_add_variable: NULL");
    if (m->ready)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_add_variable '%s': variables are fixed "
                                  "after the first collective step",
                                  name ? name : "(null)");
    return adadelta_add_variable(m->core, name, dtype, data, ndim, shape);
}

int adadelta_mpi_exclude_from_weight_decay(adadelta_mpi *m, const int *indices, int n_indices,
                                           const char *const *names, int n_names)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_exclude_from_weight_decay: NULL");
    if (m->ready) /* the ranks checked their exclusions agree: keep it so */
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_exclude_from_weight_decay: only before the "
                                  "first apply");
    return adadelta_exclude_from_weight_decay(m->core, indices, n_indices, names, n_names);
}

int adadelta_mpi_wrap_fortran(int comm, adadelta *core, adadelta_mpi_mode mode, adadelta_mpi **out)
{
    return adadelta_mpi_wrap(MPI_Comm_f2c((MPI_Fint)comm), core, mode, out);
}

/* A hash of a learning rate (through the JSON of a config holding it) and
 * whether it is valid, agreed over the ranks before any rank changes. */
int adadelta_mpi_set_learning_rate(adadelta_mpi *m, const adadelta_learning_rate *lr)
{
    adadelta_mpi__clear_error();
    if (!m || !lr)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_learning_rate: NULL argument");
    adadelta_config c = *adadelta_get_config(m->core);
    c.learning_rate = *lr;
    int rc = adadelta_config_validate(&c);
    uint64_t h[2] = {0, 0};
    char *json = rc ? NULL : adadelta_config_to_json(&c);
    if (!rc && !json)
        rc = ADADELTA_ENOMEM;
    if (json) {
        h[0] = adadelta_mpi__hash(ADADELTA_MPI_HASH_START, json, strlen(json));
        h[0] = adadelta_mpi__hash(h[0], &lr->kind, sizeof lr->kind);
        h[1] = ~h[0];
        free(json);
    }
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    uint64_t lo[2];
    MPI_Allreduce(h, lo, 2, MPI_UINT64_T, MPI_MIN, m->comm);
    if (lo[0] != ~lo[1])
        return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                                  "adadelta_mpi_set_learning_rate: ranks asked for different "
                                  "learning rates; none changed");
    return CORE->set_learning_rate(m->core, lr);
}

int adadelta_mpi_set_learning_rate_json(adadelta_mpi *m, const char *json)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_learning_rate_json: NULL");
    adadelta_learning_rate lr;
    int rc = json ? CORE->learning_rate_from_json(json, &lr)
                  : adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_learning_rate_json: "
                                       "json is NULL");
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    return adadelta_mpi_set_learning_rate(m, &lr);
}

int adadelta_mpi_set_learning_rate_callback(adadelta_mpi *m, adadelta_lr_callback fn,
                                            void *user_data)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_learning_rate_callback: NULL");
    adadelta_learning_rate lr;
    adadelta_lr_from_callback(&lr, fn, user_data);
    return CORE->set_learning_rate(m->core, &lr);
}

int adadelta_mpi_set_bucket_bytes(adadelta_mpi *m, int64_t bytes)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_bucket_bytes: NULL");
    if (m->ready)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_set_bucket_bytes: only before the first step");
    if (bytes < 1)
        return adadelta_mpi__fail(ADADELTA_EINVAL,
                                  "adadelta_mpi_set_bucket_bytes: bytes = %lld must be >= 1",
                                  (long long)bytes);
    m->bucket_bytes = bytes;
    return 0;
}

int adadelta_mpi_set_compression(adadelta_mpi *m, adadelta_mpi_compression compression)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_compression: NULL");
    if (m->ready)
        return adadelta_mpi__fail(ADADELTA_ESTATE,
                                  "adadelta_mpi_set_compression: only before the first step");
    if (compression != ADADELTA_MPI_COMPRESS_NONE && compression != ADADELTA_MPI_COMPRESS_BF16 &&
        compression != ADADELTA_MPI_COMPRESS_F16)
        return adadelta_mpi__fail(ADADELTA_EINVAL,
                                  "adadelta_mpi_set_compression: %d is not "
                                  "ADADELTA_MPI_COMPRESS_NONE (0), _BF16 (1) or _F16 (2)",
                                  (int)compression);
    m->compress = compression;
    return 0;
}

int adadelta_mpi_set_timeout(adadelta_mpi *m, double seconds)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_set_timeout: NULL");
    if (!(seconds >= 0) || seconds > 1e9)
        return adadelta_mpi__fail(ADADELTA_EINVAL,
                                  "adadelta_mpi_set_timeout: seconds = %g is outside [0, 1e9]",
                                  seconds);
    m->timeout = seconds;
    return 0;
}

const char *adadelta_mpi_engine(const adadelta_mpi *m)
{
    return m && m->engine ? m->engine->name : "none";
}

unsigned long adadelta_mpi_agreements(const adadelta_mpi *m) { return m ? m->small_collectives : 0; }

size_t adadelta_mpi_state_bytes(const adadelta_mpi *m)
{
    adadelta_state_list l;
    if (!m || CORE->state_list(m->core, 1, &l))
        return 0;
    size_t bytes = 0;
    for (int i = 0; i < l.n; i++)
        if (l.t[i].role == ADADELTA_TENSOR_SLOT)
            bytes += (size_t)(l.t[i].end - l.t[i].begin) * adadelta_st_dtype_size(l.t[i].dtype);
    CORE->state_free(&l);
    return bytes;
}
