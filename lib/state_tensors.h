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

/* A state file's header: format, version, a checksum entry (version 2:
 * exactly one, found in the header). */
int adadelta__state_check_header(const adadelta_st_file *f, const char *path);
/* What its checksum covers: the file's bytes [*base, size), the 8 at
 * *zero_at (0: none) read as '0'; and the verdict on a CRC of them. Several
 * processes may each compute a part and combine them. */
void adadelta__state_checksum_span(const adadelta_st_file *f, size_t *base, size_t *zero_at);
int adadelta__state_checksum_verdict(const adadelta_st_file *f, const char *path, uint32_t crc);

/* The checks of a state file that need no optimizer: the header, the
 * checksum (an opened file read through a buffer of cap bytes), the config
 * and variables metadata present. */
int adadelta__state_check_file(const adadelta_st_file *f, const char *path, size_t cap);

/* Checks a state file's header against opt: format, version, the saved
 * variables and config, and every tensor of opt's state present with its
 * dtype and shape. Changes nothing and builds nothing. The checksum is
 * checked before (adadelta__state_check_file, or the MPI layer's parts). */
int adadelta__state_check(const adadelta *opt, const adadelta_st_file *f, const char *path);

/* After a successful check: copies each list tensor's elements [begin,
 * end) from the file, the counters last, after checking their values
 * (nothing is written when they are out of range). */
int adadelta__state_import(adadelta *opt, const adadelta_st_file *f, const char *path,
                           const adadelta_state_list *list);

/* The file of opt's state (state.c): its header (opt's config and
 * variable order, the checksum digits "00000000"), each list tensor's
 * offset, the size. The same on every process holding the same optimizer. */
int adadelta__state_plan(const adadelta *opt, const adadelta_state_list *list,
                         adadelta_st_layout *out);
/* Writes each list tensor's elements [begin, end) from data at their
 * place in the planned file, and appends the CRCs of what it wrote to p
 * (adjacent parts as one piece; at most list->n pieces). */
int adadelta__state_write_parts(const adadelta_state_list *list, const adadelta_st_layout *lay,
                                int fd, const char *path, adadelta_st_piece *p, int *n);
/* Rank 0's last write: the prefix (length, header, padding) with the
 * checksum of the whole file, from the pieces of every writer (the
 * prefix's own is added here). */
int adadelta__state_write_prefix(const adadelta_st_layout *lay, int fd, const char *path,
                                 adadelta_st_piece *p, int n);
/* Writes the list's tensors (each whole) to one state file, atomically. */
int adadelta__state_write(const adadelta *opt, const adadelta_state_list *list, const char *path);

#endif
