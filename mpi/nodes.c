/* nodes.c - which ranks share a node, for the engines that use shared
 * memory: the node communicator (MPI_COMM_TYPE_SHARED), and the placement
 * of the ranks over the nodes (the hierarchical engine needs each node to
 * hold consecutive ranks, so that a chain through the nodes adds the ranks
 * in rank order).
 *
 * ADADELTA_MPI_NODE_RANKS=<L> (tests, and users who want to compare) cuts
 * the ranks into pretend nodes of L consecutive ranks instead; they still
 * share memory, since mpirun placed them on this one. It is honoured only
 * when every rank sets the same value, so a stray setting on one rank
 * cannot make the ranks split differently. */
#include "mpi_internal.h"

#include <limits.h>
#include <stdlib.h>

void adadelta_mpi__node_comm(const adadelta_mpi *m, MPI_Comm *node)
{
    int wish = (int)adadelta_mpi__env_int("ADADELTA_MPI_NODE_RANKS", 0, 1, INT_MAX);
    int range[2] = {wish, -wish}, got[2];
    MPI_Allreduce(range, got, 2, MPI_INT, MPI_MIN, m->comm);
    if (got[0] == -got[1] && got[0] > 0)
        MPI_Comm_split(m->comm, m->rank / got[0], m->rank, node);
    else
        MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, m->rank, MPI_INFO_NULL, node);
}

int adadelta_mpi__node_layout(const adadelta_mpi *m, MPI_Comm node, node_layout *out)
{
    int R = m->size, first, *firsts = calloc((size_t)R, sizeof *firsts);
    int *starts = calloc((size_t)R + 1, sizeof *starts);
    int ok = firsts && starts, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, m->comm);
    if (!all_ok) {
        free(firsts);
        free(starts);
        return adadelta_mpi__fail(ADADELTA_ENOMEM, "adadelta_mpi: out of memory");
    }
    /* Every rank learns the lowest rank of each rank's node. */
    MPI_Allreduce((void *)&m->rank, &first, 1, MPI_INT, MPI_MIN, node);
    MPI_Allgather(&first, 1, MPI_INT, firsts, 1, MPI_INT, m->comm);
    node_layout l = {.consecutive = 1, .min_size = R, .starts = starts};
    for (int r = 0; r < R; r++) {
        if (firsts[r] == r) { /* a node starts */
            if (r <= m->rank)
                l.index = l.nodes;
            starts[l.nodes++] = r;
        } else if (firsts[r] != firsts[r - 1]) {
            l.consecutive = 0; /* a node's ranks are interleaved with another's */
        }
    }
    starts[l.nodes] = R;
    for (int k = 0; k < l.nodes; k++)
        if (starts[k + 1] - starts[k] < l.min_size)
            l.min_size = starts[k + 1] - starts[k];
    MPI_Comm_rank(node, &l.local_rank);
    MPI_Comm_size(node, &l.local_size);
    free(firsts);
    *out = l;
    return 0;
}

int adadelta_mpi__node_window(MPI_Comm node, int64_t mine, MPI_Win *win, float **segments)
{
    char *base;
    int ok = MPI_Win_allocate_shared((MPI_Aint)mine, 1, MPI_INFO_NULL, node, &base, win) ==
             MPI_SUCCESS,
        all_ok;
    if (!ok)
        *win = MPI_WIN_NULL;
    /* one failed rank must not leave the others in the node's barriers */
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, node);
    if (!all_ok) {
        if (ok)
            MPI_Win_free(win);
        *win = MPI_WIN_NULL;
        return adadelta_mpi__fail(ADADELTA_ENOMEM,
                                  "adadelta_mpi: cannot allocate a %lld-byte shared-memory "
                                  "window",
                                  (long long)mine);
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, *win);
    int n;
    MPI_Comm_size(node, &n);
    for (int r = 0; r < n; r++) {
        MPI_Aint size;
        int unit;
        void *p;
        MPI_Win_shared_query(*win, r, &size, &unit, &p);
        segments[r] = p;
    }
    return 0;
}

void adadelta_mpi__node_window_free(MPI_Win *win, MPI_Comm *node)
{
    if (*win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(*win);
        MPI_Win_free(win);
    }
    if (*node != MPI_COMM_NULL)
        MPI_Comm_free(node);
}
