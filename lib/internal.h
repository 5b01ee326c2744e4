/* internal.h - the optimizer's layout and the helpers shared inside lib/,
 * grouped by the file that defines them. Not installed. */
#ifndef ADADELTA_INTERNAL_H
#define ADADELTA_INTERNAL_H

#include "adadelta.h"
#include "kernels/kernel.h"
#include "state_tensors.h"

#include <regex.h>
#include <stdarg.h>

/* Work is cut into shards of at most this many elements; a shard never
 * crosses a variable. Reductions are summed per shard and then over shards in
 * order, so results do not depend on how threads (or ranks) share shards. */
#define ADADELTA_SHARD_ELEMS 16384

typedef struct adadelta_var {
    char *name;
    adadelta_dtype dtype;
    int ndim;
    int64_t shape[ADADELTA_MAX_DIMS];
    int64_t size;
    int64_t flat_offset;  /* first element in the concatenation of all vars */
    int first_shard;      /* index of its first shard */
    void *data;           /* dtype elements */
    size_t esize;         /* bytes of one element */
    int owns_data;        /* created from a state file */
    /* Slots cover elements [slot_begin, slot_end) of the variable: all of
     * it, except in a sharded optimizer (the MPI layer's ZeRO-1 mode) for
     * the slot kinds the table marks as sharded. They point into the
     * optimizer's slot blocks, NULL until it is built. */
    void *slot[ADADELTA_N_SLOTS]; /* in the variable's dtype */
    int64_t slot_begin, slot_end;
    int excluded_by_index;
    int uses_weight_decay;
    int64_t half_off;     /* 16-bit: its elements in dist_half */
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
    size_t header_bytes; /* bound of the variables' part of a saved header */
    /* Variables by name (open addressing over indices + 1, 0 = empty). */
    int *name_index;
    int name_index_cap;
    /* Per-variable scratch, sized with vars so apply never allocates. */
    double *var_clip_b;         /* clipnorm denominators (in the var's dtype) */
    const void **var_grads;     /* gradient pointers of a reduced call */
    /* A data-parallel step's 16-bit gradients, cast from the reduced
     * float32 mean (dist_half.c); made by adadelta__dist_setup. */
    uint16_t *dist_half;

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
    void *slot_block[ADADELTA_N_SLOTS];
    int n_f64;           /* variables of dtype ADADELTA_F64 */
    int n_half;          /* variables of dtype ADADELTA_F16 or ADADELTA_BF16 */

    int64_t iterations;
    float dynamic_scale;
    int64_t step_counter;
    int applied;         /* at least one apply: no more exclusions */
    int vars_changed;    /* last call changed the variables */
    int wrapped;         /* driven by a data-parallel layer: direct calls
                            that would desynchronise the processes refuse */

    int has_exclude_regex;
    regex_t exclude_regex;

    /* After a load: the saved hyperparameters that differ from ours. */
    char load_report[512];
    size_t checkpoint_buffer; /* bytes (adadelta_set_checkpoint_buffer) */
};

/* ------------------------------------------------------------ status.c */
int adadelta__fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int adadelta__vfail(int status, const char *fmt, va_list ap);
void adadelta__clear_error(void);

/* ------------------------------------------------------------- slots.c */
/* The slot kinds, in Keras's order (the order of a saved state). */
typedef struct adadelta_slot_info {
    const char *dir;  /* "optimizer/<dir>/<variable>" in a saved state */
    int sharded;      /* split over the processes of a sharded optimizer */
} adadelta_slot_info;
extern const adadelta_slot_info adadelta__slots[ADADELTA_N_SLOTS];
/* 1 if the config has slot kind k. */
int adadelta__slot_needed(const adadelta_config *cfg, int k);
/* Elements of slot k that variable v holds here (its own range when the
 * kind is sharded). */
int64_t adadelta__slot_length(const adadelta_var *var, int k);
/* First element of the variable held by slot k (0 unless sharded). */
int64_t adadelta__slot_first(const adadelta_var *var, int k);
/* Slot k of var at element `elem` of the variable, or NULL without it. */
void *adadelta__slot_at(const adadelta_var *var, int k, int64_t elem);
/* The variable's data at element `elem`. */
void *adadelta__data_at(const adadelta_var *var, int64_t elem);
/* Bytes of one element of a variable dtype; 0 if not a variable dtype. */
size_t adadelta__dtype_size(adadelta_dtype d);

/* ------------------------------------------------------------ config.c */
/* Checks that fail with "config: <what> = <x> ..." (ADADELTA_EINVAL). */
int adadelta__need_finite(const char *what, double x);
int adadelta__need_range(const char *what, double x, double lo, double hi);
int adadelta__need_positive(const char *what, double x);
int adadelta__optional_finite(const char *what, double x); /* NaN = unset */

/* ------------------------------------------------------------ schedule.c */
int adadelta__validate_lr(const adadelta_learning_rate *lr);
/* Clears lr to a kind, with Keras's defaults and the class's name. */
void adadelta__lr_start(adadelta_learning_rate *lr, adadelta_lr_kind kind);
/* The schedule table's JSON, both ways (config_json.c calls them). */
struct json_t;
struct json_t *adadelta__schedule_to_json(const adadelta_learning_rate *lr);
int adadelta__schedule_from_json(struct json_t *v, adadelta_learning_rate *lr);

/* ------------------------------------------------------------ config_json.c */
/* A saved state's config, where a callback learning rate was written as null
 * (it then reads as the default constant). */
int adadelta__config_from_saved_json(adadelta_config *cfg, const char *json);
/* Typed getters of a JSON object: each returns 0 when the key is absent
 * (the default stays) and fails with "config: <prefix><key> ..." when its
 * type is wrong. */
int adadelta__json_number(struct json_t *o, const char *prefix, const char *key, double *out,
                          int nullable);
int adadelta__json_bool(struct json_t *o, const char *prefix, const char *key, int *out);
int adadelta__json_string(struct json_t *o, const char *prefix, const char *key, char *out,
                          size_t cap);
int adadelta__json_only_keys(struct json_t *o, const char *prefix, const char *const *allowed);
int adadelta__json_need_key(struct json_t *o, const char *prefix, const char *key);
/* The keys whose values differ between two get_config() JSON texts, as
 * "rho 0.9 (<label> 0.95), ..." in out; their number. */
int adadelta__config_diff(const char *mine, const char *theirs, const char *label, char *out,
                          size_t cap);
/* A step count: an integer when integral (Keras writes ints). */
struct json_t *adadelta__json_steps(double x);

/* ------------------------------------------------------------ optimizer.c */
void *adadelta__alloc_bytes(size_t n);    /* zeroed, 64-byte aligned */
/* Allocates the slot blocks (once); logically const, so it may be called
 * from const entry points. */
int adadelta__build(const adadelta *opt);
int adadelta__sharded(const adadelta *opt);
/* set_learning_rate without the wrapped check. */
int adadelta__set_learning_rate(adadelta *opt, const adadelta_learning_rate *lr);
/* Keras's learning_rate value (a number or a schedule object) as JSON. */
int adadelta__learning_rate_from_json(const char *text, adadelta_learning_rate *out);
/* ESTATE naming `who` when a data-parallel layer drives opt. */
int adadelta__refuse_wrapped(const adadelta *opt, const char *who);

/* ------------------------------------------------------------ variables.c */
const adadelta_var *adadelta__var_at(const adadelta *opt, int index);
int adadelta__index_of(const adadelta *opt, const char *name);
/* Grows the per-variable and per-shard arrays; nothing else changes. */
int adadelta__reserve(adadelta *opt, int n_vars, int n_shards);

/* ------------------------------------------------------------ shard.c */
typedef void (*adadelta_shard_fn)(adadelta *opt, int s, void *ctx);
/* fn on every shard this process updates, on the thread team: thread t
 * always gets the same shards (first-touch friendly). */
void adadelta__for_each_shard(adadelta *opt, adadelta_shard_fn fn, void *ctx);
/* The same over every shard (gradient accumulators are never sharded). */
void adadelta__for_all_shards(adadelta *opt, adadelta_shard_fn fn, void *ctx);
/* fn(lo, hi, ctx) over [0, n) cut into blocks of `block`, on the team. */
void adadelta__parallel_blocks(const adadelta *opt, int64_t n, int64_t block,
                               void (*fn)(int64_t lo, int64_t hi, void *ctx), void *ctx);
/* Appends the shards of a new variable v of `size` elements. */
void adadelta__add_shards(adadelta *opt, int v, int64_t size);
int64_t adadelta__shard_offset(const adadelta *opt, int s);
void adadelta__partition(const adadelta *opt, int parts, int *bounds);

/* ------------------------------------------------------------ step_params.c */
float adadelta__learning_rate_now(const adadelta *opt);
/* The divisor of a loss scale (LossScaleOptimizer or loss_scale_factor). */
void adadelta__set_divisor(const adadelta *opt, adadelta_step_params *p,
                           adadelta_step_params_f64 *p64); /* p64 may be NULL */
/* rho, epsilon, lr, weight decay of an update call; lr: the learning
 * rate already evaluated for this call, or NULL to evaluate it. */
void adadelta__set_update_params(const adadelta *opt, adadelta_step_params *p,
                                 adadelta_step_params_f64 *p64, const float *lr);
/* ENONFINITE when check_finite is on and the learning rate of this call is
 * not finite (a callback's NaN would poison every variable). */
int adadelta__refuse_nonfinite_lr(const adadelta *opt, float lr);
/* EMA constants of this call (Keras's public iteration count). */
void adadelta__set_ema_params(const adadelta *opt, adadelta_step_params *p,
                              adadelta_step_params_f64 *p64);
/* Clip constants of a call (both dtypes) from the per-shard sums of squares
 * in opt->partials. */
struct adadelta_call;
void adadelta__set_clip_params(adadelta *opt, struct adadelta_call *c);
/* The 16-bit dtypes' constants (all but the clip's) from the float32 ones
 * already set and the config; after the divisor, update and EMA params. */
void adadelta__set_half_params(const adadelta *opt, struct adadelta_call *c);
int adadelta__needs_norms(const adadelta_config *cfg);
int adadelta__is_accumulation_only(const adadelta *opt);
/* LossScaleOptimizer bookkeeping after a finite call / a skipped one. */
void adadelta__count_finite_call(adadelta *opt);
void adadelta__skip_nonfinite_call(adadelta *opt);

/* ------------------------------------------------------------ apply.c */
/* What one call does, shared by the shard loops: the constants in each
 * dtype (p for float32 variables, p64 for float64 ones, p16 and pbf16 for
 * the 16-bit ones). */
typedef struct adadelta_call {
    const void *const *grads; /* per variable, its dtype; NULL = no gradient */
    adadelta_step_params p;
    adadelta_step_params_f64 p64;
    adadelta_step_params p16, pbf16;
    /* A data-parallel update: a 16-bit variable's gradient is the float32
     * mean of the processes' contributions (dist_half.c). */
    int half_mean;
} adadelta_call;
/* 1 if gradient g of shard s (in its variable's dtype) is finite. */
int adadelta__shard_finite(const adadelta *opt, int s, const void *g);
/* Checks the arguments of an apply-like call; ENOGRAD when no gradient. */
int adadelta__check_grads(const adadelta *opt, const void *const *grads, const char *who);
/* 1 if every present gradient is finite. */
int adadelta__grads_finite(adadelta *opt, adadelta_call *c);
/* An accumulation-only call: acc += g / scale, EMA, counters. */
void adadelta__accumulate_call(adadelta *opt, adadelta_call *c);
/* The norm partials of the call's gradients over the owned shards; one
 * shard's (a shard function taking the call). */
void adadelta__sum_squares(adadelta *opt, adadelta_call *c);
void adadelta__shard_sum_squares(adadelta *opt, int s, void *call);
/* Clip constants (norms in opt->partials), the step over the owned shards,
 * EMA and counters. */
void adadelta__update_call(adadelta *opt, adadelta_call *c);
/* finalize_variable_values without the wrapped check. */
int adadelta__finalize(adadelta *opt);

/* ------------------------------------------------------------ dist_half.c */
/* The scratch of the 16-bit variables' gradients in a data-parallel step
 * (once, before the first one). */
int adadelta__dist_setup(adadelta *opt);
/* Shard s of a 16-bit variable in a call with half_mean: its norm partial,
 * and its step with the call's params q of its dtype (clip_b and weight
 * decay set for the variable). */
double adadelta__half_mean_sum_squares(adadelta *opt, int s, const adadelta_call *c);
void adadelta__half_mean_step(adadelta *opt, int s, const adadelta_call *c,
                              const adadelta_step_params *q);

#endif
