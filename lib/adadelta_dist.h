/* adadelta_dist.h - the core's interface for a data-parallel layer (the MPI
 * library builds on it; the core never sees MPI). Not installed: these
 * symbols are exported for libadadelta_mpi only and may change.
 *
 * A data-parallel step is split in two around the gradient reduction:
 *   begin:  local work. Decides collectively (through ops->any) what the call
 *           does. Accumulation-only calls and skipped loss-scale steps finish
 *           here (*need_reduce = 0). Otherwise the process's contribution
 *           t = g / loss_scale (+ accumulator) is written into send[] at each
 *           variable's flat offset and nothing has changed yet.
 *   finish: `mean` holds the mean over processes of send[] (at least for the
 *           shards this process owns); runs clipping (norm partials summed
 *           through ops->sum_doubles when sharded), weight decay, the step,
 *           EMA and the counters on the owned shards.
 * With one process, begin + finish give the same bits as adadelta_apply. */
#ifndef ADADELTA_DIST_H
#define ADADELTA_DIST_H

#include "adadelta.h"

typedef struct adadelta_dist_ops {
    void *ctx;
    /* *global = OR of local over all processes. */
    int (*any)(void *ctx, int local, int *global);
    /* In-place elementwise sum of values[0..n) over all processes. */
    int (*sum_doubles)(void *ctx, double *values, int n);
} adadelta_dist_ops;

int adadelta_dist_begin(adadelta *opt, const float *const *grads, float *send,
                        const adadelta_dist_ops *ops, int *need_reduce);
int adadelta_dist_finish(adadelta *opt, const float *mean,
                         const adadelta_dist_ops *ops);

int64_t adadelta_dist_total_elements(const adadelta *opt);
int adadelta_dist_num_shards(const adadelta *opt);
/* Flat offset of the first element of shard s (s == num_shards: the total). */
int64_t adadelta_dist_shard_offset(const adadelta *opt, int s);
/* Cuts the shards into `parts` contiguous ranges of about equal elements:
 * bounds[0] = 0 <= bounds[1] <= ... <= bounds[parts] = num_shards. */
void adadelta_dist_partition(const adadelta *opt, int parts, int *bounds);
/* Keep optimizer state (both Adadelta slots, EMA) only for shards [lo, hi)
 * and update only those: the owned part of the current state (zeros, or
 * what a load put there) is kept, the rest freed. Before the first apply. */
int adadelta_dist_own_shards(adadelta *opt, int lo, int hi);
/* Slot storage of variable v: ptr covers elements [*begin, *end). */
int adadelta_dist_slot_range(const adadelta *opt, int v, adadelta_slot_kind k,
                             float **ptr, int64_t *begin, int64_t *end);
void adadelta_dist_set_counters(adadelta *opt, int64_t iterations,
                                float dynamic_scale, int64_t step_counter);
/* 1 if the last call changed the variables (a step or an EMA overwrite). */
int adadelta_dist_vars_changed(const adadelta *opt);

#endif
