/* adadelta.h - Keras 3 Adadelta optimizer in C, exact Keras semantics for
 * float32 and float64 variables (mixable in one optimizer), OpenMP.
 *
 * One optimizer (an opaque `adadelta`) is created from an `adadelta_config`
 * that mirrors the keyword arguments of keras.optimizers.Adadelta. Variables
 * are registered by name, data pointer and shape; `adadelta_apply` then takes
 * one gradient pointer per variable, exactly like `optimizer.apply(grads)`.
 *
 * Errors: every call that can fail returns an int status, 0 (ADADELTA_OK) or a
 * negative ADADELTA_E* code. adadelta_status_name() and adadelta_strerror()
 * turn it into text; adadelta_last_error() gives the message of the last
 * failure in the calling thread ("config: rho = 2 is outside [0, 1]"). A call
 * that fails changes nothing.
 *
 * Thread safety: distinct optimizers may be used from different threads at
 * the same time. One optimizer must not be used by two threads at once.
 * adadelta_apply itself runs its work on an OpenMP team of
 * adadelta_threads() threads; results do not depend on that number.
 */
#ifndef ADADELTA_H
#define ADADELTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports exactly the functions declared with this. */
#if defined(__GNUC__) && defined(ADADELTA_BUILDING)
#define ADADELTA_EXTERN __attribute__((visibility("default")))
#else
#define ADADELTA_EXTERN
#endif

#define ADADELTA_VERSION_MAJOR 0
#define ADADELTA_VERSION_MINOR 1
#define ADADELTA_VERSION_PATCH 0
#define ADADELTA_VERSION_HEX                                                  \
    ((ADADELTA_VERSION_MAJOR << 16) | (ADADELTA_VERSION_MINOR << 8) |         \
     ADADELTA_VERSION_PATCH)

/* Runtime version, e.g. 0x000100 and "0.1.0". */
ADADELTA_EXTERN unsigned adadelta_version(void);
ADADELTA_EXTERN const char *adadelta_version_string(void);

/* ---------------------------------------------------------------- status */

/* Every status: its name, value and text, in one list (the enum, the
 * names and the messages below are all made from it). */
#define ADADELTA_STATUS_MAP(XX)                                               \
    XX(OK, 0, "success")                                                      \
    XX(EINVAL, -1, "invalid argument")                                        \
    XX(ENOMEM, -2, "out of memory")                                           \
    XX(EIO, -3, "input/output error")                                         \
    XX(EFORMAT, -4, "malformed file")                                         \
    XX(EMISMATCH, -5, "inputs disagree")                                      \
    XX(ENOGRAD, -6, "no gradients provided for any variable")                 \
    XX(ESTATE, -7, "call not allowed in this state")                          \
    XX(ENONFINITE, -8, "non-finite gradient")                                 \
    XX(ENOTFOUND, -9, "not found")

/* ADADELTA_EINVAL: invalid argument or config value; ENOMEM: out of memory;
 * EIO: a file could not be opened, read or written; EFORMAT: a file is
 * truncated, corrupted or malformed; EMISMATCH: inputs disagree (names,
 * shapes, dtypes, ranks); ENOGRAD: apply() got no gradient for any
 * variable; ESTATE: call not allowed now (e.g. add after the build);
 * ENONFINITE: non-finite gradient with check_finite on; ENOTFOUND: no such
 * variable, slot or key. */
enum {
#define ADADELTA_STATUS_ENUM(name, value, text) ADADELTA_##name = value,
    ADADELTA_STATUS_MAP(ADADELTA_STATUS_ENUM)
#undef ADADELTA_STATUS_ENUM
};

/* "ADADELTA_EINVAL", ... ; "invalid argument", ... */
ADADELTA_EXTERN const char *adadelta_status_name(int status);
ADADELTA_EXTERN const char *adadelta_strerror(int status);
/* Message of the last failed call of either library (libadadelta,
 * libadadelta_mpi) in this thread ("" if none). */
ADADELTA_EXTERN const char *adadelta_last_error(void);

/* ------------------------------------------------------- learning rate */

/* The learning rate: a constant, one of Keras's six schedules (evaluated with
 * the raw iteration count, in float32), or a callback (Keras's callable,
 * called once per apply). Fill it with one of the adadelta_lr_* helpers or
 * field by field. */
typedef enum {
    ADADELTA_LR_CONSTANT = 0,
    ADADELTA_LR_EXPONENTIAL_DECAY,
    ADADELTA_LR_INVERSE_TIME_DECAY,
    ADADELTA_LR_POLYNOMIAL_DECAY,
    ADADELTA_LR_PIECEWISE_CONSTANT_DECAY,
    ADADELTA_LR_COSINE_DECAY,
    ADADELTA_LR_COSINE_DECAY_RESTARTS,
    ADADELTA_LR_CALLBACK
} adadelta_lr_kind;

#define ADADELTA_MAX_PIECES 64 /* PiecewiseConstantDecay boundaries */

typedef float (*adadelta_lr_callback)(void *user_data);

typedef struct adadelta_learning_rate {
    adadelta_lr_kind kind;
    double value;                 /* CONSTANT */
    double initial_learning_rate; /* every schedule but piecewise */
    double decay_steps;           /* also CosineDecayRestarts' first_decay_steps */
    double decay_rate;            /* exponential, inverse time */
    int staircase;                /* exponential, inverse time */
    double end_learning_rate;     /* polynomial (0.0001) */
    double power;                 /* polynomial (1.0) */
    int cycle;                    /* polynomial */
    double alpha;                 /* cosine, cosine restarts (0.0) */
    double warmup_target;         /* cosine: ADADELTA_UNSET for none */
    double warmup_steps;          /* cosine (0) */
    double t_mul, m_mul;          /* cosine restarts (2.0, 1.0) */
    int n_boundaries;             /* piecewise: values has n_boundaries + 1 */
    double boundaries[ADADELTA_MAX_PIECES];
    double values[ADADELTA_MAX_PIECES + 1];
    char name[64];                /* the schedule's Keras name (get_config) */
    adadelta_lr_callback callback; /* CALLBACK */
    void *user_data;
} adadelta_learning_rate;

/* Each fills *lr with the schedule and Keras's defaults for the rest. */
ADADELTA_EXTERN void adadelta_lr_constant(adadelta_learning_rate *lr, double value);
ADADELTA_EXTERN void adadelta_lr_exponential_decay(adadelta_learning_rate *lr, double initial,
                                   double decay_steps, double decay_rate,
                                   int staircase);
ADADELTA_EXTERN void adadelta_lr_inverse_time_decay(adadelta_learning_rate *lr, double initial,
                                    double decay_steps, double decay_rate,
                                    int staircase);
ADADELTA_EXTERN void adadelta_lr_polynomial_decay(adadelta_learning_rate *lr, double initial,
                                  double decay_steps, double end_learning_rate,
                                  double power, int cycle);
/* values must hold n_boundaries + 1 numbers; returns ADADELTA_EINVAL when
 * n_boundaries is outside [0, ADADELTA_MAX_PIECES]. */
ADADELTA_EXTERN int adadelta_lr_piecewise_constant_decay(adadelta_learning_rate *lr,
                                         int n_boundaries,
                                         const double *boundaries,
                                         const double *values);
ADADELTA_EXTERN void adadelta_lr_cosine_decay(adadelta_learning_rate *lr, double initial,
                              double decay_steps, double alpha,
                              double warmup_target, double warmup_steps);
ADADELTA_EXTERN void adadelta_lr_cosine_decay_restarts(adadelta_learning_rate *lr,
                                       double initial,
                                       double first_decay_steps, double t_mul,
                                       double m_mul, double alpha);
ADADELTA_EXTERN void adadelta_lr_from_callback(adadelta_learning_rate *lr,
                               adadelta_lr_callback fn, void *user_data);

/* Value of a schedule at a step, in float32 as Keras computes it. The
 * callback kind calls the callback. Returns NaN for an unknown kind. */
ADADELTA_EXTERN float adadelta_lr_evaluate(const adadelta_learning_rate *lr, int64_t step);

/* --------------------------------------------------------------- config */

/* "Unset" (Keras's None) for the optional floating-point fields below. */
#define ADADELTA_UNSET (__builtin_nan(""))
ADADELTA_EXTERN int adadelta_is_set(double x); /* 1 unless x is ADADELTA_UNSET (NaN) */

#define ADADELTA_NAME_MAX 128

/* One field per keyword argument of keras.optimizers.Adadelta (plus the
 * LossScaleOptimizer wrapper). adadelta_config_default() fills Keras's
 * defaults. Optional doubles are ADADELTA_UNSET when unset; optional ints
 * are 0 when unset. */
typedef struct adadelta_config {
    adadelta_learning_rate learning_rate; /* 0.001 */
    double rho;                           /* 0.95 */
    double epsilon;                       /* 1e-7 */
    double weight_decay;                  /* unset */
    double clipnorm;                      /* unset */
    double clipvalue;                     /* unset */
    double global_clipnorm;               /* unset */
    int use_ema;                          /* 0 */
    double ema_momentum;                  /* 0.99 */
    int64_t ema_overwrite_frequency;      /* 0 = None */
    double loss_scale_factor;             /* unset */
    int64_t gradient_accumulation_steps;  /* 0 = None */
    char name[ADADELTA_NAME_MAX];         /* "adadelta" */

    /* keras.optimizers.LossScaleOptimizer around this Adadelta. */
    int dynamic_loss_scale;               /* 0 */
    double initial_scale;                 /* 32768 */
    int64_t dynamic_growth_steps;         /* 2000 */
    char loss_scale_name[ADADELTA_NAME_MAX]; /* "loss_scale_optimizer" */

    /* Not Keras: refuse a non-finite gradient before changing anything. */
    int check_finite;                     /* 0 */
} adadelta_config;

ADADELTA_EXTERN void adadelta_config_default(adadelta_config *cfg);
/* Checks cfg as Keras's constructor does; ADADELTA_EINVAL and a message
 * naming the argument and value when it is refused. */
ADADELTA_EXTERN int adadelta_config_validate(const adadelta_config *cfg);

/* Keras get_config() JSON (LossScaleOptimizer's when dynamic_loss_scale).
 * Returns a malloc'ed string (free() it) or NULL with the last error set.
 * A callback learning rate is written as null. */
ADADELTA_EXTERN char *adadelta_config_to_json(const adadelta_config *cfg);
/* Parses a get_config() JSON object (replay-cli.md's --config form): missing
 * keys take Keras's defaults, unknown keys, wrong types and invalid values
 * are ADADELTA_EINVAL naming the key. cfg is only written on success. */
ADADELTA_EXTERN int adadelta_config_from_json(adadelta_config *cfg, const char *json);
/* What the last adadelta_config_from_json in this thread accepted with a
 * warning, as Keras warns ("config: decay is no longer supported..."); ""
 * if nothing. The full keras.optimizers.serialize() form ({"module",
 * "class_name": "Adadelta" or "LossScaleOptimizer", "config", ...}) is read
 * too. */
ADADELTA_EXTERN const char *adadelta_last_warning(void);

/* ------------------------------------------------------------ optimizer */

typedef struct adadelta adadelta;

/* The dtype of a variable; its gradients, slots, EMA and accumulator have
 * the same one. */
typedef enum {
    ADADELTA_F32 = 0,  /* float */
    ADADELTA_F64 = 1,  /* double */
    ADADELTA_F16 = 2,  /* IEEE binary16 (uint16_t bits) */
    ADADELTA_BF16 = 3  /* bfloat16 (uint16_t bits: a float's upper half) */
} adadelta_dtype;

#define ADADELTA_MAX_DIMS 8
/* The longest variable name, in bytes (it goes into saved states). */
#define ADADELTA_VARIABLE_NAME_MAX 4096

/* Validates cfg and creates an optimizer; *out is NULL on failure. */
ADADELTA_EXTERN int adadelta_create(const adadelta_config *cfg, adadelta **out);
ADADELTA_EXTERN void adadelta_destroy(adadelta *opt);
ADADELTA_EXTERN const adadelta_config *adadelta_get_config(const adadelta *opt);
/* adadelta_config_from_json + adadelta_create: an optimizer from Keras's
 * get_config() JSON (for bindings that do not build the struct). */
ADADELTA_EXTERN int adadelta_create_from_json(const char *config_json, adadelta **out);

/* Changes the learning rate from the next apply on, as Keras allows
 * `optimizer.learning_rate = x` (a float or a schedule) during training:
 * validated like a config's; refused values change nothing. The _json form
 * takes Keras's learning_rate value: a number or a schedule's serialized
 * object ({"class_name": "ExponentialDecay", "config": {...}}). */
ADADELTA_EXTERN int adadelta_set_learning_rate(adadelta *opt, const adadelta_learning_rate *lr);
ADADELTA_EXTERN int adadelta_set_learning_rate_json(adadelta *opt, const char *json);
/* The same with a callback (Keras's callable learning rate). */
ADADELTA_EXTERN int adadelta_set_learning_rate_callback(adadelta *opt, adadelta_lr_callback fn,
                                                        void *user_data);

/* Registers a variable (Keras's var_list order is the order of these calls).
 * data stays owned by the caller and must live as long as the optimizer;
 * the optimizer updates it in place. dtype ADADELTA_F32, ADADELTA_F64,
 * ADADELTA_F16 or ADADELTA_BF16 (data of the 16-bit ones is their uint16_t
 * bit patterns), mixable in one optimizer: its gradients, slots, EMA and
 * accumulator have it, and every op of its step is rounded to it, as Keras
 * computes in the variable's dtype (the learning rate is a float32 value,
 * so a float64 variable sees f64(f32(lr)), a float16 one f16(f32(lr)); a
 * 16-bit gradient inside a LossScaleOptimizer is float32 until the step
 * casts it; README "Dtypes" lists the rules).
 * ndim 0 is a scalar. Allowed only before the optimizer is built. Returns the
 * variable's index (>= 0) or a negative status. A name that could not be
 * saved and loaded is refused: empty, not well-formed UTF-8, longer than
 * ADADELTA_VARIABLE_NAME_MAX, `__metadata__`, starting with `optimizer/`,
 * or one that would take a saved state's header past the readers' limit. */
ADADELTA_EXTERN int adadelta_add_variable(adadelta *opt, const char *name, adadelta_dtype dtype,
                          void *data, int ndim, const int64_t *shape);
ADADELTA_EXTERN int adadelta_num_variables(const adadelta *opt);
/* Index of a variable by name, or ADADELTA_ENOTFOUND. */
ADADELTA_EXTERN int adadelta_find_variable(const adadelta *opt, const char *name);
ADADELTA_EXTERN const char *adadelta_variable_name(const adadelta *opt, int index);
ADADELTA_EXTERN int64_t adadelta_variable_size(const adadelta *opt, int index);
ADADELTA_EXTERN int adadelta_variable_shape(const adadelta *opt, int index, int *ndim,
                            int64_t shape[ADADELTA_MAX_DIMS]);
ADADELTA_EXTERN void *adadelta_variable_data(const adadelta *opt, int index);
/* The variable's dtype, or -1 for an index that does not exist. */
ADADELTA_EXTERN int adadelta_variable_dtype(const adadelta *opt, int index);

/* Keras's build(): allocates the slot variables of all registered variables
 * (one contiguous block per slot kind). Done by the first apply, save, load
 * or slot access if not called before; afterwards no variable can be added
 * and apply never allocates. */
ADADELTA_EXTERN int adadelta_build(adadelta *opt);

/* Keras exclude_from_weight_decay(var_list, var_names): variables by index,
 * and names joined with '|' into one POSIX extended regular expression that
 * is searched in each variable's short name (after its last '/'). Before the
 * first apply only. Either list may be empty. */
ADADELTA_EXTERN int adadelta_exclude_from_weight_decay(adadelta *opt, const int *indices,
                                       int n_indices, const char *const *names,
                                       int n_names);
/* 1 if weight decay applies to the variable, 0 if excluded. */
ADADELTA_EXTERN int adadelta_uses_weight_decay(const adadelta *opt, int index);

/* One optimizer.apply(grads): grads[i] is the gradient of variable i (same
 * shape and dtype as the variable) or NULL for "no gradient this call"
 * (Keras's None). ADADELTA_ENOGRAD when all are NULL. In C an array of
 * float pointers may be passed as it is (ADADELTA_GRADS below). */
ADADELTA_EXTERN int adadelta_apply(adadelta *opt, const void *const *grads);

/* Keras finalize_variable_values(): with use_ema, copies the averages into
 * the variables; otherwise nothing. */
ADADELTA_EXTERN int adadelta_finalize_variable_values(adadelta *opt);

/* OpenMP threads used by apply (default: omp_get_max_threads()). */
ADADELTA_EXTERN int adadelta_set_threads(adadelta *opt, int threads);
ADADELTA_EXTERN int adadelta_threads(const adadelta *opt);

/* The number of apply calls so far (Keras's optimizer._iterations). */
ADADELTA_EXTERN int64_t adadelta_iterations(const adadelta *opt);
/* The learning rate the next apply will use (calls a callback); float32,
 * cast to each variable's dtype. */
ADADELTA_EXTERN float adadelta_current_learning_rate(const adadelta *opt);

typedef enum {
    ADADELTA_SLOT_ACCUMULATED_GRAD = 0,      /* E[g^2] */
    ADADELTA_SLOT_ACCUMULATED_DELTA_VAR = 1, /* E[dx^2] */
    ADADELTA_SLOT_EMA = 2,                   /* use_ema */
    ADADELTA_SLOT_GRADIENT_ACCUMULATOR = 3   /* gradient_accumulation_steps */
} adadelta_slot_kind;

/* Pointer to a slot variable of variable `index` (same size and dtype as
 * it), or NULL with the last error set when that slot does not exist.
 * Writable: a caller that changes it changes the optimizer's state. Builds
 * the optimizer. */
ADADELTA_EXTERN void *adadelta_slot(const adadelta *opt, int index, adadelta_slot_kind slot);

/* LossScaleOptimizer state (dynamic_loss_scale only). */
ADADELTA_EXTERN float adadelta_dynamic_scale(const adadelta *opt);
ADADELTA_EXTERN int64_t adadelta_step_counter(const adadelta *opt);

/* --------------------------------------------------------- saved state */

/* Saves the whole training state (state-format.md: safetensors with the
 * variables, optimizer/... tensors and metadata) atomically: a temporary file
 * in the same folder, fsync, rename. Written straight from the optimizer's
 * memory: no copy of the state. */
ADADELTA_EXTERN int adadelta_save(const adadelta *opt, const char *path);
/* Loads a state saved for an optimizer with the same variables (names,
 * shapes, dtypes, order) and a compatible config. Everything is checked
 * before anything changes (the checksum read through a buffer, see
 * adadelta_set_checkpoint_buffer, then the data read into place); on
 * failure the optimizer is untouched (but for a read error of the disk
 * after the checks, ADADELTA_EIO, which leaves the state partly loaded). */
ADADELTA_EXTERN int adadelta_load(adadelta *opt, const char *path);
/* The most memory a save or a load uses beyond the state itself: the
 * buffer through which a load checks the file (and an MPI save or load
 * moves the parts a rank does not hold). Default 16 MiB; 4 KiB .. 1 GiB. */
#define ADADELTA_CHECKPOINT_BUFFER_DEFAULT ((size_t)16 << 20)
ADADELTA_EXTERN int adadelta_set_checkpoint_buffer(adadelta *opt, size_t bytes);
ADADELTA_EXTERN size_t adadelta_checkpoint_buffer(const adadelta *opt);
/* After a successful load: the saved hyperparameters (rho, epsilon, the
 * learning rate, ...) that differ from the optimizer's, which it keeps, as
 * one line ("path: ...: rho 0.9 (saved 0.95)"); "" when none differ. Loads
 * never change hyperparameters silently: a caller shows or checks this. */
ADADELTA_EXTERN const char *adadelta_load_report(const adadelta *opt);
/* Builds a fresh optimizer from a state file alone: its config (or
 * `override` when not NULL; the saved tensors must then fit it, else
 * ADADELTA_EMISMATCH), its variables (storage owned by the optimizer, see
 * adadelta_variable_data) and its whole state. For tools that resume. */
ADADELTA_EXTERN int adadelta_create_from_state(const char *path, const adadelta_config *override,
                               adadelta **out);

/* ------------------------------------------------------------- kernels */

/* The instruction set of the step's loops: "avx512fp16" (AVX-512 with
 * float16 arithmetic, used by float16 steps), "avx512f" (with AVX512BW),
 * "avx2" or "default" (baseline x86-64, or portable C elsewhere). Chosen
 * once per process, the best the CPU runs, unless
 * ADADELTA_KERNEL=avx512fp16|avx512f|avx2|default in the
 * environment pins one (an unsupported or unknown name is ignored, with the
 * choice falling back as without it). Every kernel computes the same bits. */
ADADELTA_EXTERN const char *adadelta_kernel(void);

/* ------------------------------------------------------ gradient arrays */

/* The gradient arrays of adadelta_apply (and adadelta_mpi_apply) are
 * const void *const *: one pointer per variable, each in its variable's
 * dtype. In C11 a float or double pointer array converts without a cast
 * (checked: other pointer types do not compile). */
#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define ADADELTA_GRADS(g)                                                                   \
    _Generic((g), const float **: (const void *const *)(g),                                 \
             float **: (const void *const *)(g),                                            \
             const float *const *: (const void *const *)(g),                                \
             const double **: (const void *const *)(g),                                     \
             double **: (const void *const *)(g),                                           \
             const double *const *: (const void *const *)(g),                               \
             const uint16_t **: (const void *const *)(g),                                   \
             uint16_t **: (const void *const *)(g),                                         \
             const uint16_t *const *: (const void *const *)(g),                             \
             const void **: (const void *const *)(g),                                       \
             void **: (const void *const *)(g),                                             \
             const void *const *: (g))
#ifndef ADADELTA_BUILDING
#define adadelta_apply(opt, grads) (adadelta_apply)((opt), ADADELTA_GRADS(grads))
#endif
#endif

/* -------------------------------------------------------------- private */

/* For libadadelta_mpi only: its versioned interface to this library's
 * internals, or NULL when `version` is not the one provided. Not for
 * applications; may change in any release. */
ADADELTA_EXTERN const void *adadelta_private_interface(int version);

#ifdef __cplusplus
}
#endif

#endif /* ADADELTA_H */
