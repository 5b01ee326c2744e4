/* wait.c - every wait of the layer goes through here: it spins a little,
 * then yields the core (ranks may outnumber cores), and past the stall
 * timeout (adadelta_mpi_set_timeout, ADADELTA_MPI_TIMEOUT) it reports what
 * it waited for and which ranks have not arrived, and aborts the job, as
 * Horovod's stall check and PyTorch's collective timeout do: a rank that
 * stopped calling must not leave the others waiting forever. */
#include "mpi_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Measured here: with more ranks than cores a waiter must yield after a few
 * spins (16 pauses, about 1 us), or barriers take scheduler time slices. */
enum { SPINS_BEFORE_YIELD = 16, POLLS_PER_CLOCK = 256 };

void adadelta_mpi__wait_start(waiter *w)
{
    w->start = -1;
    w->spins = 0;
}

void adadelta_mpi__wait_poll(const adadelta_mpi *m, waiter *w, const char *what,
                             void (*who)(const adadelta_mpi *m, char *buf, size_t n))
{
    w->spins++;
    if (w->spins < SPINS_BEFORE_YIELD)
        CPU_RELAX();
    else
        sched_yield();
    if (w->spins % POLLS_PER_CLOCK || m->timeout <= 0)
        return;
    double now = MPI_Wtime();
    if (w->start < 0)
        w->start = now;
    if (now - w->start < m->timeout)
        return;
    char ranks[512] = "unknown (over MPI collectives the layer cannot tell)";
    if (who)
        who(m, ranks, sizeof ranks);
    /* The one message the library prints: the process is about to end. */
    fprintf(stderr,
            "adadelta_mpi: rank %d: stalled for %.0f s in %s (step %lld); ranks that have "
            "not arrived: %s; aborting the job (ADADELTA_MPI_TIMEOUT)\n",
            m->rank, now - w->start, what, (long long)m->steps, ranks);
    fflush(stderr);
    MPI_Abort(m->comm, 3);
    abort();
}

void adadelta_mpi__wait_requests(const adadelta_mpi *m, int n, MPI_Request *req, const char *what)
{
    waiter w;
    adadelta_mpi__wait_start(&w);
    for (;;) {
        int done = 0;
        MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
        if (done)
            return;
        adadelta_mpi__wait_poll(m, &w, what, NULL);
    }
}

void adadelta_mpi__wait_request(const adadelta_mpi *m, MPI_Request *req, const char *what)
{
    adadelta_mpi__wait_requests(m, 1, req, what);
}

void adadelta_mpi__wait_counter(const adadelta_mpi *m, const shm_counter *c, uint64_t target,
                                const char *what,
                                void (*who)(const adadelta_mpi *m, char *buf, size_t n))
{
    if (adadelta_mpi__load(c) >= target)
        return;
    waiter w;
    adadelta_mpi__wait_start(&w);
    while (adadelta_mpi__load(c) < target)
        adadelta_mpi__wait_poll(m, &w, what, who);
}
