/* internal.h - the optimizer's layout and the helpers shared inside lib/.
 * Not installed. */
#ifndef ADADELTA_INTERNAL_H
#define ADADELTA_INTERNAL_H

#include "adadelta.h"
#include "kernels/kernel.h"

#include <regex.h>
#include <stdarg.h>

#define ADADELTA_N_SLOTS 4

/* Work is cut into shards of at most this many elements; a shard never
 * crosses a variable. Reductions are summed per shard and then over shards in
 * order, so results do not depend on how threads (or ranks) share shards. */
#define ADADELTA_SHARD_ELEMS 16384

typedef struct adadelta_var {
    char *name;
    int ndim;
    int64_t shape[ADADELTA_MAX_DIMS];
    int64_t size;
    int64_t flat_offset;  /* first element in the concatenation of all vars */
    float *data;
    int owns_data;        /* created from a state file */
    /* Slots cover elements [slot_begin, slot_end) of the variable: all of
     * it, except in a sharded optimizer (the MPI layer's ZeRO-1 mode). The
     * gradient accumulator always covers the whole variable. They point
     * into the optimizer's slot blocks, NULL until it is built. */
    float *slot[ADADELTA_N_SLOTS];
    int64_t slot_begin, slot_end;
    int excluded_by_index;
    int uses_weight_decay;
} adadelta_var;

typedef struct adadelta_shard {
    int var;
    int64_t begin, end; /* element range inside the variable */
} adadelta_shard;

struct adadelta {
    adadelta_config cfg;
    int n_vars, cap_vars;
    adadelta_var *vars;
    int64_t total_elements;
    /* Per-variable scratch, sized with vars so apply never allocates. */
    float *var_clip_b;          /* clipnorm denominators */
    const float **var_grads;    /* gradient pointers of a reduced call */
    unsigned char *var_present; /* which variables had a gradient */

    int n_shards, cap_shards;
    adadelta_shard *shards;
    double *partials;    /* one per shard: sum of squares of its gradient */
    int *shard_flags;    /* one per shard: scratch for non-finite checks */
    int own_lo, own_hi;  /* shards this process updates: [own_lo, own_hi) */
    int partitioned;     /* own_shards was called: norm partials are summed
                            over the processes (even by one owning all) */

    int threads;
    int *thread_bounds;  /* threads + 1 shard indices; thread t takes
                            [thread_bounds[t], thread_bounds[t+1]) */
    int bounds_valid;

    /* One block per slot kind for all variables (Keras's build()), so each
     * stream of the step runs through memory in order. */
    int built;
    float *slot_block[ADADELTA_N_SLOTS];

    int64_t iterations;
    float dynamic_scale;
    int64_t step_counter;
    int applied;         /* at least one apply: no more variables */
    int vars_changed;    /* last call changed the variables */

    int has_exclude_regex;
    regex_t exclude_regex;
};

/* status.c */
int adadelta__fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void adadelta__clear_error(void);

/* config.c */
int adadelta__validate_lr(const adadelta_learning_rate *lr);
/* Sets the kind and Keras's default name of that schedule class. */
void adadelta__lr_set_kind(adadelta_learning_rate *lr, adadelta_lr_kind kind);

/* config_json.c: a saved state's config, where a callback learning rate was
 * written as null (it then reads as the default constant). */
int adadelta__config_from_saved_json(adadelta_config *cfg, const char *json);

/* optimizer.c */
float *adadelta__alloc_floats(int64_t n); /* zeroed, 64-byte aligned */
/* Allocates the slot blocks (once); logically const, so it may be called
 * from const entry points. */
int adadelta__build(const adadelta *opt);
/* Elements of slot k of variable v (its own range when sharded). */
int64_t adadelta__slot_length(const adadelta_var *var, int k);
int adadelta__sharded(const adadelta *opt);
int adadelta__ensure_thread_bounds(adadelta *opt);
float adadelta__learning_rate_now(const adadelta *opt);
int adadelta__slot_present(const adadelta *opt, adadelta_slot_kind k);

/* crc32c.c */
uint32_t adadelta__crc32c(uint32_t crc, const void *data, size_t n);

#endif
