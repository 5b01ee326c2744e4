/* safetensors.h - a strict reader and an atomic writer of safetensors files
 * (8-byte little-endian header length, JSON header, raw little-endian data).
 * Internal to the project: compiled into libadadelta (hidden) and into the
 * convenience library libsafetensors.la that the tools and tests link. It
 * keeps its own last-error message (adadelta_st_error), so it works alone. */
#ifndef ADADELTA_SAFETENSORS_H
#define ADADELTA_SAFETENSORS_H

#include "adadelta.h"

typedef enum { ADADELTA_ST_F32 = 0, ADADELTA_ST_F64 = 1, ADADELTA_ST_I64 = 2 } adadelta_st_dtype;

typedef struct adadelta_st_tensor {
    char *name;
    adadelta_st_dtype dtype;
    int ndim;
    int64_t shape[ADADELTA_MAX_DIMS];
    int64_t numel;
    const unsigned char *data; /* into the file's buffer; maybe unaligned */
    size_t nbytes;
} adadelta_st_tensor;

typedef struct adadelta_st_file {
    unsigned char *buf;
    size_t size;
    size_t data_start;      /* offset of the data section in buf */
    int n;
    adadelta_st_tensor *t;  /* sorted by data offset (the file's order) */
    int n_meta;
    char **meta_keys, **meta_values;
} adadelta_st_file;

/* CRC-32C of n bytes after a previous crc (start with 0); the CRC of A || B
 * from crc(A), crc(B) and len(B). crc32c.c. */
uint32_t adadelta__crc32c(uint32_t crc, const void *data, size_t n);
uint32_t adadelta__crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);
/* The table-driven CRC alone (what CPUs without SSE4.2 run; for tests). */
uint32_t adadelta__crc32c_portable(uint32_t crc, const void *data, size_t n);

/* Message of the last failed adadelta_st_* call in this thread. */
const char *adadelta_st_error(void);

/* Opens a regular file for reading, without blocking on a FIFO or a
 * device (those, and folders, are refused: ADADELTA_EIO "not a regular
 * file"); its size. And reads size bytes of it into a malloc'ed buffer. */
int adadelta_st_open_regular(const char *path, int *fd, size_t *size);
int adadelta_st_read_fd(int fd, const char *path, size_t size, unsigned char **out);

/* Reads and checks a whole file. ADADELTA_EIO if it cannot be read,
 * ADADELTA_EFORMAT with "<path>: <what is wrong>" otherwise. */
int adadelta_st_read(const char *path, adadelta_st_file **out);
/* Same checks on a buffer (copied); `label` names it in messages. */
int adadelta_st_parse(const void *buf, size_t size, const char *label,
                      adadelta_st_file **out);
void adadelta_st_free(adadelta_st_file *f);
const adadelta_st_tensor *adadelta_st_find(const adadelta_st_file *f, const char *name);
const char *adadelta_st_meta(const adadelta_st_file *f, const char *key);
/* Copies a tensor's data out as float32 (F32 only). */
void adadelta_st_copy_f32(const adadelta_st_tensor *t, float *dst);
/* Copies bytes [offset, offset + n) of a tensor's data to dst. */
void adadelta_st_read_data(const adadelta_st_file *f, const adadelta_st_tensor *t,
                           size_t offset, size_t n, void *dst);
/* Bytes per element; "F32", ... */
size_t adadelta_st_dtype_size(adadelta_st_dtype d);
const char *adadelta_st_dtype_name(adadelta_st_dtype d);

/* One tensor to write. */
typedef struct adadelta_st_out {
    const char *name;
    adadelta_st_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} adadelta_st_out;

/* Writes tensors in the given order with metadata pairs; the header gets a
 * "checksum" entry (CRC-32C of the data) when with_checksum. Written to a
 * temporary file in the same folder, flushed, fsync'ed and renamed, so the
 * previous file survives a crash. */
int adadelta_st_write(const char *path, const adadelta_st_out *t, int n,
                      const char *const *meta_kv, int n_meta, int with_checksum);

#endif
