/* safetensors.c - strict safetensors reader, atomic writer.
 * The reader trusts nothing: the header length is bounded by the file, the
 * header is one JSON object without duplicate keys, every tensor has a known
 * dtype, a shape whose element count does not overflow and matches its byte
 * count, and the tensors tile the data section exactly (in range, no
 * overlap, no gap). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER ADADELTA_ST_MAX_HEADER


static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ADADELTA_ST_F32] = {"F32", 4},
    [ADADELTA_ST_F64] = {"F64", 8},
    [ADADELTA_ST_F16] = {"F16", 2},
    [ADADELTA_ST_BF16] = {"BF16", 2},
    [ADADELTA_ST_I64] = {"I64", 8},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

size_t adadelta_st_dtype_size(adadelta_st_dtype d) { return dtypes[d].size; }
const char *adadelta_st_dtype_name(adadelta_st_dtype d) { return dtypes[d].name; }

static _Thread_local char st_error[1024];

/* The checksum's digits in a header, as the writer leaves them for later
 * and as a whole-file checksum reads them. */
static const char placeholder[] = "00000000";

const char *adadelta_st_error(void) { return st_error; }

static int st_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int st_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st_error, sizeof st_error, fmt, ap);
    va_end(ap);
    return status;
}

void adadelta_st_free(adadelta_st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->t);
    free(f->buf);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}

static int bad(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad(const char *label, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_fail(ADADELTA_EFORMAT, "%s: %s", label, what);
}

static int parse_tensor(const char *label, const char *name, json_t *desc,
                        size_t data_size, adadelta_st_tensor *t, uint64_t *begin)
{
    if (!json_is_object(desc))
        return bad(label, "tensor '%s': its entry is not an object", name);
    if (json_object_size(desc) != 3)
        return bad(label, "tensor '%s': needs exactly dtype, shape, data_offsets", name);
    json_t *dtype = json_object_get(desc, "dtype");
    json_t *shape = json_object_get(desc, "shape");
    json_t *offs = json_object_get(desc, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs))
        return bad(label, "tensor '%s': needs dtype (string), shape and data_offsets (arrays)",
                   name);
    int d;
    for (d = 0; d < N_DTYPES; d++)
        if (dtypes[d].name && strcmp(json_string_value(dtype), dtypes[d].name) == 0)
            break;
    if (d == N_DTYPES)
        return bad(label, "tensor '%s': dtype '%s' is not supported (F32, F64, F16, BF16, I64)", name,
                   json_string_value(dtype));
    t->dtype = (adadelta_st_dtype)d;
    size_t ndim = json_array_size(shape);
    if (ndim > ADADELTA_MAX_DIMS)
        return bad(label, "tensor '%s': %zu dimensions, at most %d", name, ndim,
                   ADADELTA_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        json_t *dim = json_array_get(shape, i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return bad(label, "tensor '%s': shape[%zu] is not a non-negative integer", name,
                       i);
        uint64_t n = (uint64_t)json_integer_value(dim);
        if (n != 0 && numel > (UINT64_MAX / 8) / n)
            return bad(label, "tensor '%s': the shape's element count overflows", name);
        numel *= n;
        t->shape[i] = (int64_t)n;
    }
    if (json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return bad(label, "tensor '%s': data_offsets must be two integers", name);
    json_int_t b = json_integer_value(json_array_get(offs, 0));
    json_int_t e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size)
        return bad(label, "tensor '%s': data_offsets [%lld, %lld] outside the %zu data bytes",
                   name, (long long)b, (long long)e, data_size);
    uint64_t need = numel * adadelta_st_dtype_size(t->dtype);
    if ((uint64_t)(e - b) != need)
        return bad(label, "tensor '%s' has %lld bytes of data, its shape needs %llu", name,
                   (long long)(e - b), (unsigned long long)need);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)need;
    *begin = (uint64_t)b;
    return ADADELTA_OK;
}

static int parse_metadata(const char *label, json_t *meta, adadelta_st_file *f)
{
    if (!json_is_object(meta))
        return bad(label, "__metadata__ is not an object");
    size_t n = json_object_size(meta);
    f->meta_keys = calloc(n + 1, sizeof(char *));
    f->meta_values = calloc(n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values)
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value)
    {
        if (!json_is_string(value))
            return bad(label, "__metadata__ '%s' is not a string", key);
        f->meta_keys[f->n_meta] = strdup(key);
        f->meta_values[f->n_meta] = strdup(json_string_value(value));
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
    }
    return ADADELTA_OK;
}

typedef struct {
    uint64_t begin;
    int index;
} order_entry;

static int by_begin(const void *a, const void *b)
{
    const order_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->index - y->index;
}

static int parse_header(const char *label, json_t *root, adadelta_st_file *f)
{
    size_t data_size = f->size - f->data_start;
    size_t n = json_object_size(root);
    f->t = calloc(n + 1, sizeof *f->t);
    order_entry *order = calloc(n + 1, sizeof *order);
    if (!f->t || !order) {
        free(order);
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
    }
    int rc = ADADELTA_OK;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(label, value, f)))
                break;
            continue;
        }
        adadelta_st_tensor *t = &f->t[f->n];
        uint64_t begin = 0;
        if ((rc = parse_tensor(label, key, value, data_size, t, &begin)))
            break;
        if (!(t->name = strdup(key))) {
            rc = st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
            break;
        }
        t->offset = f->data_start + (size_t)begin;
        t->data = f->fd < 0 ? f->buf + t->offset : NULL;
        order[f->n].begin = begin;
        order[f->n].index = f->n;
        f->n++;
    }
    if (!rc) {
        /* The tensors must tile the data section: sorted by offset, each
         * starts where the previous ended, the last ends at the file's end. */
        qsort(order, (size_t)f->n, sizeof *order, by_begin);
        uint64_t at = 0;
        for (int i = 0; i < f->n && !rc; i++) {
            const adadelta_st_tensor *t = &f->t[order[i].index];
            if (order[i].begin != at)
                rc = bad(label, "tensor '%s' starts at data byte %llu, expected %llu "
                                "(overlapping or gap)",
                         t->name, (unsigned long long)order[i].begin,
                         (unsigned long long)at);
            at += t->nbytes;
        }
        if (!rc && at != data_size)
            rc = bad(label, "tensors cover %llu data bytes but the file has %zu",
                     (unsigned long long)at, data_size);
    }
    if (!rc) {
        adadelta_st_tensor *sorted = calloc((size_t)f->n + 1, sizeof *sorted);
        if (!sorted) {
            rc = st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
        } else {
            for (int i = 0; i < f->n; i++)
                sorted[i] = f->t[order[i].index];
            free(f->t);
            f->t = sorted;
        }
    }
    free(order);
    return rc;
}

/* The header length of a file of `size` bytes from its first 8 bytes,
 * checked against the file and the readers' limit. */
static int header_length(const unsigned char *first8, size_t size, const char *label,
                         size_t *hlen_out)
{
    if (size < 8)
        return bad(label, "%zu bytes is too short for a safetensors file", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | first8[i];
    if (hlen > MAX_HEADER || hlen > size - 8) {
        /* A header length past either limit is most often no safetensors file at all
         * (the first 8 bytes of a text or other file). */
        if (hlen > MAX_HEADER && hlen > size - 8)
            return bad(label, "not a safetensors file (its first 8 bytes give a header "
                              "length of %llu, more than the file's %zu bytes and the "
                              "readers' limit of %u)",
                       (unsigned long long)hlen, size, MAX_HEADER);
        if (hlen > MAX_HEADER)
            return bad(label, "header length %llu exceeds the readers' limit of %u bytes",
                       (unsigned long long)hlen, MAX_HEADER);
        return bad(label, "header length %llu exceeds the %zu bytes after it",
                   (unsigned long long)hlen, size - 8);
    }
    *hlen_out = (size_t)hlen;
    return ADADELTA_OK;
}

/* Parses f's header (f->buf holds at least its first data_start bytes);
 * frees f on failure. */
static int parse_file(adadelta_st_file *f, size_t hlen, const char *label,
                      adadelta_st_file **out)
{
    f->data_start = 8 + hlen;
    json_error_t err;
    json_t *root = json_loadb((const char *)f->buf + 8, hlen,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root) {
        adadelta_st_free(f);
        return bad(label, "header is not valid JSON: %s (column %d)", err.text, err.column);
    }
    int rc = json_is_object(root) ? parse_header(label, root, f)
                                  : bad(label, "header is not a JSON object");
    json_decref(root);
    if (rc) {
        adadelta_st_free(f);
        return rc;
    }
    *out = f;
    return ADADELTA_OK;
}

/* Takes ownership of buf (the whole file). */
static int parse_owned(unsigned char *buf, size_t size, const char *label,
                       adadelta_st_file **out)
{
    *out = NULL;
    adadelta_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(buf);
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
    }
    f->buf = buf;
    f->size = size;
    f->fd = -1;
    size_t hlen;
    int rc = header_length(buf, size, label, &hlen);
    if (rc) {
        adadelta_st_free(f);
        return rc;
    }
    return parse_file(f, hlen, label, out);
}

int adadelta_st_parse(const void *buf, size_t size, const char *label,
                      adadelta_st_file **out)
{
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy)
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", label);
    memcpy(copy, buf, size);
    return parse_owned(copy, size, label, out);
}

int adadelta_st_open_regular(const char *path, int *fd_out, size_t *size_out)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return st_fail(ADADELTA_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return st_fail(ADADELTA_EIO, "%s: not a regular file", path);
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return ADADELTA_OK;
}

int adadelta_st_read_fd(int fd, const char *path, size_t size, unsigned char **out)
{
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory (%zu bytes)", path, size);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            free(buf);
            return st_fail(ADADELTA_EIO, "%s: read error%s%s", path, e ? ": " : " (the file shrank)",
                           e ? strerror(e) : "");
        }
        got += (size_t)n;
    }
    *out = buf;
    return ADADELTA_OK;
}

int adadelta_st_read(const char *path, adadelta_st_file **out)
{
    *out = NULL;
    int fd;
    size_t size;
    int rc = adadelta_st_open_regular(path, &fd, &size);
    if (rc)
        return rc;
    unsigned char *buf;
    rc = adadelta_st_read_fd(fd, path, size, &buf);
    close(fd);
    return rc ? rc : parse_owned(buf, size, path, out);
}

/* Reads n bytes at offset, whole (a short read is an error). */
static int pread_all(int fd, void *dst, size_t n, size_t offset, const char *path)
{
    unsigned char *p = dst;
    while (n) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return st_fail(ADADELTA_EIO, "%s: read error at byte %zu%s%s", path, offset,
                           got < 0 ? ": " : " (the file shrank)", got < 0 ? strerror(errno) : "");
        p += got;
        n -= (size_t)got;
        offset += (size_t)got;
    }
    return ADADELTA_OK;
}

int adadelta_st_open(const char *path, adadelta_st_file **out)
{
    *out = NULL;
    int fd;
    size_t size, hlen;
    unsigned char first8[8];
    int rc = adadelta_st_open_regular(path, &fd, &size);
    if (rc)
        return rc;
    adadelta_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        close(fd);
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", path);
    }
    f->fd = fd;
    f->size = size;
    if ((rc = size >= 8 ? pread_all(fd, first8, 8, 0, path) : 0) ||
        (rc = header_length(first8, size, path, &hlen)) ||
        !(f->buf = malloc(8 + hlen + 1))) {
        adadelta_st_free(f);
        return rc ? rc : st_fail(ADADELTA_ENOMEM, "%s: out of memory", path);
    }
    if ((rc = pread_all(fd, f->buf, 8 + hlen, 0, path))) {
        adadelta_st_free(f);
        return rc;
    }
    return parse_file(f, hlen, path, out);
}

const adadelta_st_tensor *adadelta_st_find(const adadelta_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *adadelta_st_meta(const adadelta_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

size_t adadelta_st_checksum_at(const adadelta_st_file *f)
{
    static const char key[] = "\"checksum\":\"";
    const size_t k = sizeof key - 1;
    size_t at = 0;
    int found = 0;
    for (size_t i = 8; i + k + 9 <= f->data_start; i++)
        if (f->buf[i] == '"' && !memcmp(f->buf + i, key, k)) {
            found++;
            at = i + k;
        }
    return found == 1 && f->buf[at + 8] == '"' ? at : 0;
}

void adadelta_st_copy_f32(const adadelta_st_tensor *t, float *dst)
{
    if (t->nbytes)
        memcpy(dst, t->data, t->nbytes);
}

int adadelta_st_read_data(const adadelta_st_file *f, const adadelta_st_tensor *t,
                          size_t offset, size_t n, void *dst)
{
    if (!n)
        return ADADELTA_OK;
    if (f->fd < 0) {
        memcpy(dst, t->data + offset, n);
        return ADADELTA_OK;
    }
    return pread_all(f->fd, dst, n, t->offset + offset, f->path);
}

/* The CRC of bytes [lo, hi) of p (file offsets from `base`), the 8 bytes at
 * zero_at read as '0'. */
static uint32_t crc_zeroed(uint32_t crc, const unsigned char *p, size_t base, size_t lo,
                           size_t hi, size_t zero_at)
{
    if (!zero_at || zero_at >= hi || zero_at + 8 <= lo)
        return adadelta__crc32c(crc, p + (lo - base), hi - lo);
    size_t z0 = zero_at > lo ? zero_at : lo, z1 = zero_at + 8 < hi ? zero_at + 8 : hi;
    crc = adadelta__crc32c(crc, p + (lo - base), z0 - lo);
    crc = adadelta__crc32c(crc, placeholder + (z0 - zero_at), z1 - z0);
    return adadelta__crc32c(crc, p + (z1 - base), hi - z1);
}

int adadelta_st_crc_range(const adadelta_st_file *f, size_t lo, size_t hi, size_t zero_at,
                          void *buf, size_t cap, uint32_t *crc)
{
    if (f->fd < 0) {
        *crc = crc_zeroed(*crc, f->buf, 0, lo, hi, zero_at);
        return ADADELTA_OK;
    }
    /* the prefix is in memory; the data is read a buffer at a time */
    size_t mem_hi = hi < f->data_start ? hi : f->data_start;
    if (lo < mem_hi) {
        *crc = crc_zeroed(*crc, f->buf, 0, lo, mem_hi, zero_at);
        lo = mem_hi;
    }
#ifdef POSIX_FADV_SEQUENTIAL
    if (lo < hi)
        posix_fadvise(f->fd, (off_t)lo, (off_t)(hi - lo), POSIX_FADV_SEQUENTIAL);
#endif
    while (lo < hi) {
        size_t n = hi - lo < cap ? hi - lo : cap;
        int rc = pread_all(f->fd, buf, n, lo, f->path);
        if (rc)
            return rc;
        *crc = crc_zeroed(*crc, buf, lo, lo, lo + n, zero_at);
        lo += n;
    }
    return ADADELTA_OK;
}

static int by_offset(const void *a, const void *b)
{
    const adadelta_st_piece *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int adadelta_st_combine_pieces(adadelta_st_piece *p, int n, uint64_t total, uint32_t *crc)
{
    qsort(p, (size_t)n, sizeof *p, by_offset);
    uint64_t at = 0;
    uint32_t c = 0;
    for (int i = 0; i < n; i++) {
        if (!p[i].length)
            continue;
        if (p[i].offset != at)
            return st_fail(ADADELTA_EINVAL, "checksum pieces: byte %llu follows byte %llu",
                           (unsigned long long)p[i].offset, (unsigned long long)at);
        c = adadelta__crc32c_combine(c, p[i].crc, p[i].length);
        at += p[i].length;
    }
    if (at != total)
        return st_fail(ADADELTA_EINVAL, "checksum pieces cover %llu of %llu bytes",
                       (unsigned long long)at, (unsigned long long)total);
    *crc = c;
    return ADADELTA_OK;
}

void adadelta_st_checksum_digits(uint32_t crc, char out[9]) { snprintf(out, 9, "%08x", crc); }

/* ------------------------------------------------------------- writer */

static size_t out_bytes(const adadelta_st_out *t)
{
    size_t n = adadelta_st_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

static char *build_header(const adadelta_st_out *t, int n, const char *const *meta_kv,
                          int n_meta, const char *checksum)
{
    json_t *root = json_object();
    json_t *meta = json_object();
    for (int i = 0; i < n_meta; i++)
        json_object_set_new(meta, meta_kv[2 * i], json_string(meta_kv[2 * i + 1]));
    if (checksum)
        json_object_set_new(meta, "checksum", json_string(checksum));
    int ok = json_object_size(meta) == (size_t)n_meta + (checksum != NULL);
    json_object_set_new(root, "__metadata__", meta);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        json_t *desc = json_object();
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        size_t nb = out_bytes(&t[i]);
        json_object_set_new(desc, "dtype", json_string(dtypes[t[i].dtype].name));
        json_object_set_new(desc, "shape", shape);
        json_object_set_new(desc, "data_offsets",
                            json_pack("[I, I]", (json_int_t)at, (json_int_t)(at + nb)));
        if (json_object_set_new(root, t[i].name, desc))
            ok = 0;
        at += nb;
    }
    /* a name jansson refused (not UTF-8) or given twice would lose a tensor */
    ok = ok && json_object_size(root) == (size_t)n + 1;
    char *text = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    return text;
}

int adadelta_st_plan(const adadelta_st_out *t, int n, const char *const *meta_kv, int n_meta,
                     int checksum, adadelta_st_layout *out)
{
    memset(out, 0, sizeof *out);
    char *header = build_header(t, n, meta_kv, n_meta, checksum ? placeholder : NULL);
    if (!header)
        return st_fail(ADADELTA_EINVAL, "cannot build the header (out of memory, or tensor "
                                        "names that are not unique UTF-8)");
    size_t hlen = strlen(header);
    if (hlen > MAX_HEADER) {
        free(header);
        return st_fail(ADADELTA_EINVAL,
                       "the header would be %zu bytes, over the %u bytes readers accept", hlen,
                       MAX_HEADER);
    }
    out->header = header;
    out->header_len = hlen;
    out->data_start = 8 + ((hlen + 7) & ~(size_t)7); /* data starts 8-aligned */
    out->offsets = malloc(((size_t)n + 1) * sizeof *out->offsets);
    if (!out->offsets) {
        adadelta_st_layout_free(out);
        return st_fail(ADADELTA_ENOMEM, "out of memory for %d tensors", n);
    }
    size_t at = out->data_start;
    for (int i = 0; i < n; i++) {
        out->offsets[i] = at;
        at += out_bytes(&t[i]);
    }
    out->total = at;
    out->checksum = checksum;
    if (checksum) {
        const char *key = strstr(header, "\"checksum\":\"");
        out->checksum_at = 8 + (size_t)(key - header) + strlen("\"checksum\":\"");
    }
    return ADADELTA_OK;
}

void adadelta_st_layout_free(adadelta_st_layout *l)
{
    free(l->header);
    free(l->offsets);
    memset(l, 0, sizeof *l);
}

void adadelta_st_prefix(const adadelta_st_layout *l, unsigned char *buf)
{
    uint64_t len = l->data_start - 8;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, l->header, l->header_len);
    memset(buf + 8 + l->header_len, ' ', l->data_start - 8 - l->header_len);
}

/* After the rename, fsync the folder so the new name itself is durable. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    } else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse it */
        close(fd);
    }
}

/* The file a save replaces is read by no one but a later load of the new
 * one: its cached pages are dropped (clean after its fsync) so that the
 * new file's pages reuse them instead of growing the page cache by a
 * second copy, which on a VM means memory the host must first provide. */
static void drop_cached(const char *path)
{
#ifdef POSIX_FADV_DONTNEED
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
#else
    (void)path;
#endif
}

int adadelta_st_create_temp(const char *path, int *fd, char **tmp_out)
{
    drop_cached(path);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 48);
    if (!tmp)
        return st_fail(ADADELTA_ENOMEM, "%s: out of memory", path);
    static unsigned counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        snprintf(tmp, plen + 48, "%s.tmp.%ld.%u.%d", path, (long)getpid(), k, attempt);
        /* mode 0666 and the umask, as any new file (mkstemp would give 0600) */
        *fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd >= 0) {
            *tmp_out = tmp;
            return ADADELTA_OK;
        }
        if (errno != EEXIST)
            break;
    }
    int e = errno;
    free(tmp);
    return st_fail(ADADELTA_EIO, "%s: cannot create a temporary file: %s", path, strerror(e));
}

int adadelta_st_pwrite_all(int fd, const void *buf, size_t n, size_t offset, const char *path)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)offset);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return st_fail(ADADELTA_EIO, "%s: write failed: %s", path,
                           w < 0 ? strerror(errno) : "no space written");
        p += w;
        n -= (size_t)w;
        offset += (size_t)w;
    }
    return ADADELTA_OK;
}

int adadelta_st_commit(int fd, char *tmp, const char *path)
{
    int rc = ADADELTA_OK;
    if (fsync(fd) != 0)
        rc = st_fail(ADADELTA_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = st_fail(ADADELTA_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = st_fail(ADADELTA_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    else
        sync_parent_dir(path);
    free(tmp);
    return rc;
}

void adadelta_st_abort(int fd, char *tmp)
{
    if (fd >= 0)
        close(fd);
    if (tmp)
        unlink(tmp);
    free(tmp);
}


int adadelta_st_write(const char *path, const adadelta_st_out *t, int n,
                      const char *const *meta_kv, int n_meta, int checksum)
{
    adadelta_st_layout l;
    int rc = adadelta_st_plan(t, n, meta_kv, n_meta, checksum, &l);
    if (rc)
        return st_fail(rc, "%s: %s", path, adadelta_st_error());
    unsigned char *prefix = malloc(l.data_start);
    int fd = -1;
    char *tmp = NULL;
    if (!prefix)
        rc = st_fail(ADADELTA_ENOMEM, "%s: out of memory", path);
    else
        rc = adadelta_st_create_temp(path, &fd, &tmp);
    if (!rc) {
        adadelta_st_prefix(&l, prefix);
        /* v1 (data only) starts its CRC at the data, v2 at the file */
        uint32_t crc = checksum == ADADELTA_ST_CHECKSUM_FILE
                           ? adadelta__crc32c(0, prefix, l.data_start)
                           : 0;
        rc = adadelta_st_pwrite_all(fd, prefix, l.data_start, 0, path);
        for (int i = 0; !rc && i < n; i++) {
            size_t nb = out_bytes(&t[i]);
            crc = adadelta__crc32c(crc, t[i].data, nb);
            rc = nb ? adadelta_st_pwrite_all(fd, t[i].data, nb, l.offsets[i], path) : 0;
        }
        char digits[9];
        adadelta_st_checksum_digits(crc, digits);
        if (!rc && checksum)
            rc = adadelta_st_pwrite_all(fd, digits, 8, l.checksum_at, path);
        if (rc) {
            adadelta_st_abort(fd, tmp);
        } else {
            rc = adadelta_st_commit(fd, tmp, path);
        }
    }
    free(prefix);
    adadelta_st_layout_free(&l);
    return rc;
}
