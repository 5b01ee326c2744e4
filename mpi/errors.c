/* errors.c - the layer's errors: written into the core's last-error
 * channel (one adadelta_last_error() for both libraries), and made
 * collective so that every rank returns the same status. */
#include "mpi_internal.h"

#include <stdio.h>
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

int adadelta_mpi__agree_comm(MPI_Comm comm, int rc)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* No allocation, so every rank always makes the same two calls. */
    int key = rc ? rank : size, first;
    MPI_Allreduce(&key, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size)
        return 0;
    struct {
        int status;
        char msg[1024];
    } what;
    if (rank == first) {
        what.status = rc;
        snprintf(what.msg, sizeof what.msg, "%s", adadelta_mpi_last_error());
    }
    MPI_Bcast(&what, (int)sizeof what, MPI_BYTE, first, comm);
    if (rc)
        return rc;
    return adadelta_mpi__fail(what.status, "rank %d: %s", first, what.msg);
}

int adadelta_mpi__agree(const adadelta_mpi *m, int rc)
{
    return adadelta_mpi__agree_comm(m->comm, rc);
}
