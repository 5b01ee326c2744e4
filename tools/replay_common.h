/* replay_common.h - what adadelta-replay and adadelta-mpi-replay share:
 * options, input files, exit statuses (replay-cli.md). */
#ifndef REPLAY_COMMON_H
#define REPLAY_COMMON_H

#include "adadelta.h"
#include "safetensors.h"

/* The program's name (argv[0]'s last part), the prefix of every message. */
extern const char *replay_prog;

/* Exit statuses of the contract. */
enum { EXIT_USAGE = 2, EXIT_BAD_FILE = 3, EXIT_MISMATCH = 4 };

typedef struct replay_opts {
    const char *params, *grads, *config, *out, *resume, *exclude, *mode;
    int threads; /* 0 = OpenMP's default */
    int finalize;
    /* MPI driver: the overlap API instead of one apply per call */
    int overlap;
    long long bucket_bytes; /* 0 = the library's default */
    const char *order;      /* reverse (default), forward, shuffle */
    int verbose;            /* MPI driver: rank 0 names the engine at the end */
} replay_opts;

/* Parses argv; on error prints one line and returns EXIT_USAGE. with_mode
 * accepts the MPI driver's options (--mode, --overlap, --bucket-bytes,
 * --order, --verbose). */
int replay_parse_args(int argc, char **argv, int with_mode, replay_opts *o);

/* "adadelta-replay 0.1.0 (kernel avx512fp16)" on stdout (--version). */
void replay_print_version(const char *argv0);

/* The exit status for a library status. */
int replay_exit_code(int status);

/* Builds the optimizer from --config/--params or --resume (each variable
 * in the dtype of its --params tensor: F32 or F64), applies
 * --threads and --exclude-from-weight-decay. Prints the error and returns
 * the exit status on failure. */
int replay_make_optimizer(const replay_opts *o, adadelta **out);

/* Destroys an optimizer made by replay_make_optimizer, with the variables
 * it read from --params. */
void replay_destroy_optimizer(const replay_opts *o, adadelta *opt);

/* The gradients of every call, checked against the optimizer's variables
 * (each in its variable's dtype). */
typedef struct replay_grads {
    int calls, n_vars;
    unsigned char *data;  /* the tensors' data, each copied 64-byte aligned */
    const void **table;   /* table[k * n_vars + v], NULL = no gradient */
} replay_grads;

int replay_load_grads(const char *path, const adadelta *opt, replay_grads *g);
void replay_free_grads(replay_grads *g);

#endif
