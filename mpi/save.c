/* save.c - every rank writes its part of one state file, the same bytes in
 * both modes and at any rank count as the single-process library writes
 * (docs/state-format.md).
 *
 * The file's tensors of one kind (the variables, each slot kind) follow
 * each other in variable order, as the flat layout does, so a rank's flat
 * range of a kind is one byte range of the file. Rank r writes its range of
 * every kind straight from memory (the variables and replicated slots every
 * rank holds, the sharded slots it owns, its range of the accumulators'
 * mean) and the CRC of what it wrote; rank 0 combines the CRCs, writes the
 * header last and renames. No rank reads what another wrote, none holds a
 * copy of the state.
 *
 * When a rank cannot open the file rank 0 created (a folder that is not
 * shared between the nodes), or ADADELTA_MPI_CHECKPOINT=root asks for it
 * (file systems slow with concurrent writers), rank 0 writes the whole
 * file, receiving the parts it lacks a buffer at a time;
 * adadelta_mpi_save_each has every rank write a whole file of its own the
 * same way. */
#include "mpi_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One save: the tensors (file order), the file plan, the output. */
typedef struct save {
    adadelta_mpi *m;
    adadelta_state_list l;
    adadelta_st_layout lay;
    const char *path;
    int fd;
    char *tmp;                /* the temporary file (rank 0, or every writer) */
    adadelta_st_piece *pieces;
    int n_pieces;
    uint16_t *acc16;          /* the 16-bit accumulators' mean */
} save;

static int slot_sharded(const adadelta_mpi *m, const adadelta_state_tensor *t)
{
    return t->role == ADADELTA_TENSOR_SLOT && m->mode == ADADELTA_MPI_SHARDED &&
           t->slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR;
}

/* The file holds the accumulators' mean over the ranks (summed in rank
 * order): the accumulator of the mean gradients Keras would hold. Each
 * rank has it on its own range at least; the list's accumulators point
 * there. A 16-bit accumulator is summed as float32 and its mean rounded to
 * its dtype into acc16 (acc16_bytes of them). */
static int kind16(adadelta_st_dtype d)
{
    return d == ADADELTA_ST_F16    ? ADADELTA_MPI_COMPRESS_F16
           : d == ADADELTA_ST_BF16 ? ADADELTA_MPI_COMPRESS_BF16
                                   : 0;
}

static size_t acc16_bytes(const adadelta_state_list *l)
{
    size_t n = 0;
    for (int i = 0; i < l->n; i++)
        if (l->t[i].slot == ADADELTA_SLOT_GRADIENT_ACCUMULATOR && kind16(l->t[i].dtype))
            n += (size_t)l->t[i].numel * 2;
    return n;
}

static void point_at_mean(adadelta_mpi *m, adadelta_state_list *l, uint16_t *acc16)
{
    int any = 0;
    for (int i = 0; i < l->n; i++)
        any |= l->t[i].slot == ADADELTA_SLOT_GRADIENT_ACCUMULATOR;
    if (!any)
        return;
    float *send = adadelta_mpi__begin_reduction(m);
    for (int i = 0; i < l->n; i++) {
        const adadelta_state_tensor *t = &l->t[i];
        if (t->slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR || !t->numel)
            continue;
        if (kind16(t->dtype))
            adadelta_mpi__unpack16(kind16(t->dtype), t->data, send + m->voff[t->var], t->numel);
        else
            memcpy(send + m->voff[t->var], t->data,
                   (size_t)t->numel * adadelta_st_dtype_size(t->dtype));
    }
    float *mean = adadelta_mpi__end_reduction(m);
    for (int i = 0; i < l->n; i++) {
        adadelta_state_tensor *t = &l->t[i];
        if (t->slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR)
            continue;
        if (kind16(t->dtype)) {
            adadelta_mpi__pack16(kind16(t->dtype), mean + m->voff[t->var], acc16, t->numel);
            t->data = acc16;
            acc16 += t->numel;
        } else {
            t->data = mean + m->voff[t->var];
        }
    }
}

/* Whether this rank holds all of tensor t (else only its own range). */
static int held_whole(const adadelta_mpi *m, const adadelta_state_tensor *t)
{
    return t->role != ADADELTA_TENSOR_SLOT ||
           (!slot_sharded(m, t) && t->slot != ADADELTA_SLOT_GRADIENT_ACCUMULATOR);
}

/* Rank r's range of a variable-sized tensor, as element indices. */
static void range_of(const adadelta_mpi *m, int r, const adadelta_state_tensor *t, int64_t *b0,
                     int64_t *b1)
{
    int64_t lo, hi;
    if (adadelta_mpi__portion(m, r, m->voff[t->var], m->voff[t->var + 1], &lo, &hi)) {
        adadelta_mpi__elements_of(m, t->var, lo, hi, b0, b1);
    } else {
        *b0 = *b1 = 0;
    }
}

/* The list cut to what this rank writes of a shared file: its range of
 * every variable-sized tensor, the counters on rank 0. */
static void cut_to_own_parts(const adadelta_mpi *m, adadelta_state_list *l)
{
    for (int i = 0; i < l->n; i++) {
        adadelta_state_tensor *t = &l->t[i];
        if (t->role == ADADELTA_TENSOR_COUNTER) {
            if (m->rank != 0)
                t->end = t->begin;
            continue;
        }
        int64_t b0, b1;
        range_of(m, m->rank, t, &b0, &b1);
        /* a sharded slot is held on this range only: data is at b0 already */
        if (t->begin == 0 && t->end == t->numel)
            t->data = (char *)t->data + (size_t)b0 * adadelta_st_dtype_size(t->dtype);
        t->begin = b0;
        t->end = b1;
    }
}

/* ------------------------------------------------------------ shared file */

/* A token rank 0 writes where the header will go, so that a rank opening
 * the temporary file by name knows it is rank 0's file (and not a leftover
 * of the same name in a folder of another node). */
typedef struct token {
    unsigned long long a, b;
} token;

static token make_token(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    token k = {(unsigned long long)t.tv_sec * 1000000007ull ^ (unsigned long long)t.tv_nsec,
               (unsigned long long)getpid() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&k};
    return k;
}

/* Rank 0 creates the temporary file and tells the others its name; each
 * opens it. 1 in *shared when every rank could (and none asked for rank 0
 * alone). */
static int open_shared(save *s, int *shared)
{
    adadelta_mpi *m = s->m;
    int rc = 0, len = 0;
    s->fd = -1;
    const char *env = getenv("ADADELTA_MPI_CHECKPOINT");
    int root_alone = env && !strcmp(env, "root"), any_root_alone;
    MPI_Allreduce(&root_alone, &any_root_alone, 1, MPI_INT, MPI_MAX, m->comm);
    token tok = make_token();
    if (m->rank == 0) {
        rc = adadelta_st_create_temp(s->path, &s->fd, &s->tmp);
        if (!rc)
            rc = adadelta_st_pwrite_all(s->fd, &tok, sizeof tok, 0, s->path);
        if (rc)
            adadelta_mpi__fail(rc, "%s", adadelta_st_error());
        else
            len = (int)strlen(s->tmp) + 1;
    }
    MPI_Bcast(&len, 1, MPI_INT, 0, m->comm);
    if (!len) {
        *shared = 0;
        return adadelta_mpi__agree(m, rc);
    }
    char *name = m->rank == 0 ? s->tmp : malloc((size_t)len);
    int have = name != NULL, all;
    MPI_Allreduce(&have, &all, 1, MPI_INT, MPI_MIN, m->comm);
    if (!all) {
        if (m->rank != 0)
            free(name);
        rc = have ? 0 : adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi_save: out of memory");
        return adadelta_mpi__agree(m, rc); /* rank 0's temporary file goes at the end */
    }
    MPI_Bcast(name, len, MPI_CHAR, 0, m->comm);
    MPI_Bcast(&tok, (int)sizeof tok, MPI_BYTE, 0, m->comm);
    if (m->rank != 0) {
        s->fd = any_root_alone ? -1 : open(name, O_RDWR | O_CLOEXEC);
        token seen;
        if (s->fd >= 0 && (pread(s->fd, &seen, sizeof seen, 0) != (ssize_t)sizeof seen ||
                           memcmp(&seen, &tok, sizeof tok) != 0)) {
            close(s->fd); /* a file of that name, but not rank 0's */
            s->fd = -1;
        }
        free(name);
    }
    int opened = s->fd >= 0;
    MPI_Allreduce(&opened, &all, 1, MPI_INT, MPI_MIN, m->comm);
    *shared = all;
    if (!all && m->rank != 0 && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    return 0;
}

/* Every rank's pieces to rank 0 (which appends them to its own). */
static int gather_pieces(save *s)
{
    adadelta_mpi *m = s->m;
    int bytes = s->n_pieces * (int)sizeof *s->pieces;
    int *counts = m->rank == 0 ? calloc((size_t)m->size, sizeof *counts) : NULL;
    int *displs = m->rank == 0 ? calloc((size_t)m->size, sizeof *displs) : NULL;
    int ok = m->rank != 0 || (counts && displs);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, m->comm);
    if (!ok) {
        free(counts);
        free(displs);
        return adadelta_mpi__agree(m, m->rank ? 0
                                              : adadelta_mpi__fail(ADADELTA_ENOMEM,
                                                                   "adadelta_mpi_save: out of "
                                                                   "memory"));
    }
    MPI_Gather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, 0, m->comm);
    adadelta_st_piece *all = NULL;
    int total = 0;
    if (m->rank == 0) {
        for (int r = 0; r < m->size; r++) {
            displs[r] = total;
            total += counts[r];
        }
        /* room for the prefix's piece, which the writer adds */
        all = malloc((size_t)total + sizeof *all);
        ok = all != NULL;
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, m->comm);
    if (ok)
        MPI_Gatherv(s->pieces, bytes, MPI_BYTE, all, counts, displs, MPI_BYTE, 0, m->comm);
    free(counts);
    free(displs);
    if (!ok)
        return adadelta_mpi__agree(m, m->rank ? 0
                                              : adadelta_mpi__fail(ADADELTA_ENOMEM,
                                                                   "adadelta_mpi_save: out of "
                                                                   "memory"));
    if (m->rank == 0) {
        free(s->pieces);
        s->pieces = all;
        s->n_pieces = total / (int)sizeof *all;
    }
    return 0;
}

/* The parallel save: every rank writes its parts, flushes them; then rank
 * 0 writes the header with the combined checksum and renames. */
static int save_shared(save *s)
{
    adadelta_mpi *m = s->m;
    cut_to_own_parts(m, &s->l);
    int rc = CORE->state_write_parts(&s->l, &s->lay, s->fd, s->path, s->pieces, &s->n_pieces);
    /* each writer's data must be durable before the rename (rank 0's own
     * is flushed by its commit) */
    if (!rc && m->rank != 0 && fsync(s->fd) != 0)
        rc = adadelta_mpi__fail(ADADELTA_EIO, "%s: fsync failed: %s", s->path, strerror(errno));
    if (m->rank != 0) {
        if (close(s->fd) != 0 && !rc)
            rc = adadelta_mpi__fail(ADADELTA_EIO, "%s: close failed: %s", s->path,
                                    strerror(errno));
        s->fd = -1;
    }
    if ((rc = adadelta_mpi__agree(m, rc)) || (rc = gather_pieces(s)))
        return rc;
    if (m->rank == 0) {
        rc = CORE->state_write_prefix(&s->lay, s->fd, s->path, s->pieces, s->n_pieces);
        if (!rc) {
            rc = adadelta_st_commit(s->fd, s->tmp, s->path);
            if (rc)
                adadelta_mpi__fail(rc, "%s", adadelta_st_error());
            s->fd = -1;
            s->tmp = NULL;
        }
    }
    return adadelta_mpi__agree(m, rc);
}

/* ------------------------------------------------------------ whole files */

/* Writes n bytes at `at` and adds them to the writer's one running piece
 * (whole files are written in file order). A failed write is remembered
 * and the rest skipped, while the ranks go on moving data together. */
static void write_in_order(save *s, const void *data, size_t n, size_t at, int *rc)
{
    if (*rc || !n)
        return;
    if ((*rc = adadelta_st_pwrite_all(s->fd, data, n, at, s->path))) {
        adadelta_mpi__fail(*rc, "%s", adadelta_st_error());
        return;
    }
    adadelta_st_piece *p = &s->pieces[0];
    if (!s->n_pieces) {
        *p = (adadelta_st_piece){at, 0, 0};
        s->n_pieces = 1;
    }
    p->crc = adadelta__crc32c_combine(p->crc, adadelta__crc32c(0, data, n), n);
    p->length += n;
}

/* The parts of tensor t that only their owners hold, to the writers: all
 * ranks (each_writes) or rank 0, a buffer at a time. */
static void move_owned(save *s, const adadelta_state_tensor *t, size_t at, int each_writes,
                       unsigned char *buf, size_t cap, int *rc)
{
    adadelta_mpi *m = s->m;
    size_t esize = adadelta_st_dtype_size(t->dtype);
    int writer = each_writes || m->rank == 0;
    for (int r = 0; r < m->size; r++) {
        int64_t b0, b1;
        range_of(m, r, t, &b0, &b1);
        size_t len = (size_t)(b1 - b0) * esize, off = (size_t)b0 * esize;
        /* the owner's data, as the list points at it: element t->begin */
        const unsigned char *mine =
            r == m->rank ? (const unsigned char *)t->data + off - (size_t)t->begin * esize
                         : NULL;
        for (size_t done = 0; done < len; done += cap) {
            size_t n = len - done < cap ? len - done : cap;
            const unsigned char *chunk = mine ? mine + done : buf;
            if (each_writes)
                MPI_Bcast(mine ? (void *)(mine + done) : buf, (int)n, MPI_BYTE, r, m->comm);
            else if (r != 0 && m->rank == r)
                MPI_Send(mine + done, (int)n, MPI_BYTE, 0, 0, m->comm);
            else if (r != 0 && m->rank == 0)
                MPI_Recv(buf, (int)n, MPI_BYTE, r, 0, m->comm, MPI_STATUS_IGNORE);
            if (writer)
                write_in_order(s, chunk, n, at + off + done, rc);
        }
    }
}

/* Writers (rank 0, or each_writes: every rank, to its own path) write a
 * whole file: what they hold from memory, the owned parts as they come. */
static int save_whole(save *s, int each_writes)
{
    adadelta_mpi *m = s->m;
    int writer = each_writes || m->rank == 0, rc = 0;
    /* the ranks cut the parts alike: the smallest buffer of any */
    unsigned long long cap_all = adadelta_checkpoint_buffer(m->core);
    MPI_Allreduce(MPI_IN_PLACE, &cap_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, m->comm);
    size_t cap = (size_t)cap_all;
    unsigned char *buf = malloc(cap);
    if (!buf)
        rc = adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi_save: out of memory for a "
                                                 "%zu-byte buffer", cap);
    if (!rc && each_writes && (rc = adadelta_st_create_temp(s->path, &s->fd, &s->tmp)))
        adadelta_mpi__fail(rc, "%s", adadelta_st_error());
    if ((rc = adadelta_mpi__agree(m, rc))) {
        free(buf);
        return rc;
    }
    for (int i = 0; i < s->l.n; i++) {
        const adadelta_state_tensor *t = &s->l.t[i];
        size_t at = s->lay.offsets[i];
        if (held_whole(m, t)) {
            if (writer)
                write_in_order(s, t->data,
                               (size_t)t->numel * adadelta_st_dtype_size(t->dtype), at, &rc);
        } else {
            move_owned(s, t, at, each_writes, buf, cap, &rc);
        }
    }
    free(buf);
    /* every writer's file complete and flushed before any is renamed */
    if (writer && !rc &&
        !(rc = CORE->state_write_prefix(&s->lay, s->fd, s->path, s->pieces, s->n_pieces)) &&
        fsync(s->fd) != 0)
        rc = adadelta_mpi__fail(ADADELTA_EIO, "%s: fsync failed: %s", s->path, strerror(errno));
    if ((rc = adadelta_mpi__agree(m, rc)))
        return rc;
    if (writer) {
        if ((rc = adadelta_st_commit(s->fd, s->tmp, s->path)))
            adadelta_mpi__fail(rc, "%s", adadelta_st_error());
        s->fd = -1;
        s->tmp = NULL;
    }
    return adadelta_mpi__agree(m, rc);
}

/* ------------------------------------------------------------ the calls */

static int save_impl(adadelta_mpi *m, const char *path, int each_writes, const char *what)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "%s: NULL", what);
    int rc = adadelta_mpi__agree(m, adadelta_mpi__refuse_in_step(m, what));
    if (rc || (rc = adadelta_mpi__ensure_ready(m)))
        return rc;
    save s;
    memset(&s, 0, sizeof s);
    s.m = m;
    s.path = path;
    s.fd = -1;
    if (!path)
        rc = adadelta_mpi__fail(ADADELTA_EINVAL, "%s: path is NULL", what);
    else if (!(rc = CORE->state_list(m->core, 1, &s.l)) &&
             !(rc = CORE->state_plan(m->core, &s.l, &s.lay)) &&
             (!(s.pieces = calloc((size_t)s.l.n + 2, sizeof *s.pieces)) ||
              (acc16_bytes(&s.l) && !(s.acc16 = malloc(acc16_bytes(&s.l))))))
        rc = adadelta_mpi__fail(ADADELTA_ENOMEM, "%s: out of memory", what);
    if (!(rc = adadelta_mpi__agree(m, rc))) {
        point_at_mean(m, &s.l, s.acc16);
        int shared = 0;
        if (each_writes)
            rc = save_whole(&s, 1);
        else if (!(rc = open_shared(&s, &shared)))
            rc = shared ? save_shared(&s) : save_whole(&s, 0);
    }
    if (s.tmp)
        adadelta_st_abort(s.fd, s.tmp);
    else if (s.fd >= 0)
        close(s.fd);
    free(s.pieces);
    free(s.acc16);
    if (s.l.t)
        CORE->state_free(&s.l);
    adadelta_st_layout_free(&s.lay);
    return rc;
}

int adadelta_mpi_save(adadelta_mpi *m, const char *path)
{
    return save_impl(m, path, 0, "adadelta_mpi_save");
}

int adadelta_mpi_save_each(adadelta_mpi *m, const char *path)
{
    return save_impl(m, path, 1, "adadelta_mpi_save_each");
}
