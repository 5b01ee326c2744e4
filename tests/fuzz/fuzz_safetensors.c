/* fuzz_safetensors.c - libFuzzer harness for the strict safetensors reader.
 * Any input must give ADADELTA_OK (and a file whose tensors lie inside the
 * buffer and tile the data section) or ADADELTA_EFORMAT with a message;
 * never a crash, leak or out-of-bounds read.
 *
 * An input that starts with '{' is also taken as a bare JSON header: the
 * harness adds the 8-byte length and as many data bytes as the largest
 * data_offsets end asks for (found with jansson, at most 1 MiB), so header
 * mutations reach the offset, shape and tiling checks instead of dying on a
 * length that does not match. */
#include "safetensors.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const uint8_t *data, size_t size);

/* The data size a header asks for: the largest data_offsets end, or 0. */
static size_t wanted_data(const uint8_t *header, size_t size)
{
    json_t *root = json_loadb((const char *)header, size, 0, NULL);
    size_t want = 0;
    const char *key;
    json_t *desc;
    if (json_is_object(root))
        json_object_foreach(root, key, desc)
        {
            json_t *end = json_array_get(json_object_get(desc, "data_offsets"), 1);
            if (json_is_integer(end) && json_integer_value(end) > 0 &&
                json_integer_value(end) <= (1 << 20) &&
                (size_t)json_integer_value(end) > want)
                want = (size_t)json_integer_value(end);
        }
    json_decref(root);
    return want;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    if (size > 0 && data[0] == '{') {
        size_t want = wanted_data(data, size);
        uint8_t *img = calloc(8 + size + want + 1, 1);
        if (!img)
            return 0;
        for (int i = 0; i < 8; i++)
            img[i] = (uint8_t)((uint64_t)size >> (8 * i));
        memcpy(img + 8, data, size);
        for (size_t i = 0; i < want; i++)
            img[8 + size + i] = (uint8_t)(i * 37);
        check_one(img, 8 + size + want);
        free(img);
    }
    return 0;
}

static void check_one(const uint8_t *data, size_t size)
{
    adadelta_st_file *f = NULL;
    int rc = adadelta_st_parse(data, size, "fuzz", &f);
    if (rc == ADADELTA_OK) {
        /* Touch every byte of every tensor and every name: ASan checks the
         * reader's bounds, this checks its promises. */
        size_t at = f->data_start;
        volatile unsigned sum = 0;
        for (int i = 0; i < f->n; i++) {
            const adadelta_st_tensor *t = &f->t[i];
            if (t->data != f->buf + at || t->nbytes != (size_t)t->numel *
                                              adadelta_st_dtype_size(t->dtype))
                abort();
            for (size_t b = 0; b < t->nbytes; b++)
                sum += t->data[b];
            at += t->nbytes;
            if (adadelta_st_find(f, t->name) == NULL)
                abort();
            sum += (unsigned)strlen(t->name);
        }
        if (at != f->size)
            abort();
        for (int i = 0; i < f->n_meta; i++)
            sum += (unsigned)strlen(f->meta_keys[i]) + (unsigned)strlen(f->meta_values[i]);
        adadelta_st_free(f);
    } else {
        if (f != NULL)
            abort();
        if (rc != ADADELTA_EFORMAT && rc != ADADELTA_ENOMEM)
            abort();
        if (strncmp(adadelta_st_error(), "fuzz: ", 6) != 0)
            abort();
    }
}
