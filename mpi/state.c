/* state.c - save and load one state file for all ranks, through the
 * core's state tensors (state_tensors.h): the same bytes in both modes as
 * the single-process library writes. Gradient accumulators are rank-local:
 * the file holds their mean over the ranks (summed in rank order), the
 * accumulator of the mean gradients Keras would hold, up to rounding. */
#include "mpi_internal.h"

#include <stdlib.h>
#include <string.h>

/* Full copies, on the writers, of what a rank does not hold whole: the
 * sharded slot kinds, and the mean of the accumulators. */
typedef struct staging {
    float *slot[ADADELTA_N_SLOTS];
} staging;

static void free_staging(staging *s)
{
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        free(s->slot[k]);
}

static int slot_present(const adadelta_state_list *l, int k)
{
    for (int i = 0; i < l->n; i++)
        if (l->t[i].slot == k)
            return 1;
    return 0;
}

static int alloc_staging(adadelta_mpi *m, const adadelta_state_list *l, int writer, staging *s)
{
    memset(s, 0, sizeof *s);
    if (!writer || m->mode != ADADELTA_MPI_SHARDED)
        return 0;
    for (int k = 0; k < ADADELTA_N_SLOTS; k++)
        if (k != ADADELTA_SLOT_GRADIENT_ACCUMULATOR && slot_present(l, k) &&
            !(s->slot[k] = calloc((size_t)(m->total > 0 ? m->total : 1), sizeof(float))))
            return adadelta_mpi__fail(ADADELTA_ENOMEM,
                                      "adadelta_mpi_save: out of memory for a full copy of the "
                                      "state");
    return 0;
}

/* Every rank's part of slot kind k into one flat buffer at `root` (all
 * ranks when root < 0), then the list's tensors of that kind pointed at it. */
static void gather_slot(adadelta_mpi *m, adadelta_state_list *l, int k, float *full, int root)
{
    float *flat = full ? full : adadelta_mpi__begin_reduction(m);
    for (int i = 0; i < l->n; i++) {
        adadelta_state_tensor *t = &l->t[i];
        if (t->slot == k && t->end > t->begin)
            memcpy(flat + m->voff[t->var] + t->begin, t->data,
                   (size_t)(t->end - t->begin) * sizeof(float));
    }
    m->engine->gather_ranges(m, flat, root);
    for (int i = 0; full && i < l->n; i++)
        if (l->t[i].slot == k) {
            l->t[i].data = full + m->voff[l->t[i].var];
            l->t[i].begin = 0;
            l->t[i].end = l->t[i].numel;
        }
}

/* The accumulators' mean over ranks, in the list's accumulator tensors. */
static void mean_accumulators(adadelta_mpi *m, adadelta_state_list *l, int root)
{
    float *send = adadelta_mpi__begin_reduction(m);
    for (int i = 0; i < l->n; i++) {
        const adadelta_state_tensor *t = &l->t[i];
        if (t->slot == ADADELTA_SLOT_GRADIENT_ACCUMULATOR && t->numel)
            memcpy(send + m->voff[t->var], t->data, (size_t)t->numel * sizeof(float));
    }
    float *mean = adadelta_mpi__end_reduction(m);
    m->engine->gather_ranges(m, mean, root);
    for (int i = 0; i < l->n; i++)
        if (l->t[i].slot == ADADELTA_SLOT_GRADIENT_ACCUMULATOR)
            l->t[i].data = mean + m->voff[l->t[i].var];
}

/* root < 0: every rank writes (its own path), else root alone. */
static int save_impl(adadelta_mpi *m, const char *path, int root)
{
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc)
        return rc;
    int writer = root < 0 || m->rank == root;
    adadelta_state_list l;
    staging s;
    memset(&s, 0, sizeof s);
    rc = CORE->state_list(m->core, 1, &l);
    if (!rc && writer && !path)
        rc = adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_save: path is NULL");
    if (!rc)
        rc = alloc_staging(m, &l, writer, &s);
    if ((rc = adadelta_mpi__agree(m, rc))) {
        free_staging(&s);
        if (l.t)
            CORE->state_free(&l);
        return rc;
    }
    if (slot_present(&l, ADADELTA_SLOT_GRADIENT_ACCUMULATOR))
        mean_accumulators(m, &l, root);
    if (m->mode == ADADELTA_MPI_SHARDED)
        for (int k = 0; k < ADADELTA_N_SLOTS; k++)
            if (k != ADADELTA_SLOT_GRADIENT_ACCUMULATOR && slot_present(&l, k))
                gather_slot(m, &l, k, s.slot[k], root);
    if (writer)
        rc = CORE->state_write(m->core, &l, path);
    free_staging(&s);
    CORE->state_free(&l);
    return adadelta_mpi__agree(m, rc);
}

int adadelta_mpi_save(adadelta_mpi *m, const char *path)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_save: NULL");
    return save_impl(m, path, 0);
}

int adadelta_mpi_save_each(adadelta_mpi *m, const char *path)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_save_each: NULL");
    return save_impl(m, path, -1);
}

/* Reads and checks the file; nothing changes unless every rank could. */
static int read_checked(adadelta_mpi *m, const char *path, adadelta_st_file **f)
{
    *f = NULL;
    if (!path)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_load: path is NULL");
    int rc = adadelta_st_read(path, f);
    if (rc)
        return adadelta_mpi__fail(rc, "%s", adadelta_st_error());
    return CORE->state_check(m->core, *f, path);
}

int adadelta_mpi_load(adadelta_mpi *m, const char *path)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_load: NULL");
    int rc = adadelta_mpi__ensure_ready(m);
    if (rc)
        return rc;
    adadelta_st_file *f;
    adadelta_state_list l;
    memset(&l, 0, sizeof l);
    rc = read_checked(m, path, &f);
    if (!rc)
        rc = CORE->state_list(m->core, 1, &l);
    if (!(rc = adadelta_mpi__agree(m, rc)))
        CORE->state_import(m->core, f, path, &l);
    adadelta_st_free(f);
    if (l.t)
        CORE->state_free(&l);
    if (!rc && m->check)
        rc = adadelta_mpi__check_identical(m, "after load");
    return rc;
}
