/* test_safetensors.c - lib/safetensors.c: the writer and the strict reader.
 * A round trip through adadelta_st_write/adadelta_st_read with every dtype,
 * a scalar, an empty tensor and metadata; then every malformed file of the
 * reliability catalogue, built in memory, must be ADADELTA_EFORMAT with a
 * message that starts with the file's label and says what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adadelta.h"
#include "harness.h"
#include "safetensors.h"

/* ------------------------------------------------------------ helpers */

/* A safetensors image: 8-byte length, the header text as given (so it can be
 * broken on purpose), then `data_len` data bytes (0, 1, 2, ...). */
typedef struct {
    unsigned char *bytes;
    size_t size;
} image;

static image make_raw(const char *header, size_t h, uint64_t hlen, size_t data_len)
{
    image im;
    im.size = 8 + h + data_len;
    im.bytes = malloc(im.size ? im.size : 1);
    assert_non_null(im.bytes);
    for (int i = 0; i < 8; i++)
        im.bytes[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(im.bytes + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        im.bytes[8 + h + i] = (unsigned char)i;
    return im;
}

static image make_image_hlen(const char *header, uint64_t hlen, size_t data_len)
{
    return make_raw(header, strlen(header), hlen, data_len);
}

static image make_image(const char *header, size_t data_len)
{
    return make_image_hlen(header, strlen(header), data_len);
}

/* Parses the image and expects EFORMAT with a message that names the label
 * and contains `what` (case-sensitive), and no file. */
static void expect_bad(image im, const char *what)
{
    adadelta_st_file *f = (adadelta_st_file *)0x1;
    th_assert_st_refused(adadelta_st_parse(im.bytes, im.size, "hostile.safetensors", &f),
                      ADADELTA_EFORMAT, what);
    assert_null(f);
    const char *msg = adadelta_st_error();
    if (strncmp(msg, "hostile.safetensors: ", 21) != 0)
        fprintf(stderr, "message '%s' does not start with the label\n", msg);
    assert_int_equal(strncmp(msg, "hostile.safetensors: ", 21), 0);
    free(im.bytes);
}

static void expect_good(image im, int n_tensors)
{
    adadelta_st_file *f = NULL;
    int rc = adadelta_st_parse(im.bytes, im.size, "good.safetensors", &f);
    if (rc)
        fprintf(stderr, "unexpected: %s\n", adadelta_st_error());
    assert_int_equal(rc, ADADELTA_OK);
    assert_int_equal(f->n, n_tensors);
    adadelta_st_free(f);
    free(im.bytes);
}

/* ---------------------------------------------------------- round trip */

static void round_trip(void **state)
{
    (void)state;
    const char *path = th_path("rt.safetensors");
    float f32[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f, 1e-30f};
    double f64[2] = {0.1, -1e300};
    int64_t i64 = -1234567890123LL;
    float scalar = 42.0f;
    int64_t s_f32[2] = {2, 3}, s_f64[1] = {2}, s_empty[2] = {0, 5};
    adadelta_st_out t[] = {
        {"dense/kernel", ADADELTA_ST_F32, 2, s_f32, f32},
        {"doubles", ADADELTA_ST_F64, 1, s_f64, f64},
        {"optimizer/iterations", ADADELTA_ST_I64, 0, NULL, &i64},
        {"scalar", ADADELTA_ST_F32, 0, NULL, &scalar},
        {"empty", ADADELTA_ST_F32, 2, s_empty, NULL},
    };
    const char *meta[] = {"format", "adadelta-state", "note", "a \"quoted\" value\n"};
    assert_int_equal(adadelta_st_write(path, t, 5, meta, 2, 1), ADADELTA_OK);

    adadelta_st_file *f = NULL;
    assert_int_equal(adadelta_st_read(path, &f), ADADELTA_OK);
    assert_int_equal(f->n, 5);
    /* The file's order is the order written. */
    for (int i = 0; i < 5; i++)
        assert_string_equal(f->t[i].name, t[i].name);
    assert_int_equal(f->data_start % 8, 0);

    const adadelta_st_tensor *k = adadelta_st_find(f, "dense/kernel");
    assert_non_null(k);
    assert_int_equal(k->dtype, ADADELTA_ST_F32);
    assert_int_equal(k->ndim, 2);
    assert_int_equal(k->shape[0], 2);
    assert_int_equal(k->shape[1], 3);
    assert_int_equal(k->numel, 6);
    assert_int_equal(k->nbytes, 24);
    float back[6];
    adadelta_st_copy_f32(k, back);
    assert_memory_equal(back, f32, sizeof f32);

    const adadelta_st_tensor *d = adadelta_st_find(f, "doubles");
    assert_int_equal(d->dtype, ADADELTA_ST_F64);
    assert_int_equal(d->nbytes, 16);
    assert_memory_equal(d->data, f64, 16);

    const adadelta_st_tensor *it = adadelta_st_find(f, "optimizer/iterations");
    assert_int_equal(it->dtype, ADADELTA_ST_I64);
    assert_int_equal(it->ndim, 0);
    assert_int_equal(it->numel, 1);
    int64_t i64_back;
    memcpy(&i64_back, it->data, 8);
    assert_true(i64_back == i64);

    const adadelta_st_tensor *sc = adadelta_st_find(f, "scalar");
    assert_int_equal(sc->ndim, 0);
    assert_int_equal(sc->numel, 1);
    assert_memory_equal(sc->data, &scalar, 4);

    const adadelta_st_tensor *e = adadelta_st_find(f, "empty");
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 0);
    assert_int_equal(e->shape[1], 5);
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);

    assert_null(adadelta_st_find(f, "nope"));
    assert_string_equal(adadelta_st_meta(f, "format"), "adadelta-state");
    assert_string_equal(adadelta_st_meta(f, "note"), "a \"quoted\" value\n");
    const char *crc = adadelta_st_meta(f, "checksum");
    assert_non_null(crc);
    assert_int_equal(strlen(crc), 8);
    assert_null(adadelta_st_meta(f, "missing"));

    /* Reading the same bytes from a buffer gives the same result. */
    adadelta_st_file *g = NULL;
    assert_int_equal(adadelta_st_parse(f->buf, f->size, "copy", &g), ADADELTA_OK);
    assert_int_equal(g->n, 5);
    assert_int_equal(g->n_meta, f->n_meta);
    adadelta_st_free(g);
    adadelta_st_free(f);

    /* Overwriting is atomic: no temporary file is left behind. */
    assert_int_equal(adadelta_st_write(path, t, 1, NULL, 0, 0), ADADELTA_OK);
    assert_int_equal(adadelta_st_read(path, &f), ADADELTA_OK);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->n_meta, 0);
    adadelta_st_free(f);
    assert_int_equal(th_tmpdir_count(), 1);
}

static void read_missing_file_is_eio(void **state)
{
    (void)state;
    adadelta_st_file *f = (adadelta_st_file *)0x1;
    const char *path = th_path("does-not-exist.safetensors");
    th_assert_st_refused(adadelta_st_read(path, &f), ADADELTA_EIO, path);
    assert_null(f);
    /* A directory is not a file. */
    th_assert_st_refused(adadelta_st_read(th_tmpdir(), &f), ADADELTA_EIO, th_tmpdir());
}

static void write_to_missing_dir_is_eio(void **state)
{
    (void)state;
    float x = 1;
    adadelta_st_out t = {"x", ADADELTA_ST_F32, 0, NULL, &x};
    th_assert_st_refused(adadelta_st_write("/nonexistent-dir/x.safetensors", &t, 1, NULL, 0, 0),
                      ADADELTA_EIO, "/nonexistent-dir/x.safetensors");
}

/* ------------------------------------------------------------ malformed */

#define VALID_HEADER                                                                    \
    "{\"__metadata__\":{\"k\":\"v\"},"                                                  \
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"                   \
    "\"b\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"                   \
    "\"c\":{\"dtype\":\"I64\",\"shape\":[1,0],\"data_offsets\":[16,16]}}"

static void valid_in_memory_file_parses(void **state)
{
    (void)state;
    expect_good(make_image(VALID_HEADER, 16), 3);
    expect_good(make_image("{}", 0), 0);
    expect_good(make_image("{}  ", 0), 0); /* trailing padding */
}

/* Every proper prefix of a valid file (and the file with one byte too many
 * or too few data) is refused. */
static void truncated_anywhere(void **state)
{
    (void)state;
    image full = make_image(VALID_HEADER, 16);
    for (size_t len = 0; len < full.size; len++) {
        adadelta_st_file *f = (adadelta_st_file *)0x1;
        int rc = adadelta_st_parse(full.bytes, len, "cut.safetensors", &f);
        if (rc != ADADELTA_EFORMAT)
            fprintf(stderr, "a file cut to %zu of %zu bytes gave %d\n", len, full.size, rc);
        th_assert_st_refused(rc, ADADELTA_EFORMAT, NULL);
        assert_null(f);
        assert_int_equal(strncmp(adadelta_st_error(), "cut.safetensors: ", 17), 0);
    }
    /* Size 0. */
    adadelta_st_file *f = NULL;
    th_assert_st_refused(adadelta_st_parse(full.bytes, 0, "cut.safetensors", &f), ADADELTA_EFORMAT,
                      "too short");
    free(full.bytes);
    /* One data byte too many. */
    expect_bad(make_image(VALID_HEADER, 17), "cover 16 data bytes but the file has 17");
}

static void header_length_larger_than_file(void **state)
{
    (void)state;
    expect_bad(make_image_hlen("{}", 3, 0), "header length 3 exceeds");
    expect_bad(make_image_hlen(VALID_HEADER, strlen(VALID_HEADER) + 17, 16),
               "header length");
    expect_bad(make_image_hlen("{}", UINT64_MAX, 0), "header length");
    expect_bad(make_image_hlen("{}", (uint64_t)1 << 63, 0), "header length");
    expect_bad(make_image_hlen("{}", SIZE_MAX - 7, 0), "header length");
}

static void broken_json(void **state)
{
    (void)state;
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",", 0), "not valid JSON");
    expect_bad(make_image("", 0), "not valid JSON");
    expect_bad(make_image("{\"a\":1}}", 0), "not valid JSON");
    expect_bad(make_image("\xff\xfe{}", 0), "not valid JSON");
    expect_bad(make_image("[1,2]", 0), "not a JSON object");
    expect_bad(make_image("{\"a\":[1]}", 0), "is not an object");
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}", 0),
               "exactly dtype, shape, data_offsets");
    expect_bad(make_image("{\"a\":{\"dtype\":1,\"shape\":[0],\"data_offsets\":[0,0]}}", 0),
               "tensor 'a'");
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0]}}",
                          0),
               "data_offsets must be two integers");
    expect_bad(
        make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4),
        "data_offsets must be two integers");
    expect_bad(make_image("{\"__metadata__\":[]}", 0), "__metadata__ is not an object");
    expect_bad(make_image("{\"__metadata__\":{\"k\":1}}", 0), "__metadata__ 'k'");
    /* The header may not end early inside the length it declares (NUL
     * padding is not JSON whitespace). */
    expect_bad(make_raw("{}\0\0", 4, 4, 0), "not valid JSON");
    expect_bad(make_raw("{\"\0\":{}}", 7, 7, 0), "not valid JSON");
}

static void duplicate_names(void **state)
{
    (void)state;
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                          8),
               "duplicate");
    expect_bad(make_image("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "duplicate");
    expect_bad(make_image("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0), "duplicate");
}

static void unknown_dtype(void **state)
{
    (void)state;
    const char *dtypes[] = {"F8_E4M3", "U16", "I32", "U8", "BOOL", "f32", "F32 ", ""};
    for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++) {
        char h[256];
        snprintf(h, sizeof h,
                 "{\"w\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[0,8]}}", dtypes[i]);
        expect_bad(make_image(h, 8), "is not supported");
    }
}

static void negative_or_bad_dims(void **state)
{
    (void)state;
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                          4),
               "shape[0] is not a non-negative integer");
    expect_bad(
        make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]}}", 4),
        "shape[1]");
    expect_bad(
        make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
        "shape[0]");
    expect_bad(
        make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4),
        "shape[0]");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                          "\"data_offsets\":[0,4]}}",
                          4),
               "9 dimensions");
    /* Larger than int64 (jansson refuses it while parsing). */
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                          "\"data_offsets\":[0,4]}}",
                          4),
               "not valid JSON");
}

static void overflowing_element_count(void **state)
{
    (void)state;
    /* 2^32 * 2^32 = 2^64 elements: wraps to 0 in 64 bits. */
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                          "\"data_offsets\":[0,0]}}",
                          0),
               "overflows");
    /* 2^62 F32 elements: the byte count (2^64) overflows, the count does not. */
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                          "\"data_offsets\":[0,0]}}",
                          0),
               "overflows");
    /* Wraps to exactly the bytes present (2^61 * 2^3 F32 = 2^66 bytes = 0
     * mod 2^64) or to 4 bytes: must not be taken for a small tensor. */
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952,8,0],"
                          "\"data_offsets\":[0,0]}}",
                          0),
               "overflows");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F64\",\"shape\":[9223372036854775807,3],"
                          "\"data_offsets\":[0,8]}}",
                          8),
               "overflows");
    /* A zero dimension after big ones still must not overflow on the way. */
    expect_bad(make_image("{\"w\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296,0],"
                          "\"data_offsets\":[0,0]}}",
                          0),
               "overflows");
}

static void offsets_out_of_range(void **state)
{
    (void)state;
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}",
                          8),
               "outside the 8 data bytes");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
                          8),
               "outside");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
                          8),
               "outside");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
                          "[9223372036854775804,9223372036854775807]}}",
                          8),
               "outside");
    expect_bad(make_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":"
                          "[-9223372036854775808,-9223372036854775808]}}",
                          0),
               "outside");
}

static void offsets_overlapping(void **state)
{
    (void)state;
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                          12),
               "overlapping");
    /* Two tensors on the same bytes. */
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                          8),
               "overlapping");
    /* An empty tensor inside another one. */
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                          8),
               "overlapping");
}

static void offsets_with_gap(void **state)
{
    (void)state;
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                          12),
               "gap");
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
               "gap");
    /* Unused bytes at the end of the data section. */
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8),
               "cover 4 data bytes but the file has 8");
}

static void shape_and_bytes_disagree(void **state)
{
    (void)state;
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
               "has 8 bytes of data, its shape needs 12");
    expect_bad(make_image("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
               "its shape needs 16");
    expect_bad(make_image("{\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4),
               "its shape needs 8");
    expect_bad(make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 4),
               "its shape needs 0");
}

/* CRC-32C: the standard check value (RFC 3720's polynomial: "123456789"
 * gives e3069283), the instruction path equal to the table at every
 * alignment and length around the 3-stream blocks, a CRC continued over
 * pieces, combined from pieces, and the pieces' combination refusing gaps. */
static void crc32c_paths_agree(void **state)
{
    (void)state;
    assert_int_equal(adadelta__crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(adadelta__crc32c_portable(0, "123456789", 9), 0xe3069283u);
    size_t n = (3u << 14) * 5 + 77;
    unsigned char *buf = malloc(n + 8);
    assert_non_null(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < n + 8; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    size_t lens[] = {0, 1, 7, 49151, 49152, 49153, 98304 + 5, n};
    for (int off = 0; off < 8; off++)
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++)
            assert_int_equal(adadelta__crc32c(0, buf + off, lens[k]),
                             adadelta__crc32c_portable(0, buf + off, lens[k]));
    uint32_t whole = adadelta__crc32c_portable(0, buf, n);
    size_t cut = 50001;
    assert_int_equal(adadelta__crc32c(adadelta__crc32c(0, buf, cut), buf + cut, n - cut), whole);
    uint32_t a = adadelta__crc32c(0, buf, cut), b = adadelta__crc32c(0, buf + cut, n - cut);
    assert_int_equal(adadelta__crc32c_combine(a, b, n - cut), whole);
    adadelta_st_piece p[3] = {{cut, n - cut, b}, {0, cut, a}, {n, 0, 0}};
    uint32_t got = 0;
    assert_int_equal(adadelta_st_combine_pieces(p, 3, n, &got), ADADELTA_OK);
    assert_int_equal(got, whole);
    adadelta_st_piece gap[2] = {{0, cut, a}, {cut + 1, n - cut - 1, b}};
    assert_int_equal(adadelta_st_combine_pieces(gap, 2, n, &got), ADADELTA_EINVAL);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(crc32c_paths_agree),
        cmocka_unit_test(read_missing_file_is_eio),
        cmocka_unit_test(write_to_missing_dir_is_eio),
        cmocka_unit_test(valid_in_memory_file_parses),
        cmocka_unit_test(truncated_anywhere),
        cmocka_unit_test(header_length_larger_than_file),
        cmocka_unit_test(broken_json),
        cmocka_unit_test(duplicate_names),
        cmocka_unit_test(unknown_dtype),
        cmocka_unit_test(negative_or_bad_dims),
        cmocka_unit_test(overflowing_element_count),
        cmocka_unit_test(offsets_out_of_range),
        cmocka_unit_test(offsets_overlapping),
        cmocka_unit_test(offsets_with_gap),
        cmocka_unit_test(shape_and_bytes_disagree),
    };
    return cmocka_run_group_tests(tests, th_group_setup, th_group_teardown);
}
