/* state_tensors.h - the whole training state of an optimizer as tensors in
 * memory, in the order of a saved file (docs/state-format.md): the
 * variables, optimizer/iterations, each slot kind's tensors in Keras's slot
 * order, then the loss-scale counters. Saving writes them, loading checks a
 * file against them and copies into them; the MPI layer reads and writes its
 * own part of them. Internal (lib/ and mpi/). */
#ifndef ADADELTA_STATE_TENSORS_H
#define ADADELTA_STATE_TENSORS_H

#include "adadelta.h"
#include "safetensors.h"

/* The slot kinds (adadelta_slot_kind values 0 .. ADADELTA_N_SLOTS - 1). */
#define ADADELTA_N_SLOTS 4

typedef enum {
    ADADELTA_TENSOR_VARIABLE,
    ADADELTA_TENSOR_SLOT,
    ADADELTA_TENSOR_COUNTER
} adadelta_tensor_role;

typedef struct adadelta_state_tensor {
    const char *name;
    adadelta_st_dtype dtype;
    int ndim;
    int64_t shape[ADADELTA_MAX_DIMS];
    int64_t numel;
    /* Elements [begin, end) of the tensor are held here, at data (begin is
     * the element data points to). The whole tensor, except slots of a
     * sharded optimizer. NULL in a list made without data. */
    void *data;
    int64_t begin, end;
    adadelta_tensor_role role;
    int var;  /* variable index (variables, slots), else -1 */
    int slot; /* slot kind (slots), else -1 */
} adadelta_state_tensor;

typedef struct adadelta_state_list {
    int n;
    adadelta_state_tensor *t;
    char *names; /* storage of the slot tensors' names */
    /* The counters' tensors point here: an export copies the optimizer's
     * counters in, an import fills them from the file, checks them and
     * only then sets the optimizer's. (So a list must not be copied.) */
    int64_t iterations, step_counter;
    float dynamic_scale;
} adadelta_state_list;

/* The list of opt's state tensors. with_data: builds the optimizer and
 * points each tensor at its storage; without, data is NULL and nothing is
 * allocated but the list (for checks before a build). */
int adadelta__state_list(const adadelta *opt, int with_data, adadelta_state_list *out);
void adadelta__state_list_free(adadelta_state_list *list);

/* The checks of a state file that need no optimizer: format, version,
 * checksum, the config and variables metadata present. */
int adadelta__state_check_file(const adadelta_st_file *f, const char *path);

/* Checks a state file's header against opt: format, version, checksum,
 * the saved variables and config, and every tensor of opt's state present
 * with its dtype and shape. Changes nothing and builds nothing. */
int adadelta__state_check(const adadelta *opt, const adadelta_st_file *f, const char *path);

/* After a successful check: copies each list tensor's elements [begin,
 * end) from the file, the counters last, after checking their values
 * (nothing is written when they are out of range). */
int adadelta__state_import(adadelta *opt, const adadelta_st_file *f, const char *path,
                           const adadelta_state_list *list);

/* Writes the list's tensors (each whole: begin 0, end numel, at data)
 * with opt's metadata (config, variable order) to one state file,
 * atomically (state.c). */
int adadelta__state_write(const adadelta *opt, const adadelta_state_list *list, const char *path);

#endif
