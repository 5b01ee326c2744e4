/* adadelta_mpi.h - data-parallel Keras Adadelta over MPI, on top of adadelta.h.
 *
 * Every rank creates the optimizer with the same config and registers the
 * same variables (same names, shapes, order, same initial values). Each call
 * of adadelta_mpi_apply takes the rank's LOCAL gradients; the layer averages
 * them over the ranks (sum / R, reduced in a fixed order, so every rank gets
 * the same bits) and every rank applies the same step. Gradient-dependent
 * decisions are collective: the global norm, the LossScaleOptimizer finite
 * check, and which variables have a gradient (ranks must agree).
 *
 * Modes:
 *   ADADELTA_MPI_REPLICATED  every rank holds the whole optimizer state.
 *   ADADELTA_MPI_SHARDED     the optimizer state is split over the ranks
 *                            (ZeRO stage 1): reduce-scatter of the gradients,
 *                            each rank updates its shard, allgather of the
 *                            variables. Results are byte-identical to
 *                            replicated mode.
 *
 * All functions are collective over the communicator given at creation and
 * return the same status on every rank (add_variable, exclude, set_threads
 * and the getters are local; exclude only before the first apply). Thread safety as
 * adadelta.h: one optimizer per thread at a time, and MPI must allow the
 * calling thread. Variables of every dtype (float32, float64, float16,
 * bfloat16; mixable): each rank's contribution is summed in rank order in
 * float64 for a float64 variable, in float32 otherwise (a 16-bit mean is
 * then rounded to its dtype; README's MPI section). Any number of elements
 * (MPI calls are cut into chunks whose int counts fit).
 */
#ifndef ADADELTA_MPI_H
#define ADADELTA_MPI_H

/* Open MPI's C++ bindings are not needed (and removed in MPI-3). */
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <adadelta.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports exactly the functions declared with this. */
#if defined(__GNUC__) && defined(ADADELTA_MPI_BUILDING)
#define ADADELTA_MPI_EXTERN __attribute__((visibility("default")))
#else
#define ADADELTA_MPI_EXTERN
#endif

typedef struct adadelta_mpi adadelta_mpi;

typedef enum {
    ADADELTA_MPI_REPLICATED = 0,
    ADADELTA_MPI_SHARDED = 1
} adadelta_mpi_mode;

/* Collective. The communicator is duplicated. */
ADADELTA_MPI_EXTERN int adadelta_mpi_create(MPI_Comm comm, const adadelta_config *cfg,
                        adadelta_mpi_mode mode, adadelta_mpi **out);
/* Collective. Wraps a core optimizer built by the caller (config, variables,
 * exclusions, threads; e.g. adadelta_create_from_state to resume) that has
 * not applied yet. On success the wrapper owns it (adadelta_mpi_destroy
 * destroys it; variable data stays the caller's as in the core); on failure
 * the caller keeps it. */
ADADELTA_MPI_EXTERN int adadelta_mpi_wrap(MPI_Comm comm, adadelta *core, adadelta_mpi_mode mode,
                      adadelta_mpi **out);
ADADELTA_MPI_EXTERN void adadelta_mpi_destroy(adadelta_mpi *opt);
/* adadelta_mpi_wrap with the communicator as its Fortran handle
 * (MPI_Comm_c2f; mpi4py's comm.py2f()), so that bindings need not know the
 * MPI library's C handle layout. */
ADADELTA_MPI_EXTERN int adadelta_mpi_wrap_fortran(int comm, adadelta *core,
                                                  adadelta_mpi_mode mode, adadelta_mpi **out);

/* adadelta_set_learning_rate for every rank (Keras's
 * optimizer.learning_rate = x): collective; every rank must pass the same
 * learning rate, else ADADELTA_EMISMATCH everywhere and nothing changes. */
ADADELTA_MPI_EXTERN int adadelta_mpi_set_learning_rate(adadelta_mpi *opt,
                                                       const adadelta_learning_rate *lr);
ADADELTA_MPI_EXTERN int adadelta_mpi_set_learning_rate_json(adadelta_mpi *opt, const char *json);
/* A callback learning rate: local (callbacks cannot be compared); every
 * rank must give one that returns the same values. */
ADADELTA_MPI_EXTERN int adadelta_mpi_set_learning_rate_callback(adadelta_mpi *opt,
                                                                adadelta_lr_callback fn,
                                                                void *user_data);

/* Same meaning as adadelta_add_variable; every rank registers the same
 * variables in the same order with the same initial values. */
ADADELTA_MPI_EXTERN int adadelta_mpi_add_variable(adadelta_mpi *opt, const char *name,
                              adadelta_dtype dtype, void *data, int ndim,
                              const int64_t *shape);
ADADELTA_MPI_EXTERN int adadelta_mpi_exclude_from_weight_decay(adadelta_mpi *opt,
                                           const int *indices, int n_indices,
                                           const char *const *names,
                                           int n_names);

/* Collective check that all ranks share the config and the variables'
 * names, shapes and dtypes: ADADELTA_EMISMATCH on every rank otherwise.
 * Called by the first apply; callable earlier to fail fast. */
ADADELTA_MPI_EXTERN int adadelta_mpi_check_agreement(adadelta_mpi *opt);

/* One data-parallel step: grads are this rank's local gradients (NULL for
 * none; all ranks must agree on which are NULL). */
ADADELTA_MPI_EXTERN int adadelta_mpi_apply(adadelta_mpi *opt, const void *const *grads);
#if defined(ADADELTA_GRADS) && !defined(ADADELTA_MPI_BUILDING)
/* float or double pointer arrays as they are (adadelta.h) */
#define adadelta_mpi_apply(opt, grads) (adadelta_mpi_apply)((opt), ADADELTA_GRADS(grads))
#endif
ADADELTA_MPI_EXTERN int adadelta_mpi_finalize_variable_values(adadelta_mpi *opt);

/* The same step overlapped with the backward pass (DDP's and Horovod's
 * buckets): begin_step, then grad_ready once per variable, in any order,
 * as the backward pass produces the gradients (NULL: no gradient, Keras's
 * None), then end_step. Gradients are grouped into buckets of about
 * adadelta_mpi_set_bucket_bytes() (from the last variable back); a
 * bucket's reduction starts as soon as all its variables are ready and
 * advances during later grad_ready calls. A gradient's memory must stay
 * unchanged until end_step returns. The result is byte-identical to
 * adadelta_mpi_apply with the same gradients. begin_step and end_step are
 * collective; grad_ready is local. Misuse (a variable reported twice or
 * never, apply inside an open step) is refused where it happens, and
 * end_step then fails on every rank with the same status. */
ADADELTA_MPI_EXTERN int adadelta_mpi_begin_step(adadelta_mpi *opt);
ADADELTA_MPI_EXTERN int adadelta_mpi_grad_ready(adadelta_mpi *opt, int index, const void *grad);
ADADELTA_MPI_EXTERN int adadelta_mpi_end_step(adadelta_mpi *opt);

/* Where variable `index`'s gradient may be written for the next step
 * (zero copy, like DDP's gradient_as_bucket_view): a gradient passed to
 * apply or grad_ready that points here is reduced where it lies instead of
 * being copied into the layer's buffer, which saves one pass over the
 * gradients. The buffer lives in the reduction engine (a shared-memory
 * window on one node); its contents are consumed by the step and are
 * undefined after a step, a save or a load. NULL with the last error set
 * for a bad index, and for a float16 or bfloat16 variable (its buffer holds
 * float32 words: pass its gradient itself). The first call makes the plan (as the first step does)
 * and is collective: make it on every rank. */
ADADELTA_MPI_EXTERN void *adadelta_mpi_gradient_buffer(adadelta_mpi *opt, int index);

/* Bucket size of the overlapped step, before the first step (default
 * 4 MiB). Local; every rank must set the same (the first step fails with
 * ADADELTA_EMISMATCH on every rank otherwise). */
ADADELTA_MPI_EXTERN int adadelta_mpi_set_bucket_bytes(adadelta_mpi *opt, int64_t bytes);

/* Stall watchdog: a wait of the layer that lasts longer than `seconds`
 * (default 1800, or ADADELTA_MPI_TIMEOUT in the environment; 0 = never)
 * prints what it waited for and which ranks have not arrived, then aborts
 * the job (MPI_Abort), so a rank that stopped calling ends mpirun with an
 * error instead of a hang. Local. */
ADADELTA_MPI_EXTERN int adadelta_mpi_set_timeout(adadelta_mpi *opt, double seconds);

/* The compressed gradient exchange, as Horovod's Compression.fp16: each
 * rank's float32 contribution (gradient / loss scale) is rounded to the
 * 16-bit type (to nearest, ties to even; NaN stays NaN), the ranks' values
 * are summed in float32 in rank order and divided by the number of ranks,
 * and the mean is rounded to the 16-bit type too; the engines send 16-bit
 * values (half the bytes over MPI). Every rank, engine and mode still ends
 * with the same bits, but they are not Keras's: off by default. float16
 * turns values beyond +-65504 into +-Inf (the finite check looks at the
 * gradients before the rounding); bfloat16 keeps float32's range with 8
 * bits of precision. Checkpoints (the accumulators' mean) stay exact. With
 * a float64 variable the first step refuses it (ADADELTA_EINVAL on every
 * rank): its gradients would lose their precision. Before
 * the first step. Local; every rank must set the same (the first step fails
 * with ADADELTA_EMISMATCH on every rank otherwise).
 * ADADELTA_MPI_COMPRESSION=none|bf16|f16 in the environment sets the
 * default. */
typedef enum {
    ADADELTA_MPI_COMPRESS_NONE = 0,
    ADADELTA_MPI_COMPRESS_BF16 = 1,
    ADADELTA_MPI_COMPRESS_F16 = 2
} adadelta_mpi_compression;
ADADELTA_MPI_EXTERN int adadelta_mpi_set_compression(adadelta_mpi *opt,
                                                     adadelta_mpi_compression compression);

/* The reduction engine in use: "shm" (a shared-memory window: every rank
 * on one node), "hier" (a window on each node and a chain of point-to-point
 * messages through the nodes: ranks on several nodes, each node holding
 * consecutive ranks), "p2p" (MPI collectives), or "none" before the first
 * step. All three give the same bits. ADADELTA_MPI_SHM=0|1 in the
 * environment forces p2p, or shared memory wherever possible (the default
 * too); ADADELTA_MPI_NODE_RANKS=<L> (the same on every rank) makes nodes of
 * L consecutive ranks out of the ranks of one machine, to try "hier". */
ADADELTA_MPI_EXTERN const char *adadelta_mpi_engine(const adadelta_mpi *opt);
/* Per-step agreements made so far (one small collective, or one
 * shared-memory exchange, per step). */
ADADELTA_MPI_EXTERN unsigned long adadelta_mpi_agreements(const adadelta_mpi *opt);

/* Debug: compares a checksum of variables and optimizer state across ranks;
 * ADADELTA_EMISMATCH on every rank if any rank differs. When enabled, it
 * runs after every apply (also with ADADELTA_MPI_CHECK=1 in the environment). */
ADADELTA_MPI_EXTERN int adadelta_mpi_check_identical(adadelta_mpi *opt);
/* Local: a wish; the check runs on every rank when any rank wishes it
 * (the wishes travel with each step's agreement). */
ADADELTA_MPI_EXTERN void adadelta_mpi_set_check_identical(adadelta_mpi *opt, int on);

/* Saves one file, the bytes adadelta_save writes for the same state
 * whatever the mode and the rank count; loads one (saved by any number of
 * ranks in either mode) on every rank. Collective; atomic (a temporary
 * file, every rank's data flushed and agreed, one rename); a failure on any
 * rank leaves the previous file and returns the same status everywhere.
 *
 * In parallel: every rank writes its range of every tensor straight from
 * memory, rank 0 the header with the checksum combined from the ranks'
 * CRCs. If some rank cannot open the file rank 0 created (a folder that is
 * not shared between nodes), rank 0 writes it all, receiving the parts it
 * lacks through adadelta_checkpoint_buffer() bytes at a time. A load reads
 * the header, checks the checksum split among the ranks that see the same
 * file (each node checks its copy), then each rank reads what it keeps. No
 * rank holds more than its state and that buffer.
 *
 * Gradient accumulators are rank-local (each rank accumulates its own
 * gradients): the file holds their mean over the ranks, the accumulator
 * Keras would hold for the mean gradients. Resuming in the middle of an
 * accumulation cycle is therefore exact mathematically but not bit-exact;
 * at a cycle boundary (accumulators zero) it is bit-exact.
 * save_each: every rank writes the same bytes to its own path (a copy per
 * node), the parts it lacks coming from their owners a buffer at a time;
 * the renames wait until every copy is written and flushed, but a rename
 * failing on one rank after others succeeded leaves copies of two states
 * (a later load finds that and refuses, ADADELTA_EMISMATCH). A load on
 * ranks that read different files (another or an older copy) refuses the
 * same way. Save, load and broadcast refuse (ADADELTA_ESTATE) while an
 * overlapped step is open. */
ADADELTA_MPI_EXTERN int adadelta_mpi_save(adadelta_mpi *opt, const char *path);
ADADELTA_MPI_EXTERN int adadelta_mpi_save_each(adadelta_mpi *opt, const char *path);
ADADELTA_MPI_EXTERN int adadelta_mpi_load(adadelta_mpi *opt, const char *path);

/* The buffer of a save or a load (adadelta_set_checkpoint_buffer): this
 * rank's; a save moving parts between ranks uses the smallest of any. */
ADADELTA_MPI_EXTERN int adadelta_mpi_set_checkpoint_buffer(adadelta_mpi *opt, size_t bytes);

/* Root's variables to every rank (Horovod's broadcast_parameters): call it
 * after creating the variables so that every rank starts from the same
 * values. Before the first apply it also sets the EMA (use_ema) from the
 * broadcast values, as building would have. The optimizer states must be
 * at the same iteration (a state resumed on one rank only is refused,
 * ADADELTA_EMISMATCH: load the file on every rank). Collective. */
ADADELTA_MPI_EXTERN int adadelta_mpi_broadcast_variables(adadelta_mpi *opt, int root);
/* The first apply checks that every rank starts from the same variables
 * (a CRC-32C of them, exchanged with the step's agreement): different
 * initial values fail that apply with ADADELTA_EMISMATCH on every rank,
 * naming the ranks, instead of diverging silently. On by default; off
 * with on = 0 or ADADELTA_MPI_INITIAL_CHECK=0 in the environment. Local:
 * a wish, as with set_check_identical (off only when every rank says so). */
ADADELTA_MPI_EXTERN void adadelta_mpi_set_initial_check(adadelta_mpi *opt, int on);

/* Message of the last failed adadelta_mpi_* call in this thread (the same
 * channel as adadelta_last_error()); on ranks where another rank failed,
 * "rank N: <its message>". */
ADADELTA_MPI_EXTERN const char *adadelta_mpi_last_error(void);

/* The core optimizer of this rank, read-only (iterations, variables,
 * slots in replicated mode; in sharded mode adadelta_slot() of the core
 * holds only this rank's range; calls that would change it, such as
 * adadelta_apply or adadelta_load, refuse with ADADELTA_ESTATE while it is
 * wrapped), the mode, and the optimizer-state bytes held here:
 * the Adadelta slots and EMA (about 1/R of them when sharded) plus the
 * rank-local gradient accumulator (whole, as the gradients themselves). */
ADADELTA_MPI_EXTERN const adadelta *adadelta_mpi_core(const adadelta_mpi *opt);
ADADELTA_MPI_EXTERN adadelta_mpi_mode adadelta_mpi_get_mode(const adadelta_mpi *opt);
ADADELTA_MPI_EXTERN size_t adadelta_mpi_state_bytes(const adadelta_mpi *opt);
ADADELTA_MPI_EXTERN int adadelta_mpi_set_threads(adadelta_mpi *opt, int threads);

#ifdef __cplusplus
}
#endif

#endif /* ADADELTA_MPI_H */
