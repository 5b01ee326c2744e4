/* mpi_bench_checkpoint.c - adadelta-mpi-bench --checkpoint: save and load
 * of one state file by every rank, against a plain write + fsync of the
 * same bytes into the same folder, timed in the same run in alternating
 * rounds.
 *
 *   mpirun -np R adadelta-mpi-bench --checkpoint [--elements N]
 *       [--mode replicated|sharded|both] [--rounds K] [--dir D]
 *       [--buffer-bytes B]
 *
 * One variable of N elements (default 2^24) with every slot (Adadelta's
 * two, the EMA, the gradient accumulator) and the loss-scale counters: a
 * file of about 20 N bytes. Per mode, every rank prints one JSON line:
 *   save_seconds, load_seconds  median over rounds of adadelta_mpi_save /
 *                               adadelta_mpi_load (between barriers: the
 *                               slowest rank's time, the same on all)
 *   dd_seconds                  rank 0 writing the file's size from a
 *                               16 MiB buffer with write() then fsync(), as
 *                               dd bs=16M conv=fsync does, into the same
 *                               folder (the others wait)
 *   save_mb_s, load_mb_s, dd_mb_s   file bytes / 10^6 / seconds
 *   steady_rss_bytes            VmRSS before the round
 *   save_peak_rss_bytes, load_peak_rss_bytes, peak_rss_bytes
 *                               VmHWM during each (reset through
 *                               /proc/self/clear_refs), and their maximum.
 * A load reads a file just written (from the page cache, as a resume on
 * the same node would); the writes end with fsync (the disk). */
#include <adadelta_mpi.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "mpi_bench_checkpoint.h"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "adadelta-mpi-bench: %s: %s\n", what, detail);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void check(int status, const char *what)
{
    if (status)
        die(what, adadelta_mpi_last_error());
}

static long long status_bytes(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = 0;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            kb = atoll(line + k + 1);
    if (f)
        fclose(f);
    return kb * 1024;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* The collective time of fn: barrier, fn, barrier; the slowest rank's. */
static double timed(void (*fn)(void *), void *ctx)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    fn(ctx);
    double dt = MPI_Wtime() - t0, worst;
    MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

typedef struct job {
    adadelta_mpi *o;
    const char *path, *dd_path;
    size_t bytes;
    unsigned char *buf; /* dd's 16 MiB */
    int rank;
} job;

static void do_save(void *p)
{
    job *j = p;
    check(adadelta_mpi_save(j->o, j->path), "adadelta_mpi_save");
}

static void do_load(void *p)
{
    job *j = p;
    check(adadelta_mpi_load(j->o, j->path), "adadelta_mpi_load");
}

/* write() + fsync() of j->bytes, 16 MiB at a time, by rank 0. */
static void do_dd(void *p)
{
    job *j = p;
    if (j->rank != 0)
        return;
    int fd = open(j->dd_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(j->dd_path, strerror(errno));
    for (size_t done = 0; done < j->bytes;) {
        size_t n = j->bytes - done < (16u << 20) ? j->bytes - done : (16u << 20);
        ssize_t w = write(fd, j->buf, n);
        if (w <= 0)
            die(j->dd_path, strerror(errno));
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        die(j->dd_path, strerror(errno));
}

static void run_mode(const checkpoint_options *c, adadelta_mpi_mode mode, int rank, int ranks)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.use_ema = 1;
    cfg.gradient_accumulation_steps = 2;
    cfg.dynamic_loss_scale = 1;
    int64_t n = c->elements, shape[1] = {n};
    float *w = malloc((size_t)n * sizeof *w), *g = malloc((size_t)n * sizeof *g);
    if (!w || !g)
        die("out of memory", "variables");
    for (int64_t i = 0; i < n; i++) {
        w[i] = 2.0f * unit_hash((uint64_t)i, 0x9e3779b9u) - 1.0f;
        g[i] = 0.01f * (unit_hash((uint64_t)i, 0x85ebca6bu + (uint32_t)rank) - 0.5f);
    }
    job j = {0};
    j.rank = rank;
    check(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, mode, &j.o), "adadelta_mpi_create");
    check(adadelta_mpi_add_variable(j.o, "dense/kernel", ADADELTA_F32, w, 1, shape),
          "adadelta_mpi_add_variable");
    if (c->buffer_bytes)
        check(adadelta_mpi_set_checkpoint_buffer(j.o, (size_t)c->buffer_bytes),
              "adadelta_mpi_set_checkpoint_buffer");
    const void *gp[1] = {g};
    for (int k = 0; k < 3; k++) /* every slot non-zero; mid-cycle accumulators */
        check(adadelta_mpi_apply(j.o, gp), "adadelta_mpi_apply");
    char path[4096], dd_path[4096];
    snprintf(path, sizeof path, "%s/adadelta_bench_%d.st", c->dir, (int)getppid());
    snprintf(dd_path, sizeof dd_path, "%s/adadelta_bench_%d.dd", c->dir, (int)getppid());
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(dd_path, sizeof dd_path, MPI_CHAR, 0, MPI_COMM_WORLD);
    j.path = path;
    j.dd_path = dd_path;
    j.buf = rank == 0 ? calloc(16u << 20, 1) : NULL;
    do_save(&j); /* warm: the file exists, its size known */
    do_load(&j);
    FILE *f = rank == 0 ? fopen(path, "rb") : NULL;
    long long size = 0;
    if (f && fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (f)
        fclose(f);
    MPI_Bcast(&size, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    j.bytes = (size_t)size;
    double *ts = malloc(3 * (size_t)c->rounds * sizeof *ts);
    long long steady = 0, save_peak = 0, load_peak = 0;
    for (int r = 0; r < c->rounds; r++) {
        steady = status_bytes("VmRSS");
        /* alternate the order: dd first in even rounds, last in odd */
        if (r % 2 == 0)
            ts[3 * r + 2] = timed(do_dd, &j);
        reset_peak();
        ts[3 * r + 0] = timed(do_save, &j);
        long long p = status_bytes("VmHWM");
        save_peak = p > save_peak ? p : save_peak;
        reset_peak();
        ts[3 * r + 1] = timed(do_load, &j);
        p = status_bytes("VmHWM");
        load_peak = p > load_peak ? p : load_peak;
        if (r % 2 == 1)
            ts[3 * r + 2] = timed(do_dd, &j);
    }
    double med[3];
    double *col = malloc((size_t)c->rounds * sizeof *col);
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < c->rounds; r++)
            col[r] = ts[3 * r + k];
        med[k] = median(col, c->rounds);
    }
    double mb = (double)size / 1e6;
    printf("{\"path\":\"checkpoint\",\"elements\":%lld,\"mode\":\"%s\",\"ranks\":%d,\"rank\":%d,"
           "\"file_bytes\":%lld,\"rounds\":%d,\"save_seconds\":%.4f,\"load_seconds\":%.4f,"
           "\"dd_seconds\":%.4f,\"save_mb_s\":%.1f,\"load_mb_s\":%.1f,\"dd_mb_s\":%.1f,"
           "\"save_vs_dd\":%.3f,\"steady_rss_bytes\":%lld,\"save_peak_rss_bytes\":%lld,"
           "\"load_peak_rss_bytes\":%lld,\"peak_rss_bytes\":%lld,\"buffer_bytes\":%zu}\n",
           (long long)n, mode == ADADELTA_MPI_SHARDED ? "sharded" : "replicated", ranks, rank,
           size, c->rounds, med[0], med[1], med[2], mb / med[0], mb / med[1], mb / med[2],
           med[2] / med[0], steady, save_peak, load_peak,
           save_peak > load_peak ? save_peak : load_peak,
           adadelta_checkpoint_buffer(adadelta_mpi_core(j.o)));
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        unlink(path);
        unlink(dd_path);
    }
    free(col);
    free(ts);
    free(j.buf);
    adadelta_mpi_destroy(j.o);
    free(w);
    free(g);
}

void run_checkpoint_bench(const checkpoint_options *c, int rank, int ranks)
{
    for (int m = 0; m < 2; m++)
        if (c->modes & (1 << m))
            run_mode(c, (adadelta_mpi_mode)m, rank, ranks);
}
