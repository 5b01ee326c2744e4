/* safetensors.h - a strict reader and an atomic writer of safetensors files
 * (8-byte little-endian header length, JSON header, raw little-endian data).
 * Internal to the project: compiled into libadadelta (hidden) and into the
 * convenience library libsafetensors.la that the tools and tests link. It
 * keeps its own last-error message (adadelta_st_error), so it works alone. */
#ifndef ADADELTA_SAFETENSORS_H
#define ADADELTA_SAFETENSORS_H

#include "adadelta.h"

/* The largest header a reader accepts (as the reference implementation). */
#define ADADELTA_ST_MAX_HEADER (100u << 20)

/* The float dtypes have the values of adadelta_dtype (F16 and BF16 are
 * stored as their 16-bit patterns). */
typedef enum {
    ADADELTA_ST_F32 = 0,
    ADADELTA_ST_F64 = 1,
    ADADELTA_ST_F16 = 2,
    ADADELTA_ST_BF16 = 3,
    ADADELTA_ST_I64 = 4
} adadelta_st_dtype;

typedef struct adadelta_st_tensor {
    char *name;
    adadelta_st_dtype dtype;
    int ndim;
    int64_t shape[ADADELTA_MAX_DIMS];
    int64_t numel;
    /* into the file's buffer, maybe unaligned; NULL in an opened file
     * (adadelta_st_open), whose data is read with adadelta_st_read_data */
    const unsigned char *data;
    size_t nbytes;
    size_t offset;          /* file offset of the data */
} adadelta_st_tensor;

typedef struct adadelta_st_file {
    unsigned char *buf;     /* the whole file, or its first data_start bytes */
    size_t size;            /* of the file */
    size_t data_start;      /* offset of the data section */
    int fd;                 /* an opened file's descriptor, else -1 */
    char *path;             /* an opened file's path (messages) */
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
/* The same checks reading the header only: the file stays open and its
 * data is read on demand (adadelta_st_read_data, adadelta_st_crc_range),
 * so memory holds the header, never the data. */
int adadelta_st_open(const char *path, adadelta_st_file **out);
/* Same checks on a buffer (copied); `label` names it in messages. */
int adadelta_st_parse(const void *buf, size_t size, const char *label,
                      adadelta_st_file **out);
void adadelta_st_free(adadelta_st_file *f);
const adadelta_st_tensor *adadelta_st_find(const adadelta_st_file *f, const char *name);
const char *adadelta_st_meta(const adadelta_st_file *f, const char *key);
/* Copies a tensor's data out as float32 (F32 only; a file read whole). */
void adadelta_st_copy_f32(const adadelta_st_tensor *t, float *dst);
/* Copies bytes [offset, offset + n) of a tensor's data to dst (from the
 * buffer, or read from an opened file: ADADELTA_EIO if that fails). */
int adadelta_st_read_data(const adadelta_st_file *f, const adadelta_st_tensor *t,
                          size_t offset, size_t n, void *dst);
/* The CRC-32C, continuing `crc`, of the file's bytes [lo, hi) with the 8
 * bytes at zero_at (0: none) read as '0' digits; an opened file is read
 * through buf (cap bytes). */
int adadelta_st_crc_range(const adadelta_st_file *f, size_t lo, size_t hi, size_t zero_at,
                          void *buf, size_t cap, uint32_t *crc);
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

/* The "checksum" metadata entry: none, CRC-32C of the data section (state
 * version 1), or of the whole file with its own 8 hex digits read as
 * "00000000" (version 2: the header is covered too). */
enum { ADADELTA_ST_CHECKSUM_NONE = 0, ADADELTA_ST_CHECKSUM_DATA = 1,
       ADADELTA_ST_CHECKSUM_FILE = 2 };

/* Writes tensors in the given order with metadata pairs and the checksum
 * asked for. Written to a temporary file in the same folder (with the
 * umask's permissions), fsync'ed and renamed, then the folder fsync'ed, so
 * the previous file survives a crash. */
int adadelta_st_write(const char *path, const adadelta_st_out *t, int n,
                      const char *const *meta_kv, int n_meta, int checksum);

/* The pieces of a writer, for writers that put the data in place
 * themselves (several processes writing parts of one file): */
typedef struct adadelta_st_layout {
    char *header;        /* JSON, with "00000000" for the checksum digits */
    size_t header_len;
    size_t data_start;   /* 8 + the header padded to 8 bytes */
    size_t *offsets;     /* per tensor: the file offset of its data */
    size_t total;        /* the file's size */
    int checksum;        /* ADADELTA_ST_CHECKSUM_* */
    size_t checksum_at;  /* file offset of the checksum's 8 digits */
} adadelta_st_layout;
int adadelta_st_plan(const adadelta_st_out *t, int n, const char *const *meta_kv, int n_meta,
                     int checksum, adadelta_st_layout *out);
void adadelta_st_layout_free(adadelta_st_layout *l);
/* The file's first data_start bytes (length, header, padding) into buf. */
void adadelta_st_prefix(const adadelta_st_layout *l, unsigned char *buf);
/* A temporary file beside path, opened for writing (free *tmp through
 * commit or abort); full writes at an offset; fsync + rename + folder
 * fsync; or close and remove. */
int adadelta_st_create_temp(const char *path, int *fd, char **tmp);
int adadelta_st_pwrite_all(int fd, const void *buf, size_t n, size_t offset, const char *path);
int adadelta_st_commit(int fd, char *tmp, const char *path);
void adadelta_st_abort(int fd, char *tmp);

/* Where a whole-file checksum's 8 digits are in a file's header (the one
 * '"checksum":"' in it), or 0 when there is not exactly one. */
size_t adadelta_st_checksum_at(const adadelta_st_file *f);

/* The CRC of a byte range of a file being written, so that writers of
 * different parts need not read each other's bytes. */
typedef struct adadelta_st_piece {
    uint64_t offset, length;
    uint32_t crc;
} adadelta_st_piece;
/* The CRC of [0, total) from pieces that tile it (sorted here; empty ones
 * ignored). ADADELTA_EINVAL when they leave a gap or overlap. */
int adadelta_st_combine_pieces(adadelta_st_piece *p, int n, uint64_t total, uint32_t *crc);
/* The 8 hex digits of a checksum. */
void adadelta_st_checksum_digits(uint32_t crc, char out[9]);

#endif
