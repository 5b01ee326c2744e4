/* slots.c - the slot kinds and the variable dtypes: the one table each. */
#include "internal.h"
#include "safetensors.h"

/* Keras's slot order (accumulated_grad and accumulated_delta_var from
 * Adadelta.build, then the base optimizer's EMA and accumulators). The
 * gradient accumulator holds each process's own gradients, so it is whole
 * on every process; the others are split in a sharded optimizer. */
const adadelta_slot_info adadelta__slots[ADADELTA_N_SLOTS] = {
    [ADADELTA_SLOT_ACCUMULATED_GRAD] = {"accumulated_grad", 1},
    [ADADELTA_SLOT_ACCUMULATED_DELTA_VAR] = {"accumulated_delta_var", 1},
    [ADADELTA_SLOT_EMA] = {"ema", 1},
    [ADADELTA_SLOT_GRADIENT_ACCUMULATOR] = {"gradient_accumulator", 0},
};

int adadelta__slot_needed(const adadelta_config *cfg, int k)
{
    switch (k) {
    case ADADELTA_SLOT_ACCUMULATED_GRAD:
    case ADADELTA_SLOT_ACCUMULATED_DELTA_VAR:
        return 1;
    case ADADELTA_SLOT_EMA:
        return cfg->use_ema;
    case ADADELTA_SLOT_GRADIENT_ACCUMULATOR:
        return cfg->gradient_accumulation_steps != 0;
    }
    return 0;
}

int64_t adadelta__slot_first(const adadelta_var *var, int k)
{
    return adadelta__slots[k].sharded ? var->slot_begin : 0;
}

int64_t adadelta__slot_length(const adadelta_var *var, int k)
{
    return adadelta__slots[k].sharded ? var->slot_end - var->slot_begin : var->size;
}

void *adadelta__slot_at(const adadelta_var *var, int k, int64_t elem)
{
    return var->slot[k] ? (char *)var->slot[k] +
                              (size_t)(elem - adadelta__slot_first(var, k)) * var->esize
                        : NULL;
}

void *adadelta__data_at(const adadelta_var *var, int64_t elem)
{
    return (char *)var->data + (size_t)elem * var->esize;
}

/* A variable dtype's value is its safetensors dtype's (safetensors.h). */
_Static_assert((int)ADADELTA_F32 == (int)ADADELTA_ST_F32, "dtype values");
_Static_assert((int)ADADELTA_F64 == (int)ADADELTA_ST_F64, "dtype values");
_Static_assert((int)ADADELTA_F16 == (int)ADADELTA_ST_F16, "dtype values");
_Static_assert((int)ADADELTA_BF16 == (int)ADADELTA_ST_BF16, "dtype values");

size_t adadelta__dtype_size(adadelta_dtype d)
{
    return (unsigned)d <= ADADELTA_BF16 ? adadelta_st_dtype_size((adadelta_st_dtype)d) : 0;
}
