/* agreement.c - that all ranks drive the same optimizer: a hash of the
 * config and of the variables (names, shapes, dtypes, order, exclusions), compared
 * across ranks before the first step; and the ranks that differ. */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_PRIME 0x100000001b3ULL

uint64_t adadelta_mpi__hash(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    /* Word at a time (the identity checksum runs over whole models). */
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * FNV_PRIME;
    }
    for (; n; n--, p++)
        h = (h ^ *p) * FNV_PRIME;
    return h;
}

static uint64_t hash_i64(uint64_t h, int64_t x) { return adadelta_mpi__hash(h, &x, sizeof x); }

static uint64_t config_hash(const adadelta_mpi *m, int *rc)
{
    const adadelta_config *c = adadelta_get_config(m->core);
    char *json = adadelta_config_to_json(c);
    if (!json) {
        *rc = ADADELTA_ENOMEM;
        return 0;
    }
    uint64_t h = adadelta_mpi__hash(ADADELTA_MPI_HASH_START, json, strlen(json));
    free(json);
    h = hash_i64(h, c->check_finite);
    h = hash_i64(h, c->learning_rate.kind);
    return hash_i64(h, m->mode);
}

/* The layer's own settings that shape the collectives: ranks that differ
 * would post different calls. */
static uint64_t settings_hash(const adadelta_mpi *m)
{
    uint64_t h = hash_i64(ADADELTA_MPI_HASH_START, m->bucket_bytes);
    h = hash_i64(h, m->compress);
    return hash_i64(h, m->chunk);
}

static uint64_t variables_hash(const adadelta_mpi *m)
{
    uint64_t h = ADADELTA_MPI_HASH_START;
    int n = adadelta_num_variables(m->core);
    h = hash_i64(h, n);
    for (int v = 0; v < n; v++) {
        const char *name = adadelta_variable_name(m->core, v);
        h = adadelta_mpi__hash(h, name, strlen(name) + 1);
        int ndim;
        int64_t shape[ADADELTA_MAX_DIMS];
        adadelta_variable_shape(m->core, v, &ndim, shape);
        h = hash_i64(h, ndim);
        for (int d = 0; d < ndim; d++)
            h = hash_i64(h, shape[d]);
        h = hash_i64(h, adadelta_uses_weight_decay(m->core, v));
        h = hash_i64(h, adadelta_variable_dtype(m->core, v));
    }
    return h;
}

void adadelta_mpi__differing_ranks(const adadelta_mpi *m, uint64_t mine, char *buf, size_t n)
{
    uint64_t root = mine;
    MPI_Bcast(&root, 1, MPI_UINT64_T, 0, m->comm);
    int differs = mine != root;
    int key = differs ? m->rank : m->size, first, count;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, m->comm);
    MPI_Allreduce(&differs, &count, 1, MPI_INT, MPI_SUM, m->comm);
    buf[0] = '\0';
    if (count == 1)
        snprintf(buf, n, "%d", first);
    else if (count > 1)
        snprintf(buf, n, "%d (%d in all)", first, count);
}

/* Which config keys differ from rank 0's, as the lowest differing rank
 * sees them (the same text on every rank). Collective; only on a mismatch. */
static void config_difference(const adadelta_mpi *m, char *out, size_t cap)
{
    char *mine = adadelta_config_to_json(adadelta_get_config(m->core));
    int len = mine ? (int)strlen(mine) + 1 : 1;
    MPI_Bcast(&len, 1, MPI_INT, 0, m->comm);
    char *root = malloc((size_t)len);
    if (root && m->rank == 0)
        memcpy(root, mine ? mine : "", (size_t)len);
    int ok = root != NULL, all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, m->comm);
    out[0] = '\0';
    if (all)
        MPI_Bcast(root, len, MPI_CHAR, 0, m->comm);
    int differs = all && mine && CORE->config_diff(mine, root, "rank 0", out, cap) > 0;
    int key = differs ? m->rank : m->size, first;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, m->comm);
    if (first < m->size)
        MPI_Bcast(out, (int)cap, MPI_CHAR, first, m->comm);
    else
        snprintf(out, cap, "check_finite, the kind of learning rate or the mode");
    free(root);
    free(mine);
}

int adadelta_mpi__check_agreement(adadelta_mpi *m)
{
    int rc = 0;
    uint64_t h[3], lo[3], hi[3];
    h[0] = config_hash(m, &rc);
    h[1] = variables_hash(m);
    h[2] = settings_hash(m);
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    MPI_Allreduce(h, lo, 3, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(h, hi, 3, MPI_UINT64_T, MPI_MAX, m->comm);
    static const char *const what[3] = {
        "the config (adadelta_config_to_json, check_finite, mode)",
        "the variables (number, names, shapes, dtypes, order, weight-decay exclusions)",
        "the layer's settings (bucket bytes, compression, chunk elements)"};
    for (int i = 0; i < 3; i++)
        if (lo[i] != hi[i]) {
            char ranks[200], keys[512] = "";
            adadelta_mpi__differing_ranks(m, h[i], ranks, sizeof ranks);
            if (i == 0)
                config_difference(m, keys, sizeof keys);
            return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                                      "ranks disagree on %s: rank %s differs from rank 0%s%s",
                                      what[i], ranks, *keys ? ": " : "", keys);
        }
    return 0;
}

int adadelta_mpi_check_agreement(adadelta_mpi *m)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_check_agreement: NULL");
    return adadelta_mpi__check_agreement(m);
}
