/* adadelta-mpi-replay - the replay driver, data parallel over MPI
 * (replay-cli.md, "MPI driver"): `{rank}` in --grads and --out becomes the
 * rank number, the step uses the mean over ranks of the local gradients,
 * --mode replicated|sharded. Every exit status is agreed over the ranks (the
 * lowest failing rank's), so all ranks exit with the same code, none waits
 * for a failed one, and an error is printed once. */
#include "adadelta_mpi.h"
#include "replay_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_rank, g_size;

/* Rank-local phases (options, input files) print their errors into a
 * temporary file; afterwards only the lowest failing rank shows its lines,
 * so an error hit by every rank is printed once, not R times. */
static FILE *captured;
static int saved_stderr = -1;

static void capture_begin(void)
{
    fflush(stderr);
    captured = tmpfile();
    saved_stderr = captured ? dup(2) : -1;
    if (saved_stderr >= 0)
        dup2(fileno(captured), 2);
}

/* The status of the lowest failing rank, on every rank (0 if none failed);
 * that rank's captured messages go to the real stderr. */
static int agree_exit(int rc)
{
    int first, mine = rc ? g_rank : g_size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int out = rc;
    MPI_Bcast(&out, 1, MPI_INT, first < g_size ? first : 0, MPI_COMM_WORLD);
    if (first == g_size)
        out = 0;
    if (saved_stderr >= 0) {
        fflush(stderr);
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
        if (g_rank == first) {
            char buf[4096];
            size_t n;
            rewind(captured);
            while ((n = fread(buf, 1, sizeof buf, captured)) > 0)
                fwrite(buf, 1, n, stderr);
        }
    }
    if (captured) {
        fclose(captured);
        captured = NULL;
    }
    return out;
}

/* path with every "{rank}" replaced by the rank number (malloc'ed). */
static char *substitute_rank(const char *path, int rank)
{
    if (!path)
        return NULL;
    char num[16];
    snprintf(num, sizeof num, "%d", rank);
    size_t n = 0;
    for (const char *p = path; *p;)
        if (!strncmp(p, "{rank}", 6)) {
            n += strlen(num);
            p += 6;
        } else {
            n++;
            p++;
        }
    char *out = malloc(n + 1), *q = out;
    if (!out)
        return NULL;
    for (const char *p = path; *p;)
        if (!strncmp(p, "{rank}", 6)) {
            q += sprintf(q, "%s", num);
            p += 6;
        } else {
            *q++ = *p++;
        }
    *q = '\0';
    return out;
}

/* An error every rank hit the same way: rank 0 prints it. */
static void report(const char *what, int call)
{
    if (g_rank != 0)
        return;
    if (call >= 0)
        fprintf(stderr, "%s: call %d: %s\n", replay_prog, call, adadelta_mpi_last_error());
    else
        fprintf(stderr, "%s: %s%s\n", replay_prog, what ? what : "", adadelta_mpi_last_error());
}

/* One call through begin_step, grad_ready per variable, end_step: the last
 * variable first (a backward pass's order), the first first, or a shuffle
 * that differs between calls and ranks. */
static int overlapped_call(adadelta_mpi *m, const void *const *grads, int n, const char *order,
                           int call)
{
    int *seq = malloc((size_t)(n > 0 ? n : 1) * sizeof *seq);
    if (!seq)
        return ADADELTA_ENOMEM;
    int shuffle = order && !strcmp(order, "shuffle");
    int forward = order && !strcmp(order, "forward");
    for (int i = 0; i < n; i++)
        seq[i] = forward || shuffle ? i : n - 1 - i;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(call + 1) + (uint64_t)g_rank * 7919;
    for (int i = n - 1; shuffle && i > 0; i--) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27; /* xorshift64 */
        int j = (int)((x * 0x2545F4914F6CDD1DULL) >> 33) % (i + 1);
        int t = seq[i];
        seq[i] = seq[j];
        seq[j] = t;
    }
    int rc = adadelta_mpi_begin_step(m);
    if (rc) {
        free(seq);
        return rc;
    }
    /* A refused grad_ready fails end_step on every rank, with its message. */
    for (int i = 0; i < n; i++)
        adadelta_mpi_grad_ready(m, seq[i], grads[seq[i]]);
    free(seq);
    return adadelta_mpi_end_step(m);
}

static int run(int argc, char **argv)
{
    replay_opts o;
    capture_begin();
    int rc = replay_parse_args(argc, argv, 1, &o);
    if ((rc = agree_exit(rc)))
        return rc;
    char *grads = substitute_rank(o.grads, g_rank);
    int per_rank_out = o.out && strstr(o.out, "{rank}") != NULL;
    char *out = substitute_rank(o.out, g_rank);
    if (!grads || (o.out && !out)) {
        fprintf(stderr, "%s: out of memory\n", replay_prog);
        rc = 1;
    }
    adadelta_mpi_mode mode =
        o.mode && !strcmp(o.mode, "sharded") ? ADADELTA_MPI_SHARDED : ADADELTA_MPI_REPLICATED;

    adadelta *core = NULL;
    adadelta_mpi *m = NULL;
    void **owned = NULL; /* variables read from --params: ours to free */
    int n_owned = 0;
    capture_begin();
    if (!rc)
        rc = replay_make_optimizer(&o, &core);
    if (!rc && !o.resume) {
        n_owned = adadelta_num_variables(core);
        owned = calloc((size_t)n_owned + 1, sizeof *owned);
        if (!owned)
            rc = 1;
        for (int v = 0; v < n_owned && owned; v++)
            owned[v] = adadelta_variable_data(core, v);
    }
    if ((rc = agree_exit(rc)))
        goto done;

    int st = adadelta_mpi_wrap(MPI_COMM_WORLD, core, mode, &m);
    if (st) {
        report(NULL, -1);
        rc = replay_exit_code(st);
        goto done;
    }
    core = NULL; /* the wrapper owns it */
    /* Config, names and shapes first: a mismatch is status 4 on every rank
     * before any gradient file is read. */
    if ((st = adadelta_mpi_check_agreement(m))) {
        report(NULL, -1);
        rc = replay_exit_code(st);
        goto done;
    }

    replay_grads g;
    memset(&g, 0, sizeof g);
    capture_begin();
    rc = agree_exit(replay_load_grads(grads, adadelta_mpi_core(m), &g));
    if (!rc) {
        int calls[2] = {g.calls, -g.calls}, lo[2];
        MPI_Allreduce(calls, lo, 2, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (lo[0] != -lo[1]) {
            if (g_rank == 0)
                fprintf(stderr, "%s: --grads: the ranks' gradient files hold different "
                        "numbers of calls (%d to %d)\n", replay_prog, lo[0], -lo[1]);
            rc = EXIT_MISMATCH;
        }
    }
    if (!rc && o.bucket_bytes && (st = adadelta_mpi_set_bucket_bytes(m, o.bucket_bytes))) {
        report("--bucket-bytes: ", -1);
        rc = replay_exit_code(st);
    }
    for (int k = 0; k < g.calls && !rc; k++) {
        const void *const *grads = g.table + (size_t)k * g.n_vars;
        st = o.overlap ? overlapped_call(m, grads, g.n_vars, o.order, k) : adadelta_mpi_apply(m, grads);
        if (st) {
            report(NULL, k);
            rc = replay_exit_code(st);
        }
    }
    replay_free_grads(&g);
    if (!rc && o.finalize && (st = adadelta_mpi_finalize_variable_values(m))) {
        report(NULL, -1);
        rc = replay_exit_code(st);
    }
    if (!rc && o.out) {
        st = per_rank_out ? adadelta_mpi_save_each(m, out) : adadelta_mpi_save(m, out);
        if (st) {
            /* adadelta_mpi_save agrees on the status itself. */
            /* Every rank reports its own failure; others just follow. */
            if (per_rank_out || g_rank == 0)
                fprintf(stderr, "%s: %s\n", replay_prog, adadelta_mpi_last_error());
            rc = replay_exit_code(st); /* 3: the --out file cannot be written */
            /* A rank whose file was written removes it: no --out on failure. */
            if (per_rank_out && access(out, F_OK) == 0 &&
                strncmp(adadelta_mpi_last_error(), "rank ", 5) == 0)
                unlink(out);
        }
    }
    rc = agree_exit(rc);
    if (!rc && o.verbose && g_rank == 0)
        fprintf(stderr, "%s: engine %s, %lu step agreements\n", replay_prog,
                adadelta_mpi_engine(m), adadelta_mpi_agreements(m));
done:
    if (m)
        adadelta_mpi_destroy(m);
    else if (core)
        adadelta_destroy(core);
    for (int v = 0; v < n_owned; v++)
        free(owned[v]);
    free(owned);
    free(grads);
    free(out);
    return rc;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--version")) {
            MPI_Finalize();
            if (g_rank == 0)
                replay_print_version(argv[0]);
            return 0;
        }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            /* replay_parse_args prints the usage and exits: finalize first. */
            MPI_Finalize();
            if (g_rank == 0) {
                replay_opts o;
                replay_parse_args(2, (char *[]){argv[0], "--help", NULL}, 1, &o);
            }
            return 0;
        }
    int rc = run(argc, argv);
    MPI_Finalize();
    return rc;
}
