/* errors.c - the layer's errors: written into the core's last-error
 * channel (one adadelta_last_error() for both libraries), and made
 * collective so that every rank returns the same status. */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Used only when the core's interface is missing (a libadadelta of
 * another version): the one message this layer can then give. */
static _Thread_local char fallback[256];

const adadelta_private *adadelta_mpi__core_interface(void)
{
    static const adadelta_private *core;
    const adadelta_private *c = __atomic_load_n(&core, __ATOMIC_ACQUIRE);
    if (!c) {
        c = adadelta_private_interface(ADADELTA_PRIVATE_VERSION);
        __atomic_store_n(&core, c, __ATOMIC_RELEASE);
    }
    return c;
}

int adadelta_mpi__fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (CORE)
        CORE->vfail(status, fmt, ap);
    else
        snprintf(fallback, sizeof fallback,
                 "libadadelta_mpi: libadadelta %s lacks private interface %d (the two "
                 "libraries come from different versions)",
                 adadelta_version_string(), ADADELTA_PRIVATE_VERSION);
    va_end(ap);
    return status;
}

static int empty_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = CORE ? CORE->vfail(status, fmt, ap) : status;
    va_end(ap);
    return rc;
}

void adadelta_mpi__clear_error(void) { empty_fail(0, "%s", ""); }

const char *adadelta_mpi_last_error(void)
{
    return CORE ? adadelta_last_error() : fallback;
}

/* A failing rank's status and reason, as every rank gathers them. */
typedef struct reason {
    int status;
    char msg[248];
} reason;

enum { REASONS_SHOWN = 4 };

int adadelta_mpi__agree_comm(MPI_Comm comm, int rc)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* No allocation on the common path: every rank makes the same call. */
    int failed = rc != 0, n_failed;
    MPI_Allreduce(&failed, &n_failed, 1, MPI_INT, MPI_SUM, comm);
    if (!n_failed)
        return 0;
    /* Some rank failed: every rank learns every failing rank's reason and
     * returns the lowest failing rank's status, the same everywhere. */
    reason mine = {rc, ""};
    if (rc)
        snprintf(mine.msg, sizeof mine.msg, "%s", adadelta_mpi_last_error());
    reason *all = malloc((size_t)size * sizeof *all);
    int have = all != NULL, everyone; /* the same branch on every rank */
    MPI_Allreduce(&have, &everyone, 1, MPI_INT, MPI_LAND, comm);
    if (!everyone) { /* the lowest failing rank's status alone, through a minimum */
        free(all);
        int key = rc ? rank : size, first, status = rc;
        MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, comm);
        MPI_Bcast(&status, 1, MPI_INT, first, comm);
        return adadelta_mpi__fail(status, "rank %d failed (out of memory for its reason)", first);
    }
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm);
    char text[1024];
    size_t at = 0;
    int status = 0, shown = 0;
    for (int r = 0; r < size; r++) {
        if (!all[r].status)
            continue;
        if (!status)
            status = all[r].status;
        if (shown++ < REASONS_SHOWN && at < sizeof text)
            at += (size_t)snprintf(text + at, sizeof text - at, "%srank %d: %s", at ? "; " : "",
                                   r, all[r].msg);
    }
    if (shown > REASONS_SHOWN && at < sizeof text)
        snprintf(text + at, sizeof text - at, "; and %d more rank(s)", shown - REASONS_SHOWN);
    free(all);
    /* One failing rank, this one: its own message as it was. */
    if (n_failed == 1 && rc)
        return rc;
    return adadelta_mpi__fail(status, "%s", text);
}

int adadelta_mpi__agree(const adadelta_mpi *m, int rc)
{
    return adadelta_mpi__agree_comm(m->comm, rc);
}
