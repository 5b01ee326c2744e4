/* mpi_internal.h - the layout of an adadelta_mpi and what the files of
 * mpi/ share, grouped by the file that defines it. Not installed.
 *
 * The layer reaches the core only through its public API and its private
 * interface (adadelta_private.h, CORE below). */
#ifndef ADADELTA_MPI_INTERNAL_H
#define ADADELTA_MPI_INTERNAL_H

#include "adadelta_mpi.h"
#include "adadelta_private.h"

#include <stdarg.h>

/* The core's private interface (errors.c looks it up once; NULL when
 * libadadelta is not the version this layer was built with). */
const adadelta_private *adadelta_mpi__core_interface(void);
#define CORE adadelta_mpi__core_interface()

typedef struct reduce_engine reduce_engine;

/* Defaults of the settings (README's MPI section says why). */
#define ADADELTA_MPI_DEFAULT_BUCKET_BYTES ((int64_t)4 << 20)
#define ADADELTA_MPI_DEFAULT_TIMEOUT 1800.0

/* A bucket: consecutive whole variables whose gradients are reduced
 * together (the overlap API starts a bucket's reduction when all its
 * variables are ready). */
typedef struct bucket {
    int v_lo, v_hi;    /* variables [v_lo, v_hi) */
    int64_t lo, hi;    /* their flat range */
    int missing;       /* variables not reported yet in the open step */
    int started;       /* its reduction has started this step */
} bucket;

/* What the ranks agree on at every step, combined over ranks by an
 * exchange: exact whatever the order (min, max, or, and a sum of norm
 * partials that are non-zero on one rank each). */
typedef struct step_flags {
    uint64_t presence_min, presence_max; /* hash of which gradients are present */
    int32_t grads_null;  /* a rank passed grads == NULL */
    int32_t nonfinite;   /* a rank saw a non-finite gradient */
    int32_t error_rank;  /* the lowest rank that misused the overlap API, */
    int32_t error_status; /* its status and message (INT32_MAX: none) */
    char error[224];
    uint32_t vars_min, vars_max; /* first step: CRC-32C of the variables */
    int32_t initial_wish; /* a rank wants that compared */
    int32_t check_wish;   /* a rank wants the debug check after the step */
    int32_t n_partials;  /* doubles that follow (the norm partials) */
    int32_t pad;
    double partials[];
} step_flags;

/* An open overlap step (begin_step .. end_step). */
typedef struct open_step {
    int open;
    int error_status;           /* a misuse seen on this rank (0: none); the */
    char error[224];            /* step then fails on every rank with it */
    const void **grads;         /* per variable, as reported */
    unsigned char *reported;    /* per variable */
    int next_bucket;            /* buckets start in index order on every rank */
    adadelta_dist_step st;      /* the call as planned at begin_step */
} open_step;

struct adadelta_mpi {
    MPI_Comm comm;
    int rank, size;
    adadelta *core;
    adadelta_mpi_mode mode;
    int check;        /* this rank's wish: compare checksums after every step */
    int check_all;    /* some rank's wish, as the last step's flags said */
    int initial_check;   /* this rank's wish: compare the variables at the */
    int initial_checked; /* first step; done (the same on every rank) */
    int ready;        /* agreement done, plan made, buffers allocated */

    /* The plan (plan.c): the variables' flat layout and the ranks' ranges
     * of it (at shard boundaries; in sharded mode the state each owns). */
    int nv;
    int64_t total;    /* 4-byte words of the flat layout */
    int64_t *voff;    /* nv + 1 word offsets of the variables */
    int64_t *vsize;   /* their elements */
    int *vdtype;      /* their adadelta_dtype */
    int any_f64;      /* float64 variables: every offset and cut is even */
    void **vptr;      /* per-variable pointers into a flat buffer (scratch) */
    int *bounds;      /* size + 1 shard bounds of the ranks' ranges */
    int64_t *eoff;    /* size + 1 word offsets of the ranks' ranges */
    int64_t chunk;    /* most words in one MPI call (set at creation) */
    int64_t bucket_bytes;
    int n_buckets;
    bucket *buckets;
    int *var_bucket;  /* bucket of each variable */
    step_flags *flags, *flags_all; /* this rank's, and combined */
    size_t flags_bytes;
    int64_t steps;    /* collective steps taken (the engine's epochs) */
    double timeout;   /* stall watchdog, seconds (0 = off) */
    int shm_wanted;   /* -1 auto, 0 off, 1 on (ADADELTA_MPI_SHM) */
    int compress;     /* adadelta_mpi_compression of the gradient exchange */
    int compressing;  /* the reduction under way is compressed (a step's, */
                      /* not a checkpoint's): the kind, or 0 */

    const reduce_engine *engine;
    void *engine_state;
    unsigned long small_collectives; /* per-step agreements made so far */
    int nonfinite;    /* a bucket contributed this step was not finite */

    open_step ostep;
};

/* ------------------------------------------------------------ errors.c */
/* Records a failure in the one last-error channel (the core's). */
int adadelta_mpi__fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void adadelta_mpi__clear_error(void);
/* Makes a status collective: every rank returns the lowest failing
 * rank's status (its own if it failed) with that rank's message. */
int adadelta_mpi__agree(const adadelta_mpi *m, int rc);
/* The same before an adadelta_mpi exists. */
int adadelta_mpi__agree_comm(MPI_Comm comm, int rc);

/* ------------------------------------------------------------ create.c */
/* An integer from the environment in [lo, hi]; fallback when unset or not
 * one. */
int64_t adadelta_mpi__env_int(const char *name, int64_t fallback, int64_t lo, int64_t hi);

/* ------------------------------------------------------------ agreement.c */
uint64_t adadelta_mpi__hash(uint64_t h, const void *data, size_t n);
#define ADADELTA_MPI_HASH_START 0xcbf29ce484222325ULL
/* "3 (2 in all)": the first rank whose value differs from rank 0's and how
 * many do; empty when none. Collective, no allocation. */
void adadelta_mpi__differing_ranks(const adadelta_mpi *m, uint64_t mine, char *buf, size_t n);
int adadelta_mpi__check_agreement(adadelta_mpi *m);

/* ------------------------------------------------------------ identity.c */
/* The CRC-32C of this rank's variables (compared at the first step through
 * the step flags), and the failure when they differ (collective: every
 * rank calls it). */
uint32_t adadelta_mpi__variables_crc(const adadelta_mpi *m);
int adadelta_mpi__initial_mismatch(adadelta_mpi *m, uint32_t mine);
/* ADADELTA_ESTATE (local) when an overlapped step is open: calls that use
 * the reduction buffers or change the state wait for end_step. */
int adadelta_mpi__refuse_in_step(const adadelta_mpi *m, const char *what);
/* 1 on every rank if some rank's wish is set (a small collective). */
int adadelta_mpi__any_rank(const adadelta_mpi *m, int wish);

/* ------------------------------------------------------------ plan.c */
/* Agreement, then the plan and the buffers: once, before the first step,
 * save, load or finalize. Collective. */
int adadelta_mpi__ensure_ready(adadelta_mpi *m);
void adadelta_mpi__free_plan(adadelta_mpi *m);
/* This rank's flat range intersected with variable v, as element indices
 * of v [*b0, *b1); 0 if empty. */
int adadelta_mpi__own_part(const adadelta_mpi *m, int v, int64_t *b0, int64_t *b1);
/* Words per element of variable v (2 for float64, else 1), its element
 * bytes, and a word range of it [lo, hi) as element indices [*b0, *b1). */
int adadelta_mpi__words_per_element(const adadelta_mpi *m, int v);
size_t adadelta_mpi__element_bytes(const adadelta_mpi *m, int v);
void adadelta_mpi__elements_of(const adadelta_mpi *m, int v, int64_t lo, int64_t hi, int64_t *b0,
                               int64_t *b1);
/* m->vptr[v] = where variable v lies in flat, for v in [v_lo, v_hi). */
void *const *adadelta_mpi__var_pointers(adadelta_mpi *m, float *flat, int v_lo, int v_hi);
/* Elements [b0, b1) of variable v's data into, and out of, its words in
 * flat (the same bits). */
void adadelta_mpi__to_words(const adadelta_mpi *m, int v, int64_t b0, int64_t b1, float *flat);
void adadelta_mpi__from_words(const adadelta_mpi *m, int v, int64_t b0, int64_t b1,
                              const float *flat);
/* [lo, hi) intersected with rank r's range, as a flat range; 0 if empty. */
int adadelta_mpi__portion(const adadelta_mpi *m, int r, int64_t lo, int64_t hi, int64_t *a,
                          int64_t *b);

/* ------------------------------------------------------------ wait.c */
/* A wait of the layer: spins, then yields the core, and past the stall
 * timeout aborts the job with `what` and who has not arrived. */
typedef struct waiter {
    double start;
    unsigned long spins;
} waiter;
void adadelta_mpi__wait_start(waiter *w);
/* Call once per unsuccessful poll; `who` (may be NULL) writes the ranks
 * that have not arrived. */
void adadelta_mpi__wait_poll(const adadelta_mpi *m, waiter *w, const char *what,
                             void (*who)(const adadelta_mpi *m, char *buf, size_t n));
/* Until a window counter (nodes.c) reaches target, through the watchdog. */
typedef struct shm_counter shm_counter;
void adadelta_mpi__wait_counter(const adadelta_mpi *m, const shm_counter *c, uint64_t target,
                                const char *what,
                                void (*who)(const adadelta_mpi *m, char *buf, size_t n));
/* MPI_Wait through the watchdog. */
void adadelta_mpi__wait_request(const adadelta_mpi *m, MPI_Request *req, const char *what);
void adadelta_mpi__wait_requests(const adadelta_mpi *m, int n, MPI_Request *req,
                                 const char *what);

/* ------------------------------------------------------------ reduce engines */
/* How gradients are reduced: each rank's contribution (a flat buffer of
 * every variable) is summed over the ranks in rank order 0..R-1 and divided
 * by R. Three engines: MPI collectives (reduce_p2p.c, any placement), a
 * shared-memory window (reduce_shm.c, all ranks on one node), and both
 * (reduce_hier.c: a window on each node, a chain through the nodes). A
 * step:
 *   reserve(b) ... write bucket b's contributions ... start(b)   per bucket
 *   progress()*            (overlap: reductions advance meanwhile)
 *   finish()               the mean on this rank's range, every bucket
 *   exchange()             the step flags combined over the ranks
 *   complete_mean()        replicated: the mean everywhere
 *   end()                  this rank is done reading the mean
 * and, in sharded mode after an update, gather_variables(). */
struct reduce_engine {
    const char *name;
    int packs_contributions; /* compressed: start() rounds as it packs */
    int (*setup)(adadelta_mpi *m);
    void (*destroy)(adadelta_mpi *m);
    float *(*contributions)(adadelta_mpi *m);
    float *(*mean)(adadelta_mpi *m);
    void (*reserve)(adadelta_mpi *m, int b);
    void (*start)(adadelta_mpi *m, int b);
    void (*progress)(adadelta_mpi *m);
    void (*finish)(adadelta_mpi *m);
    void (*exchange)(adadelta_mpi *m);
    void (*complete_mean)(adadelta_mpi *m);
    void (*end)(adadelta_mpi *m);
    void (*gather_variables)(adadelta_mpi *m);
};
extern const reduce_engine adadelta_mpi__p2p_engine;
extern const reduce_engine adadelta_mpi__shm_engine;
extern const reduce_engine adadelta_mpi__hier_engine;
/* Whether the shm engine can serve m (all ranks on one node). */
int adadelta_mpi__shm_possible(const adadelta_mpi *m);
/* Whether the hier engine can (several nodes, each of consecutive ranks). */
int adadelta_mpi__hier_possible(const adadelta_mpi *m);

/* reduce_sum.c: out[i] = (in_0[i] + ... + in_{R-1}[i]) / R over the n
 * words of the flat range starting at word `at`, adding in rank order in
 * each variable's reduction type (float32 words, or float64 pairs), on the
 * core's thread team. */
void adadelta_mpi__rank_order_mean(const adadelta_mpi *m, int64_t at, const float *const *in,
                                   float *out, int64_t n);
/* A stretch of that sum: out = in_0 + ... + in_{n_in-1} (from_out: out +=
 * them), then divided by R if `divide`: the same operations in the same
 * order as the whole sum when the stretches follow each other. A divided
 * mean of a compressed reduction is rounded to its 16-bit type. */
void adadelta_mpi__rank_order_sum(const adadelta_mpi *m, int64_t at, const float *const *in,
                                  int n_in, float *out, int64_t n, int from_out, int divide);

/* ------------------------------------------------------------ compress.c */
/* 16-bit values of `kind` (adadelta_mpi_compression) from float32 and
 * back; round16: x = float32(16-bit(x)) in place. */
void adadelta_mpi__pack16(int kind, const float *in, uint16_t *out, int64_t n);
void adadelta_mpi__unpack16(int kind, const uint16_t *in, float *out, int64_t n);
void adadelta_mpi__round16(int kind, float *x, int64_t n);

/* ------------------------------------------------------------ nodes.c */
/* The ranks that share this rank's node (ADADELTA_MPI_NODE_RANKS=<L> on
 * every rank: pretend nodes of L consecutive ranks). Collective. */
void adadelta_mpi__node_comm(const adadelta_mpi *m, MPI_Comm *node);
/* How the ranks lie over the nodes; starts is allocated (free it). */
typedef struct node_layout {
    int nodes;        /* how many */
    int index;        /* this rank's node, numbered by lowest rank */
    int consecutive;  /* every node holds consecutive ranks */
    int min_size;     /* ranks of the smallest node */
    int local_rank, local_size;
    int *starts;      /* consecutive: nodes + 1 first ranks */
} node_layout;
int adadelta_mpi__node_layout(const adadelta_mpi *m, MPI_Comm node, node_layout *out);
/* An MPI-3 shared-memory window over node, `mine` bytes of it this rank's,
 * locked for its whole life; segments[r] is local rank r's segment.
 * Agreed over the node (a failure fails every rank of it). */
int adadelta_mpi__node_window(MPI_Comm node, int64_t mine, MPI_Win *win, float **segments);
/* Frees the window (if any) and the node communicator (if any). */
void adadelta_mpi__node_window_free(MPI_Win *win, MPI_Comm *node);

/* Counters in a window: each on its own cache line, only ever growing
 * (release when bumped, acquire when read). */
#define ADADELTA_MPI_LINE 64
struct shm_counter {
    uint64_t n;
    char pad[ADADELTA_MPI_LINE - sizeof(uint64_t)];
};
static inline uint64_t adadelta_mpi__load(const shm_counter *c)
{
    return __atomic_load_n(&c->n, __ATOMIC_ACQUIRE);
}
static inline void adadelta_mpi__bump(shm_counter *c)
{
    __atomic_add_fetch(&c->n, 1, __ATOMIC_RELEASE);
}
static inline int64_t adadelta_mpi__round_line(int64_t n)
{
    return (n + ADADELTA_MPI_LINE - 1) / ADADELTA_MPI_LINE * ADADELTA_MPI_LINE;
}

/* ------------------------------------------------------------ gather.c */
/* [lo, hi) cut at the ranks' ranges: counts and offsets from lo. */
void adadelta_mpi__cut(const adadelta_mpi *m, int64_t lo, int64_t hi, int *cnt, int *dsp);
/* Sharded: every rank's range of the variables to every rank through MPI
 * allgathers in chunks, via flat (total floats); cnt, dsp: R ints each. */
void adadelta_mpi__allgather_variables(adadelta_mpi *m, float *flat, MPI_Comm comm, int *cnt,
                                       int *dsp);

/* ------------------------------------------------------------ step_flags.c */
/* Combines b into a (the exchange's operation). */
void adadelta_mpi__combine_flags(step_flags *a, const step_flags *b);
/* An MPI datatype of one step_flags of `bytes` and the op combining them
 * (free with MPI_Type_free, MPI_Op_free). */
void adadelta_mpi__flags_mpi(size_t bytes, MPI_Datatype *type, MPI_Op *op);

/* ------------------------------------------------------------ apply.c */
/* One collective step with the gradients of every variable (grads may be
 * NULL on a rank: it contributes zeros and the step fails everywhere).
 * overlapped: the open step's buckets already started stay as they are,
 * and its misuse (if any) fails the step on every rank. */
int adadelta_mpi__step(adadelta_mpi *m, const void *const *grads, int overlapped);
/* A reduction outside a step (the accumulators' mean of a save): begin
 * gives the contributions buffer to fill, end the mean (this rank's range
 * at least). */
float *adadelta_mpi__begin_reduction(adadelta_mpi *m);
float *adadelta_mpi__end_reduction(adadelta_mpi *m);
/* Writes and starts bucket b's contributions (grads of its variables). */
void adadelta_mpi__contribute_bucket(adadelta_mpi *m, const adadelta_dist_step *st,
                                     const void *const *grads, int b);

/* ------------------------------------------------------------ identity.c */
int adadelta_mpi__check_identical(adadelta_mpi *m, const char *when);

#endif
