/* adadelta_private.h - the core's private interface for a data-parallel
 * layer (libadadelta_mpi; the core never sees MPI). Not installed.
 *
 * libadadelta exports one entry point for it, adadelta_private_interface(),
 * which returns this table when asked for ADADELTA_PRIVATE_VERSION and NULL
 * otherwise, so a layer built against another core fails cleanly at create
 * time instead of calling functions whose meaning changed.
 *
 * A data-parallel step is split around the gradient reduction:
 *   plan          what the next call does (an update, whose gradients are
 *                 reduced, or an accumulation-only call), from the state
 *                 alone: the same on every process.
 *   begin         plan, then the local checks of the gradients and (scan)
 *                 whether this process saw a non-finite one. Changes nothing.
 *   finite        whether a range of variables' gradients is finite: the
 *                 layer checks each bucket before its contribution, which
 *                 may be made in place in a gradient written into the
 *                 layer's buffer.
 *   contribute    this process's contribution t = g / loss_scale (+ local
 *                 accumulator) of a range of variables, written at their
 *                 flat offsets into a buffer holding every variable (in
 *                 place when a gradient already sits there).
 *   sum_squares   the norm partials (one double per shard) of the reduced
 *                 mean on a range of shards, zero on the others, so that
 *                 their sum over processes is exact whatever its order.
 *   finish        with the collective non-finite flag and the summed
 *                 partials: refuses (check_finite), skips (loss scale),
 *                 accumulates, or runs clipping, weight decay, the step, the
 *                 EMA and the counters on the owned shards, reading the
 *                 gradients from `mean` (the mean over processes of the
 *                 contributions, at least on the owned shards).
 * With one process, begin + contribute + finish give the bits of
 * adadelta_apply. */
#ifndef ADADELTA_PRIVATE_H
#define ADADELTA_PRIVATE_H

#include "adadelta.h"
#include "kernels/kernel.h"
#include "state_tensors.h"

#include <stdarg.h>

#define ADADELTA_PRIVATE_VERSION 8

typedef struct adadelta_dist_step {
    int update;         /* 1: reduce and apply; 0: accumulation only */
    int finite_matters; /* the non-finite flag decides (refuse or skip) */
    int nonfinite;      /* this process saw a non-finite gradient */
    int needs_norms;    /* clipping by norm: sum_squares before finish */
    /* the core's own */
    const void *const *grads;
    adadelta_step_params p;
    adadelta_step_params_f64 p64;
    int lr_ready; /* lr evaluated by begin (check_finite) */
    float lr;
} adadelta_dist_step;

typedef struct adadelta_private {
    int version;

    /* The one last-error channel of both libraries. */
    int (*vfail)(int status, const char *fmt, va_list ap);

    /* Layout: variables concatenated in order (flat offsets), cut into
     * shards; element sizes. */
    int64_t (*total_elements)(const adadelta *opt);
    int64_t (*variable_offset)(const adadelta *opt, int v); /* v == n: total */
    int (*num_shards)(const adadelta *opt);
    int64_t (*shard_offset)(const adadelta *opt, int s);    /* s == n: total */
    /* Cuts the shards into `parts` contiguous ranges of about equal
     * elements: bounds[0] = 0 <= ... <= bounds[parts] = num_shards. */
    void (*partition)(const adadelta *opt, int parts, int *bounds);
    /* Keep the sharded slot kinds only for shards [lo, hi) and update only
     * those (the owned part of the current state is kept). Once, before
     * the first apply. */
    int (*own_shards)(adadelta *opt, int lo, int hi);
    /* The scratch a data-parallel step needs (16-bit gradients); once,
     * before the first step, after the variables. */
    int (*dist_setup)(adadelta *opt);
    /* While wrapped, direct calls that would desynchronise the processes
     * (apply, load, finalize, exclusions, threads) refuse. */
    void (*set_wrapped)(adadelta *opt, int on);
    /* fn(lo, hi, ctx) over [0, n) in blocks, on the core's thread team. */
    void (*parallel_blocks)(const adadelta *opt, int64_t n, int64_t block,
                            void (*fn)(int64_t lo, int64_t hi, void *ctx), void *ctx);

    /* The split step (see above). */
    void (*plan)(const adadelta *opt, adadelta_dist_step *st);
    int (*begin)(adadelta *opt, const void *const *grads, adadelta_dist_step *st,
                 int scan_finite);
    int (*finite)(adadelta *opt, const void *const *grads, int v_lo, int v_hi);
    /* dst[v]: where variable v's contribution goes (in its dtype; float32
     * for a 16-bit one); mean[v]: its mean, in the same types. */
    void (*contribute)(adadelta *opt, const adadelta_dist_step *st, int v_lo, int v_hi,
                       void *const *dst);
    void (*sum_squares)(adadelta *opt, adadelta_dist_step *st, const void *const *mean,
                        int s_lo, int s_hi);
    double *(*partials)(adadelta *opt); /* num_shards entries */
    int (*finish)(adadelta *opt, adadelta_dist_step *st, int any_nonfinite,
                  const void *const *mean);
    /* 1 if the last call changed the variables (a step or an EMA overwrite). */
    int (*vars_changed)(const adadelta *opt);
    /* finalize_variable_values of an unsharded optimizer, while wrapped. */
    int (*finalize)(adadelta *opt);
    /* The keys whose values differ between two get_config() JSON texts:
     * "rho 0.9 (<label> 0.95), ..."; their number. */
    int (*config_diff)(const char *mine, const char *theirs, const char *label, char *out,
                       size_t cap);
    /* set_learning_rate while wrapped, and the Keras-JSON parse of one. */
    int (*set_learning_rate)(adadelta *opt, const adadelta_learning_rate *lr);
    int (*learning_rate_from_json)(const char *text, adadelta_learning_rate *out);

    /* The whole training state as tensors (state_tensors.h). */
    int (*state_list)(const adadelta *opt, int with_data, adadelta_state_list *out);
    void (*state_free)(adadelta_state_list *list);
    /* Loading: the header's checks, the checksum's span and verdict (the
     * processes each compute a part), the checks against opt, the copy. */
    int (*state_check_header)(const adadelta_st_file *f, const char *path);
    void (*state_checksum_span)(const adadelta_st_file *f, size_t *base, size_t *zero_at);
    int (*state_checksum_verdict)(const adadelta_st_file *f, const char *path, uint32_t crc);
    int (*state_check)(const adadelta *opt, const adadelta_st_file *f, const char *path);
    int (*state_import)(adadelta *opt, const adadelta_st_file *f, const char *path,
                        const adadelta_state_list *list);
    /* Saving: the file's plan, each process's parts, rank 0's prefix. */
    int (*state_plan)(const adadelta *opt, const adadelta_state_list *list,
                      adadelta_st_layout *out);
    int (*state_write_parts)(const adadelta_state_list *list, const adadelta_st_layout *lay,
                             int fd, const char *path, adadelta_st_piece *p, int *n);
    int (*state_write_prefix)(const adadelta_st_layout *lay, int fd, const char *path,
                              adadelta_st_piece *p, int n);
} adadelta_private;

#endif
