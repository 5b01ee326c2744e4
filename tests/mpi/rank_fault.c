/* rank_fault.c - a data-parallel training run that checkpoints after every
 * call and can make one rank die mid-run (abort), for mpi_rank_fault.sh:
 *   rank_fault --calls K --ckpt FILE [--die-at k --die-rank r]
 *              [--stall-at k --stall-rank r] [--resume FILE] [--out FILE]
 *              [--mode sharded]
 * --stall-at: that rank stops calling at call k (sleeps a minute), so the
 * others' stall watchdog (ADADELTA_MPI_TIMEOUT) must end the job.
 * Gradients depend only on (rank, call, element), so a resumed run sees the
 * same gradients as the uninterrupted one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adadelta_mpi.h"

enum { NV = 3 };
static const int64_t sizes[NV] = {1000, 50000, 7};

static void gradient(int rank, int call, int v, float *g)
{
    for (int64_t i = 0; i < sizes[v]; i++)
        g[i] = (float)(0.5 * sin(0.001 * (double)i * (v + 1) + call * 0.37 + rank * 1.3));
}

static int check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "rank_fault: %s: %s\n", what, adadelta_mpi_last_error());
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    return rc;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int calls = 10, die_at = -1, die_rank = 0, stall_at = -1, stall_rank = 0;
    const char *ckpt = NULL, *resume = NULL, *out = NULL;
    adadelta_mpi_mode mode = ADADELTA_MPI_REPLICATED;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--calls"))
            calls = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--die-at"))
            die_at = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--die-rank"))
            die_rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--stall-at"))
            stall_at = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--stall-rank"))
            stall_rank = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ckpt"))
            ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--resume"))
            resume = argv[i + 1];
        else if (!strcmp(argv[i], "--out"))
            out = argv[i + 1];
        else if (!strcmp(argv[i], "--mode"))
            mode = strcmp(argv[i + 1], "sharded") ? ADADELTA_MPI_REPLICATED
                                                  : ADADELTA_MPI_SHARDED;
    }
    /* Most features on; accumulation off so a checkpoint is bit-exact. */
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_exponential_decay(&cfg.learning_rate, 1.0, 4, 0.8, 0);
    cfg.global_clipnorm = 2.0;
    cfg.weight_decay = 0.01;
    cfg.use_ema = 1;
    cfg.ema_momentum = 0.9;
    cfg.ema_overwrite_frequency = 4;
    cfg.dynamic_loss_scale = 1;
    cfg.initial_scale = 4;
    cfg.dynamic_growth_steps = 3;
    adadelta_mpi *opt;
    check(adadelta_mpi_create(MPI_COMM_WORLD, &cfg, mode, &opt), "create");
    float *vars[NV], *grads[NV];
    for (int v = 0; v < NV; v++) {
        vars[v] = malloc((size_t)sizes[v] * sizeof(float));
        grads[v] = malloc((size_t)sizes[v] * sizeof(float));
        for (int64_t i = 0; i < sizes[v]; i++)
            vars[v][i] = (float)cos(0.01 * (double)i + v);
        char name[16];
        snprintf(name, sizeof name, "layer%d/w", v);
        check(adadelta_mpi_add_variable(opt, name, ADADELTA_F32, vars[v], 1, &sizes[v]) < 0,
              "add_variable");
    }
    if (resume)
        check(adadelta_mpi_load(opt, resume), "load");
    int first = (int)adadelta_iterations(adadelta_mpi_core(opt));
    if (resume && rank == 0)
        printf("rank_fault: resuming at call %d\n", first);
    for (int call = first; call < calls; call++) {
        if (call == die_at && rank == die_rank) {
            fprintf(stderr, "rank_fault: rank %d dies before call %d\n", rank, call);
            abort();
        }
        if (call == stall_at && rank == stall_rank) {
            fprintf(stderr, "rank_fault: rank %d stops calling before call %d\n", rank, call);
            sleep(60);
        }
        for (int v = 0; v < NV; v++)
            gradient(rank, call, v, grads[v]);
        check(adadelta_mpi_apply(opt, (const float *const *)grads), "apply");
        if (ckpt)
            check(adadelta_mpi_save(opt, ckpt), "save");
    }
    if (out)
        check(adadelta_mpi_save(opt, out), "save out");
    adadelta_mpi_destroy(opt);
    for (int v = 0; v < NV; v++) {
        free(vars[v]);
        free(grads[v]);
    }
    MPI_Finalize();
    return 0;
}
