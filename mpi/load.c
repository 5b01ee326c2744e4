/* load.c - every rank loads one state file reading only its header, its
 * share of the checksum, and what it keeps: the variables, and the slots
 * whole (replicated) or on its range (sharded). No rank holds the file.
 *
 * The checksum covers the whole file; the ranks that see the same file
 * (the same device and inode on one node) each check a slice of it through
 * a bounded buffer and combine the CRCs, so the file is read once per node
 * for the check, then each rank reads what it keeps. Nothing changes
 * unless every rank's checks passed. */
#include "mpi_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The ranks of m's communicator that see the same file as this one. */
static MPI_Comm same_file_group(const adadelta_mpi *m, const adadelta_st_file *f)
{
    struct stat st;
    unsigned long long id[3] = {0, 0, (unsigned long long)f->size};
    if (fstat(f->fd, &st) == 0) {
        id[0] = (unsigned long long)st.st_dev;
        id[1] = (unsigned long long)st.st_ino;
    }
    MPI_Comm node, group;
    MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, m->rank, MPI_INFO_NULL, &node);
    int n, me;
    MPI_Comm_size(node, &n);
    MPI_Comm_rank(node, &me);
    unsigned long long *all = malloc((size_t)n * sizeof id);
    int ok = all != NULL, color = me;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, node);
    if (ok) {
        MPI_Allgather(id, 3, MPI_UNSIGNED_LONG_LONG, all, 3, MPI_UNSIGNED_LONG_LONG, node);
        for (int r = 0; r < n; r++)
            if (!memcmp(all + 3 * r, id, sizeof id)) {
                color = r; /* the lowest node rank with this file */
                break;
            }
    }
    free(all);
    MPI_Comm_split(node, color, me, &group);
    MPI_Comm_free(&node);
    return group;
}

/* This rank's slice of the checksum, combined in its group; the verdict
 * on the group's first rank (the others return 0). */
static int check_checksum(const adadelta_mpi *m, const adadelta_st_file *f, const char *path)
{
    MPI_Comm group = same_file_group(m, f);
    int g, G;
    MPI_Comm_rank(group, &g);
    MPI_Comm_size(group, &G);
    size_t base, zero_at, cap = adadelta_checkpoint_buffer(m->core);
    CORE->state_checksum_span(f, &base, &zero_at);
    size_t span = f->size - base;
    size_t lo = base + (size_t)((unsigned __int128)span * (unsigned)g / (unsigned)G);
    size_t hi = base + (size_t)((unsigned __int128)span * (unsigned)(g + 1) / (unsigned)G);
    void *buf = malloc(cap);
    adadelta_st_piece mine = {lo - base, hi - lo, 0}; /* pieces tile [0, span) */
    int rc = buf ? adadelta_st_crc_range(f, lo, hi, zero_at, buf, cap, &mine.crc)
                 : ADADELTA_ENOMEM;
    free(buf);
    if (rc)
        adadelta_mpi__fail(rc, "%s", rc == ADADELTA_ENOMEM ? "adadelta_mpi_load: out of memory"
                                                          : adadelta_st_error());
    /* a rank that could not read its slice fails; the others' pieces are
     * then not combined */
    int any;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MIN, group);
    adadelta_st_piece *all = g == 0 ? calloc((size_t)G, sizeof *all) : NULL;
    int have = g != 0 || all;
    MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, group);
    if (have)
        MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, 0, group);
    if (g == 0 && !rc && !any) {
        uint32_t crc = 0;
        if (!have)
            rc = adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi_load: out of memory");
        else if (adadelta_st_combine_pieces(all, G, span, &crc) != 0)
            rc = adadelta_mpi__fail(ADADELTA_ESTATE, "adadelta_mpi_load: %s (internal error)",
                                    adadelta_st_error());
        else
            rc = CORE->state_checksum_verdict(f, path, crc);
    }
    free(all);
    MPI_Comm_free(&group);
    return rc;
}

/* Each node checks its own copy: the ranks must still hold the same file
 * (a stale copy on one node is a valid file too). Its checksum and size
 * compared across all ranks. */
static int same_file_everywhere(const adadelta_mpi *m, const adadelta_st_file *f,
                                const char *path)
{
    const char *digits = adadelta_st_meta(f, "checksum");
    uint64_t h = adadelta_mpi__hash(ADADELTA_MPI_HASH_START, digits, strlen(digits));
    h = adadelta_mpi__hash(h, &f->size, sizeof f->size);
    uint64_t lo, hi;
    MPI_Allreduce(&h, &lo, 1, MPI_UINT64_T, MPI_MIN, m->comm);
    MPI_Allreduce(&h, &hi, 1, MPI_UINT64_T, MPI_MAX, m->comm);
    if (lo == hi)
        return 0;
    char ranks[200];
    adadelta_mpi__differing_ranks(m, h, ranks, sizeof ranks);
    return adadelta_mpi__fail(ADADELTA_EMISMATCH,
                              "adadelta_mpi_load %s: the ranks read different files (rank %s's "
                              "checksum or size differs from rank 0's: another or an older "
                              "copy)",
                              path, ranks);
}

static int open_checked(const char *path, adadelta_st_file **f)
{
    *f = NULL;
    if (!path)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_load: path is NULL");
    int rc = adadelta_st_open(path, f);
    if (rc)
        return adadelta_mpi__fail(rc, "%s", adadelta_st_error());
    return CORE->state_check_header(*f, path);
}

int adadelta_mpi_load(adadelta_mpi *m, const char *path)
{
    adadelta_mpi__clear_error();
    if (!m)
        return adadelta_mpi__fail(ADADELTA_EINVAL, "adadelta_mpi_load: NULL");
    int rc = adadelta_mpi__agree(m, adadelta_mpi__refuse_in_step(m, "adadelta_mpi_load"));
    if (rc || (rc = adadelta_mpi__ensure_ready(m)))
        return rc;
    adadelta_st_file *f;
    adadelta_state_list l;
    memset(&l, 0, sizeof l);
    /* each step agreed before the next; nothing changes before the import */
    if (!(rc = adadelta_mpi__agree(m, open_checked(path, &f))) &&
        !(rc = adadelta_mpi__agree(m, check_checksum(m, f, path))) &&
        !(rc = same_file_everywhere(m, f, path))) {
        rc = CORE->state_check(m->core, f, path);
        if (!rc)
            rc = CORE->state_list(m->core, 1, &l);
        if (!(rc = adadelta_mpi__agree(m, rc)))
            rc = adadelta_mpi__agree(m, CORE->state_import(m->core, f, path, &l));
    }
    adadelta_st_free(f);
    if (l.t)
        CORE->state_free(&l);
    if (!rc && adadelta_mpi__any_rank(m, m->check))
        rc = adadelta_mpi__check_identical(m, "after load");
    return rc;
}
