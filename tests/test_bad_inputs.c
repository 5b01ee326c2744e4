/* test_bad_inputs.c - the bad input catalogue of the reliability issue,
 * through adadelta-replay (replay-cli.md): every hostile file or config gets
 * its documented exit status (2 config/usage, 3 bad file, 4 inputs
 * disagree), exactly one line on stderr naming the file or the key, no
 * crash or hang, and the --out file is neither created nor changed. Then
 * the numerical faults through the C API: NaN/Inf gradients as Keras, and
 * check_finite refusing them before anything changes.
 *
 * The hostile files are generated into a mkdtemp folder. ADADELTA_REPLAY
 * names the driver (set by make check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "adadelta.h"
#include "safetensors.h"

static char dir[64];
static const char *replay;

/* ------------------------------------------------------------ files */

static const char *path_of(const char *name)
{
    /* A pool big enough that a test's paths are never recycled under it. */
    static char pool[1024][160];
    static int next;
    char *p = pool[next++ % 1024];
    snprintf(p, sizeof pool[0], "%.63s/%.90s", dir, name);
    return p;
}

static void write_bytes(const char *name, const void *bytes, size_t n)
{
    FILE *fp = fopen(path_of(name), "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *name, const char *text)
{
    write_bytes(name, text, strlen(text));
}

/* A safetensors file with the given header text (unchecked) and data_len
 * data bytes (small floats). */
static void write_raw_st(const char *name, const char *header, size_t data_len)
{
    size_t h = strlen(header);
    unsigned char *b = calloc(8 + h + data_len + 1, 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i + 4 <= data_len; i += 4) {
        float x = 0.25f * (float)(i / 4 + 1);
        memcpy(b + 8 + h + i, &x, 4);
    }
    write_bytes(name, b, 8 + h + data_len);
    free(b);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16;
    unsigned char *b = malloc(cap);
    *n = fread(b, 1, cap, fp);
    fclose(fp);
    return b;
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The valid inputs: two variables, three calls. */
static const int64_t k_shape[2] = {2, 3}, b_shape[1] = {3};
static const float kernel[6] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f};
static const float bias[3] = {0.01f, 0.02f, -0.03f};
static const float gk[6] = {1, -2, 3, -4, 5, -6}, gb[3] = {0.5f, -0.5f, 0.25f};

static void write_valid_files(void)
{
    adadelta_st_out params[] = {
        {"dense/kernel", ADADELTA_ST_F32, 2, k_shape, kernel},
        {"dense/bias", ADADELTA_ST_F32, 1, b_shape, bias},
    };
    assert_int_equal(adadelta_st_write(path_of("params.safetensors"), params, 2, NULL, 0, 0), 0);
    adadelta_st_out grads[] = {
        {"grads/0/dense/kernel", ADADELTA_ST_F32, 2, k_shape, gk},
        {"grads/0/dense/bias", ADADELTA_ST_F32, 1, b_shape, gb},
        {"grads/1/dense/kernel", ADADELTA_ST_F32, 2, k_shape, gk},
        {"grads/2/dense/bias", ADADELTA_ST_F32, 1, b_shape, gb},
    };
    assert_int_equal(adadelta_st_write(path_of("grads.safetensors"), grads, 4, NULL, 0, 0), 0);
    write_text("config.json", "{\"learning_rate\": 1.0, \"rho\": 0.9}\n");
}

static int setup(void **state)
{
    (void)state;
    replay = getenv("ADADELTA_REPLAY");
    if (!replay || access(replay, X_OK) != 0) {
        fprintf(stderr, "ADADELTA_REPLAY (%s) is not an executable\n",
                replay ? replay : "unset");
        return -1;
    }
    strcpy(dir, "/tmp/test_bad_inputs.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Each test starts from a clean folder with only the valid inputs. */
static int fresh(void **state)
{
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/* '%s'/.[!.]*", dir, dir);
    if (system(cmd) != 0)
        return -1;
    write_valid_files();
    return 0;
}

/* --------------------------------------------------------- the driver */

/* Runs the driver with args (NULL-terminated) plus "--out out"; returns the
 * exit status (-signal when killed), stderr in err. */
static int run(const char *const *args, const char *out, char *err, size_t cap)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = replay;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    if (out) {
        argv[n++] = "--out";
        argv[n++] = out;
    }
    argv[n] = NULL;
    char errfile[128];
    snprintf(errfile, sizeof errfile, "/tmp/test_bad_inputs.stderr%s", strrchr(dir, '.'));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        if (fd < 0 || nul < 0)
            _exit(127);
        dup2(fd, 2);
        dup2(nul, 1);
        alarm(60); /* a hang is a failure */
        execv(replay, (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    size_t n_err = 0;
    unsigned char *e = read_all(errfile, &n_err);
    unlink(errfile);
    if (n_err >= cap)
        n_err = cap - 1;
    memcpy(err, e ? (char *)e : "", e ? n_err : 0);
    err[e ? n_err : 0] = '\0';
    free(e);
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

static const char previous[] = "previous --out contents, must survive\n";

/* The core check of every row: status, one line naming `needle` (and
 * `needle2` when not NULL), existing --out unchanged, missing --out not
 * created, no temporary file left. */
static void expect_refused(const char *const *args, int status, const char *needle,
                           const char *needle2)
{
    char err[4096];
    int before = count_entries();
    /* 1. An existing --out stays byte-identical. */
    write_text("out.safetensors", previous);
    int rc = run(args, path_of("out.safetensors"), err, sizeof err);
    if (rc != status || !strstr(err, needle) || (needle2 && !strstr(err, needle2)))
        fprintf(stderr, "exit %d (expected %d), stderr: %s(expected to name '%s'%s%s)\n", rc,
                status, err, needle, needle2 ? " and " : "", needle2 ? needle2 : "");
    assert_int_equal(rc, status);
    size_t n = 0;
    unsigned char *got = read_all(path_of("out.safetensors"), &n);
    assert_non_null(got);
    assert_int_equal(n, strlen(previous));
    assert_memory_equal(got, previous, n);
    free(got);
    /* 2. One line, naming the file or key. */
    size_t len = strlen(err);
    assert_true(len > 1);
    assert_true(err[len - 1] == '\n');
    if (strchr(err, '\n') != err + len - 1)
        fprintf(stderr, "more than one line on stderr:\n%s", err);
    assert_true(strchr(err, '\n') == err + len - 1);
    assert_non_null(strstr(err, needle));
    if (needle2)
        assert_non_null(strstr(err, needle2));
    /* 3. No --out: nothing created. */
    unlink(path_of("out.safetensors"));
    rc = run(args, path_of("out.safetensors"), err, sizeof err);
    assert_int_equal(rc, status);
    assert_int_equal(access(path_of("out.safetensors"), F_OK), -1);
    /* 4. No temporary or other file left behind. */
    assert_int_equal(count_entries(), before);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A hostile --params file: status 3 naming it. */
static void bad_params(const char *name, const char *header, size_t data_len,
                       const char *what)
{
    write_raw_st(name, header, data_len);
    const char *p = path_of(name);
    expect_refused(ARGS("--params", p, "--grads", path_of("grads.safetensors")), 3, p, what);
}

/* The same file as --grads (its tensors renamed grads/0/...): status 3. */
static void bad_grads(const char *name, const char *header, size_t data_len,
                      const char *what)
{
    write_raw_st(name, header, data_len);
    const char *g = path_of(name);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 3, g, what);
}

/* A hostile --config: status 2 naming the key. */
static void bad_config(const char *json, const char *key)
{
    write_text("bad.json", json);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--config", path_of("bad.json")),
                   2, key, NULL);
}

/* ------------------------------------------------------------ baseline */

static void valid_inputs_succeed(void **state)
{
    (void)state;
    char err[4096];
    int rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                      path_of("grads.safetensors"), "--config", path_of("config.json")),
                 path_of("out.safetensors"), err, sizeof err);
    if (rc)
        fprintf(stderr, "%s", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(path_of("out.safetensors"), &f), 0);
    assert_non_null(adadelta_st_find(f, "dense/kernel"));
    adadelta_st_free(f);
}

/* ------------------------------------------------------- file rows (3) */

static void missing_files(void **state)
{
    (void)state;
    const char *nope = path_of("nope.safetensors");
    expect_refused(ARGS("--params", nope, "--grads", path_of("grads.safetensors")), 3, nope,
                   NULL);
    nope = path_of("nope.safetensors");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", nope), 3, nope,
                   NULL);
    const char *nojson = path_of("nope.json");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--config", nojson),
                   3, nojson, NULL);
    /* A folder is not a file. */
    expect_refused(ARGS("--params", dir, "--grads", path_of("grads.safetensors")), 3, dir,
                   NULL);
}

static void truncated_files(void **state)
{
    (void)state;
    size_t n = 0, ng = 0;
    unsigned char *params = read_all(path_of("params.safetensors"), &n);
    unsigned char *grads = read_all(path_of("grads.safetensors"), &ng);
    assert_non_null(params);
    assert_non_null(grads);
    /* Cut inside the length, inside the header, at the header's end, inside
     * the data, one byte short. */
    size_t cuts[] = {0, 1, 7, 8, 9, 20, n / 2, n - 24, n - 13, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_bytes("cut.safetensors", params, cuts[i]);
        const char *p = path_of("cut.safetensors");
        expect_refused(ARGS("--params", p, "--grads", path_of("grads.safetensors")), 3, p,
                       NULL);
    }
    size_t gcuts[] = {0, 5, 8, 30, ng / 2, ng - 1};
    for (size_t i = 0; i < sizeof gcuts / sizeof *gcuts; i++) {
        write_bytes("cut.safetensors", grads, gcuts[i]);
        const char *g = path_of("cut.safetensors");
        expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 3, g,
                       NULL);
    }
    free(params);
    free(grads);
}

static void header_length_larger_than_file(void **state)
{
    (void)state;
    unsigned char b[24] = {0};
    b[0] = 200; /* 200-byte header, 16 bytes present */
    memcpy(b + 8, "{}              ", 16);
    write_bytes("hlen.safetensors", b, sizeof b);
    const char *p = path_of("hlen.safetensors");
    expect_refused(ARGS("--params", p, "--grads", path_of("grads.safetensors")), 3, p,
                   "header length");
    memset(b, 0xff, 8); /* 2^64 - 1 */
    write_bytes("hlen.safetensors", b, sizeof b);
    expect_refused(ARGS("--params", p, "--grads", path_of("grads.safetensors")), 3, p,
                   "header length");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", p), 3, p,
                   "header length");
}

static void broken_header_json(void **state)
{
    (void)state;
    bad_params("json.safetensors", "{\"dense/kernel\":{\"dtype\":\"F32\",\"shape\":[2,3]", 0,
               "JSON");
    bad_params("json.safetensors", "not json", 0, "JSON");
    bad_params("json.safetensors", "[]", 0, "not a JSON object");
    bad_grads("json.safetensors", "{\"grads/0/dense/bias\":", 0, "JSON");
}

static void duplicate_tensor_names(void **state)
{
    (void)state;
    bad_params("dup.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate");
    bad_grads("dup.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
              "\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}",
              24, "duplicate");
}

/* Two tensor names that are different strings but the same gradient
 * (call 0 written "0" and "00"): the driver must not pick one silently. */
static void duplicate_gradient_same_call(void **state)
{
    (void)state;
    write_raw_st(
        "dupcall.safetensors",
        "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
        "\"grads/00/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}",
        24);
    const char *g = path_of("dupcall.safetensors");
    /* grads/00/... is not a spelling of call 0: refused as malformed. */
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 3, g,
                   "grads/00/dense/bias");
}

static void unknown_dtypes(void **state)
{
    (void)state;
    bad_params("dtype.safetensors",
               "{\"dense/bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 6,
               "BF16");
    bad_params("dtype.safetensors",
               "{\"dense/bias\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
               "F16");
    /* A known dtype the driver cannot use as a variable: still a bad file. */
    bad_params("dtype.safetensors",
               "{\"dense/bias\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 24,
               "dense/bias");
    bad_grads("dtype.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
              3, "U8");
}

static void negative_and_overflowing_shapes(void **state)
{
    (void)state;
    bad_params("shape.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "shape[0]");
    bad_params("shape.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}",
               0, "overflow");
    bad_params("shape.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,0]}}",
               0, "overflow");
    bad_grads("shape.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3,-2],"
              "\"data_offsets\":[0,12]}}",
              12, "shape[1]");
    bad_grads("shape.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952,8],"
              "\"data_offsets\":[0,0]}}",
              0, "overflow");
}

static void offsets_out_of_range(void **state)
{
    (void)state;
    bad_params("off.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 8,
               "data_offsets");
    bad_params("off.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               "data_offsets");
    bad_params("off.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
               "[9223372036854775800,9223372036854775804]}}",
               4, "data_offsets");
    bad_grads("off.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],"
              "\"data_offsets\":[4,16]}}",
              12, "data_offsets");
}

static void offsets_overlapping_or_gap(void **state)
{
    (void)state;
    bad_params("ovl.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "overlapping");
    bad_params("ovl.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "overlapping");
    bad_params("gap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "gap");
    bad_grads("ovl.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
              "\"grads/1/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
              12, "overlapping");
}

static void shape_and_bytes_disagree(void **state)
{
    (void)state;
    bad_params("bytes.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "shape needs 12");
    bad_grads("bytes.safetensors",
              "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],"
              "\"data_offsets\":[0,16]}}",
              16, "shape needs 12");
}

static void params_not_a_safetensors_file(void **state)
{
    (void)state;
    write_text("text.safetensors", "hello, this is not safetensors at all\n");
    const char *p = path_of("text.safetensors");
    expect_refused(ARGS("--params", p, "--grads", path_of("grads.safetensors")), 3, p, NULL);
    /* A badly named gradient tensor is a malformed grads file. */
    write_raw_st("names.safetensors",
                 "{\"dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                 12);
    const char *g = path_of("names.safetensors");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 3, g,
                   "dense/bias");
}

/* ------------------------------------------------------ grads rows (4) */

static void gradient_for_unknown_variable(void **state)
{
    (void)state;
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/nope\":{\"dtype\":\"F32\",\"shape\":[3],"
                 "\"data_offsets\":[0,12]}}",
                 12);
    const char *g = path_of("g.safetensors");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/nope");
}

static void gradient_with_wrong_shape(void **state)
{
    (void)state;
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],"
                 "\"data_offsets\":[0,24]}}",
                 24);
    const char *g = path_of("g.safetensors");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/kernel");
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[1,3],"
                 "\"data_offsets\":[0,12]}}",
                 12);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/bias");
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[],"
                 "\"data_offsets\":[0,4]}}",
                 4);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/bias");
}

static void gradient_with_wrong_dtype(void **state)
{
    (void)state;
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/bias\":{\"dtype\":\"F64\",\"shape\":[3],"
                 "\"data_offsets\":[0,24]}}",
                 24);
    const char *g = path_of("g.safetensors");
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/bias");
    write_raw_st("g.safetensors",
                 "{\"grads/0/dense/bias\":{\"dtype\":\"I64\",\"shape\":[3],"
                 "\"data_offsets\":[0,24]}}",
                 24);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads", g), 4, g,
                   "dense/bias");
}


/* A single gradient for call 10000000 of one of 2000 variables: every call
 * before it has no gradient (4). The driver must say so, not try to build
 * a 10^7 x 2000 table first. */
static void gradient_call_index_huge(void **state)
{
    (void)state;
    enum { NV = 2000 };
    static float ones[NV];
    static char names[NV][16];
    static adadelta_st_out t[NV];
    for (int i = 0; i < NV; i++) {
        ones[i] = 1;
        snprintf(names[i], sizeof names[i], "v%d", i);
        t[i] = (adadelta_st_out){names[i], ADADELTA_ST_F32, 0, NULL, &ones[i]};
    }
    assert_int_equal(adadelta_st_write(path_of("many.safetensors"), t, NV, NULL, 0, 0), 0);
    t[0].name = "grads/10000000/v0";
    assert_int_equal(adadelta_st_write(path_of("late.safetensors"), t, 1, NULL, 0, 0), 0);
    const char *p = path_of("many.safetensors"), *g = path_of("late.safetensors");
    expect_refused(ARGS("--params", p, "--grads", g), 4, g, "no gradient");
}

/* ----------------------------------------------------- config rows (2) */

static void config_unknown_key(void **state)
{
    (void)state;
    bad_config("{\"learning_rate\": 1.0, \"momentum\": 0.9}", "momentum");
    bad_config("{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": "
               "{\"initial_learning_rate\": 1, \"decay_steps\": 2, \"decay_rate\": 0.5, "
               "\"speed\": 1}}}",
               "speed");
    bad_config("{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": "
               "\"Adadelta\", \"config\": {\"nesterov\": true}}}",
               "nesterov");
}

static void config_wrong_type(void **state)
{
    (void)state;
    bad_config("{\"rho\": \"0.9\"}", "rho");
    bad_config("{\"use_ema\": 1}", "use_ema");
    bad_config("{\"learning_rate\": [1]}", "learning_rate");
    bad_config("{\"gradient_accumulation_steps\": 2.5}", "gradient_accumulation_steps");
    bad_config("{\"epsilon\": null}", "epsilon");
    bad_config("{\"name\": 3}", "name");
    bad_config("[]", "top level");
}

static void config_nan_and_infinity(void **state)
{
    (void)state;
    /* Python's json.dumps writes these; JSON has no such numbers. The key
     * cannot be named by a JSON parser that stops there; the file is. */
    bad_config("{\"learning_rate\": NaN}", "bad.json");
    bad_config("{\"epsilon\": Infinity}", "bad.json");
    bad_config("{\"clipnorm\": -Infinity}", "bad.json");
    /* Out-of-range numbers that overflow to infinity. */
    bad_config("{\"learning_rate\": 1e400}", "bad.json");
}

static void config_out_of_range(void **state)
{
    (void)state;
    bad_config("{\"rho\": 2}", "rho");
    bad_config("{\"rho\": -0.1}", "rho");
    bad_config("{\"epsilon\": -1e-7}", "epsilon");
    bad_config("{\"use_ema\": true, \"ema_momentum\": 1.5}", "ema_momentum");
    bad_config("{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": "
               "\"Adadelta\", \"config\": {}}, \"initial_scale\": 0}",
               "initial_scale");
    bad_config("{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": "
               "\"Adadelta\", \"config\": {}}, \"dynamic_growth_steps\": 0}",
               "dynamic_growth_steps");
}

static void config_conflicting_clips(void **state)
{
    (void)state;
    bad_config("{\"clipnorm\": 1.0, \"clipvalue\": 0.5}", "clipvalue");
    bad_config("{\"clipnorm\": 1.0, \"global_clipnorm\": 0.5}", "global_clipnorm");
}

static void config_bad_schedules(void **state)
{
    (void)state;
    bad_config("{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": "
               "{\"initial_learning_rate\": 1, \"decay_steps\": 0, \"decay_rate\": 0.5}}}",
               "decay_steps");
    bad_config("{\"learning_rate\": {\"class_name\": \"CosineDecayRestarts\", \"config\": "
               "{\"initial_learning_rate\": 1, \"first_decay_steps\": 0}}}",
               "first_decay_steps");
    bad_config("{\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", \"config\": "
               "{\"boundaries\": [1, 2], \"values\": [1.0, 0.5]}}}",
               "values");
    bad_config("{\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", \"config\": "
               "{\"boundaries\": [1], \"values\": [1.0, \"x\"]}}}",
               "values");
    bad_config("{\"learning_rate\": {\"class_name\": \"StepDecay\", \"config\": {}}}",
               "class_name");
    bad_config("{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": "
               "{\"initial_learning_rate\": 1, \"decay_rate\": 0.5}}}",
               "decay_steps");
}

static void config_gradient_accumulation_steps_1(void **state)
{
    (void)state;
    bad_config("{\"gradient_accumulation_steps\": 1}", "gradient_accumulation_steps");
    bad_config("{\"gradient_accumulation_steps\": -3}", "gradient_accumulation_steps");
    bad_config("{\"gradient_accumulation_steps\": 1.0}", "gradient_accumulation_steps");
    /* Keras: `not isinstance(ema_overwrite_frequency, int)` raises. (0 and
     * 0.0 are falsy in Keras, so they mean None: see test_config.) */
    bad_config("{\"use_ema\": true, \"ema_overwrite_frequency\": 2.0}",
               "ema_overwrite_frequency");
}

static void config_broken_json(void **state)
{
    (void)state;
    /* Truncated JSON: the file is named. 2 (invalid config) today; 3
     * ("malformed file") would also fit replay-cli.md. */
    write_text("bad.json", "{\"rho\": 0.9, ");
    const char *c = path_of("bad.json");
    char err[4096];
    int rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                      path_of("grads.safetensors"), "--config", c),
                 NULL, err, sizeof err);
    assert_true(rc == 2 || rc == 3);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--config", c),
                   rc, c, NULL);
    write_bytes("bad.json", "{\"rho\": 0.9}\0junk", 17);
    rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                  path_of("grads.safetensors"), "--config", c),
             NULL, err, sizeof err);
    assert_true(rc == 2 || rc == 3);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--config", c),
                   rc, c, NULL);
}

/* ------------------------------------------------------- usage rows (2) */

static void bad_usage(void **state)
{
    (void)state;
    expect_refused(ARGS("--params", path_of("params.safetensors")), 2, "--grads", NULL);
    expect_refused(ARGS("--grads", path_of("grads.safetensors")), 2, "--params", NULL);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--threads", "0"),
                   2, "--threads", NULL);
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--threads", "2x"),
                   2, "--threads", NULL);
    /* An unknown option: one line too (replay-cli.md). */
    char err[4096];
    int rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                      path_of("grads.safetensors"), "--bogus"),
                 NULL, err, sizeof err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "--bogus"));
    expect_refused(ARGS("--params", path_of("params.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--bogus"),
                   2, "--bogus", NULL);
}


/* ------------------------------------------------------ --resume rows */

/* A valid state file from the valid inputs. */
static void make_state(const char *name)
{
    char err[4096];
    int rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                      path_of("grads.safetensors"), "--config", path_of("config.json")),
                 path_of(name), err, sizeof err);
    assert_int_equal(rc, 0);
}

/* Rewrites state `from` into `to` without tensor `drop` (NULL: none) and,
 * when `iterations` is not NULL, with that optimizer/iterations; the
 * checksum and all other metadata stay valid. */
static void rewrite_state(const char *from, const char *to, const char *drop,
                          const int64_t *iterations)
{
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(path_of(from), &f), 0);
    adadelta_st_out t[32];
    int n = 0;
    for (int i = 0; i < f->n; i++) {
        if (drop && strcmp(f->t[i].name, drop) == 0)
            continue;
        t[n].name = f->t[i].name;
        t[n].dtype = f->t[i].dtype;
        t[n].ndim = f->t[i].ndim;
        t[n].shape = f->t[i].shape;
        t[n].data = f->t[i].data;
        if (iterations && strcmp(f->t[i].name, "optimizer/iterations") == 0)
            t[n].data = iterations;
        n++;
    }
    assert_int_equal(n, f->n - (drop != NULL));
    const char *meta[16];
    int m = 0;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], "checksum") != 0) {
            meta[2 * m] = f->meta_keys[i];
            meta[2 * m + 1] = f->meta_values[i];
            m++;
        }
    assert_int_equal(adadelta_st_write(path_of(to), t, n, meta, m, 1), 0);
    adadelta_st_free(f);
}

static void resume_from_bad_state(void **state)
{
    (void)state;
    make_state("state.safetensors");
    size_t n = 0;
    unsigned char *b = read_all(path_of("state.safetensors"), &n);
    assert_non_null(b);
    const char *s = path_of("bad-state.safetensors");
    /* Truncated. */
    write_bytes("bad-state.safetensors", b, n - 3);
    expect_refused(ARGS("--resume", s, "--grads", path_of("grads.safetensors")), 3, s, NULL);
    /* One data bit flipped: the checksum says so. */
    b[n - 5] ^= 0x10;
    write_bytes("bad-state.safetensors", b, n);
    expect_refused(ARGS("--resume", s, "--grads", path_of("grads.safetensors")), 3, s,
                   "checksum");
    free(b);
    /* Not a state file (no metadata): a params file. */
    const char *p = path_of("params.safetensors");
    expect_refused(ARGS("--resume", p, "--grads", path_of("grads.safetensors")), 3, p, NULL);
    /* A slot tensor missing (checksum valid). */
    rewrite_state("state.safetensors", "bad-state.safetensors",
                  "optimizer/accumulated_grad/dense/bias", NULL);
    char err[4096];
    int rc = run(ARGS("--resume", s, "--grads", path_of("grads.safetensors")), NULL, err,
                 sizeof err);
    assert_true(rc == 3 || rc == 4);
    expect_refused(ARGS("--resume", s, "--grads", path_of("grads.safetensors")), rc, s,
                   "optimizer/accumulated_grad/dense/bias");
    /* A config that does not fit the saved tensors: 4. */
    write_text("ema.json", "{\"use_ema\": true}");
    expect_refused(ARGS("--resume", path_of("state.safetensors"), "--grads",
                        path_of("grads.safetensors"), "--config", path_of("ema.json")),
                   4, path_of("state.safetensors"), NULL);
}


/* A state whose checksum is right but whose iteration count no run can
 * reach: INT64_MAX overflows on the next apply (UBSan: signed overflow in
 * lib/optimizer.c), a negative count is nonsense. Status 3 expected. */
static void resume_with_out_of_range_iterations(void **state)
{
    (void)state;
    make_state("state.safetensors");
    const char *s = path_of("bad-state.safetensors");
    static const int64_t bad[] = {INT64_MAX, -5};
    for (int i = 0; i < 2; i++) {
        rewrite_state("state.safetensors", "bad-state.safetensors", NULL, &bad[i]);
        expect_refused(ARGS("--resume", s, "--grads", path_of("grads.safetensors")), 3, s,
                       "iterations");
    }
}

/* ------------------------------------------- numerical faults (C API) */

typedef struct {
    adadelta *opt;
    float w[4], b[2];
} small_model;

static void make_model(small_model *m, const adadelta_config *cfg)
{
    const float w0[4] = {0.5f, -1.0f, 2.0f, 0.25f}, b0[2] = {0.1f, -0.1f};
    memcpy(m->w, w0, sizeof w0);
    memcpy(m->b, b0, sizeof b0);
    assert_int_equal(adadelta_create(cfg, &m->opt), 0);
    int64_t ws[2] = {2, 2}, bs[1] = {2};
    assert_int_equal(adadelta_add_variable(m->opt, "w", ADADELTA_F32, m->w, 2, ws), 0);
    assert_int_equal(adadelta_add_variable(m->opt, "b", ADADELTA_F32, m->b, 1, bs), 1);
}

static void nan_gradient_propagates(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {0.1f, NAN, 0.3f, 0.4f}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    assert_true(isnan(m.w[1]));
    assert_true(isfinite(m.w[0]) && isfinite(m.w[2]) && isfinite(m.w[3]));
    assert_true(isfinite(m.b[0]) && isfinite(m.b[1]));
    assert_true(isnan(adadelta_slot(m.opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD)[1]));
    assert_int_equal(adadelta_iterations(m.opt), 1);
    adadelta_destroy(m.opt);
}

static void inf_gradient_with_global_clipnorm_gives_nan_everywhere(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.global_clipnorm = 1.0;
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {0.1f, 0.2f, INFINITY, 0.4f}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    for (int i = 0; i < 4; i++)
        assert_true(isnan(m.w[i]));
    for (int i = 0; i < 2; i++)
        assert_true(isnan(m.b[i]));
    adadelta_destroy(m.opt);

    /* A variable without a gradient this call is not updated. */
    make_model(&m, &cfg);
    const float *g2[2] = {gw, NULL};
    assert_int_equal(adadelta_apply(m.opt, g2), 0);
    for (int i = 0; i < 4; i++)
        assert_true(isnan(m.w[i]));
    assert_true(m.b[0] == 0.1f && m.b[1] == -0.1f);
    adadelta_destroy(m.opt);
}

static void loss_scale_optimizer_skips_nonfinite_step(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.dynamic_loss_scale = 1;
    cfg.initial_scale = 1024;
    cfg.dynamic_growth_steps = 3;
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {1, 2, 3, 4}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    assert_int_equal(adadelta_apply(m.opt, g), 0); /* one good step */
    assert_int_equal(adadelta_iterations(m.opt), 1);
    assert_int_equal(adadelta_step_counter(m.opt), 1);
    float w[4], b[2], acc[4];
    memcpy(w, m.w, sizeof w);
    memcpy(b, m.b, sizeof b);
    memcpy(acc, adadelta_slot(m.opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD), sizeof acc);

    float bad[4] = {1, NAN, 3, 4};
    const float *g2[2] = {bad, gb};
    assert_int_equal(adadelta_apply(m.opt, g2), 0);
    assert_int_equal(adadelta_iterations(m.opt), 1);
    assert_true(adadelta_dynamic_scale(m.opt) == 512.0f);
    assert_int_equal(adadelta_step_counter(m.opt), 0);
    assert_memory_equal(m.w, w, sizeof w);
    assert_memory_equal(m.b, b, sizeof b);
    assert_memory_equal(adadelta_slot(m.opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD), acc,
                        sizeof acc);

    float inf[2] = {INFINITY, -INFINITY};
    const float *g3[2] = {NULL, inf};
    assert_int_equal(adadelta_apply(m.opt, g3), 0);
    assert_int_equal(adadelta_iterations(m.opt), 1);
    assert_true(adadelta_dynamic_scale(m.opt) == 256.0f);
    assert_memory_equal(m.b, b, sizeof b);
    adadelta_destroy(m.opt);
}

static void check_finite_refuses_before_any_change(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    cfg.check_finite = 1;
    cfg.use_ema = 1;
    cfg.gradient_accumulation_steps = 2;
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {1, 2, 3, 4}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    for (int k = 0; k < 3; k++) /* slots hold something */
        assert_int_equal(adadelta_apply(m.opt, g), 0);
    assert_int_equal(adadelta_iterations(m.opt), 3);

    float w[4], b[2];
    float slots[4][6];
    memcpy(w, m.w, sizeof w);
    memcpy(b, m.b, sizeof b);
    for (int s = 0; s < 4; s++) {
        memcpy(slots[s], adadelta_slot(m.opt, 0, (adadelta_slot_kind)s), 4 * sizeof(float));
        memcpy(slots[s] + 4, adadelta_slot(m.opt, 1, (adadelta_slot_kind)s), 2 * sizeof(float));
    }
    float values[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        float bad[2] = {1, values[i]};
        const float *g2[2] = {gw, bad};
        assert_int_equal(adadelta_apply(m.opt, g2), ADADELTA_ENONFINITE);
        assert_non_null(strstr(adadelta_last_error(), "NaN or Inf"));
        assert_int_equal(adadelta_iterations(m.opt), 3);
        assert_memory_equal(m.w, w, sizeof w);
        assert_memory_equal(m.b, b, sizeof b);
        for (int s = 0; s < 4; s++) {
            assert_memory_equal(adadelta_slot(m.opt, 0, (adadelta_slot_kind)s), slots[s],
                                4 * sizeof(float));
            assert_memory_equal(adadelta_slot(m.opt, 1, (adadelta_slot_kind)s), slots[s] + 4,
                                2 * sizeof(float));
        }
    }
    /* Finite gradients still work afterwards. */
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    assert_int_equal(adadelta_iterations(m.opt), 4);
    adadelta_destroy(m.opt);

    /* With a dynamic loss scale too: refused, the scale is not halved. */
    adadelta_config_default(&cfg);
    cfg.check_finite = 1;
    cfg.dynamic_loss_scale = 1;
    make_model(&m, &cfg);
    float bad[2] = {NAN, 0};
    const float *g3[2] = {NULL, bad};
    assert_int_equal(adadelta_apply(m.opt, g3), ADADELTA_ENONFINITE);
    assert_true(adadelta_dynamic_scale(m.opt) == 32768.0f);
    assert_int_equal(adadelta_iterations(m.opt), 0);
    adadelta_destroy(m.opt);
}

/* The driver with a NaN gradient and check_finite off: Keras behaviour,
 * status 0, the variable is NaN in --out. */
static void replay_nan_gradient_propagates(void **state)
{
    (void)state;
    float nan_bias[3] = {0.5f, NAN, 0.25f};
    adadelta_st_out grads[] = {{"grads/0/dense/bias", ADADELTA_ST_F32, 1, b_shape, nan_bias}};
    assert_int_equal(adadelta_st_write(path_of("nan.safetensors"), grads, 1, NULL, 0, 0), 0);
    char err[4096];
    int rc = run(ARGS("--params", path_of("params.safetensors"), "--grads",
                      path_of("nan.safetensors")),
                 path_of("out.safetensors"), err, sizeof err);
    assert_int_equal(rc, 0);
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(path_of("out.safetensors"), &f), 0);
    float b[3];
    adadelta_st_copy_f32(adadelta_st_find(f, "dense/bias"), b);
    assert_true(isfinite(b[0]) && isnan(b[1]) && isfinite(b[2]));
    adadelta_st_free(f);
}

#define T(f) cmocka_unit_test_setup(f, fresh)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(valid_inputs_succeed),
        T(missing_files),
        T(truncated_files),
        T(header_length_larger_than_file),
        T(broken_header_json),
        T(duplicate_tensor_names),
        T(duplicate_gradient_same_call),
        T(unknown_dtypes),
        T(negative_and_overflowing_shapes),
        T(offsets_out_of_range),
        T(offsets_overlapping_or_gap),
        T(shape_and_bytes_disagree),
        T(params_not_a_safetensors_file),
        T(gradient_for_unknown_variable),
        T(gradient_with_wrong_shape),
        T(gradient_with_wrong_dtype),
        T(gradient_call_index_huge),
        T(config_unknown_key),
        T(config_wrong_type),
        T(config_nan_and_infinity),
        T(config_out_of_range),
        T(config_conflicting_clips),
        T(config_bad_schedules),
        T(config_gradient_accumulation_steps_1),
        T(config_broken_json),
        T(bad_usage),
        T(resume_from_bad_state),
        T(resume_with_out_of_range_iterations),
        T(nan_gradient_propagates),
        T(inf_gradient_with_global_clipnorm_gives_nan_everywhere),
        T(loss_scale_optimizer_skips_nonfinite_step),
        T(check_finite_refuses_before_any_change),
        T(replay_nan_gradient_propagates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
