/* test_bad_inputs.c - the bad input catalogue of the reliability issue,
 * through adadelta-replay (replay-cli.md): every hostile file or config gets
 * its documented exit status (2 config/usage, 3 bad file, 4 inputs
 * disagree), exactly one line on stderr naming the file or the key, no
 * crash or hang, and the --out file is neither created nor changed. Then
 * the numerical faults through the C API: NaN/Inf gradients as Keras, and
 * check_finite refusing them before anything changes.
 *
 * The catalogue is the table `rows` below, one line a row; each row is a
 * cmocka test of its own. The hostile files are generated into the
 * harness's mkdtemp folder, so tests/data holds none. ADADELTA_REPLAY names
 * the driver (set by make check). */
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
#include <unistd.h>

#include "adadelta.h"
#include "harness.h"
#include "safetensors.h"

/* ------------------------------------------------------------ the rows */

/* How a row's hostile file (@bad) is made. */
typedef enum {
    NONE,       /* there is none: the row is its arguments */
    MISSING,    /* @bad is named but not created */
    HEADER,     /* a safetensors file: content = its header text, n = data bytes */
    BYTES,      /* the n bytes of content */
    TEXT,       /* content as text */
    CUT,        /* the valid file `content` cut to n bytes (n < 0: |n| short; HALF) */
    FLIP,       /* the valid file `content` with bit 0x10 of byte n flipped (n < 0: from the end) */
    DROP,       /* @state without the tensor `content`, checksum valid */
    ITERATIONS, /* @state with optimizer/iterations = n, checksum valid */
    FIFO,       /* @bad is a named pipe nobody writes to (must not block) */
} making;

#define HALF INT64_MIN /* CUT: half the file */

/* A row: the hostile input, the driver's arguments, and what the driver
 * must answer: an exit status in `status` (EXIT(s) bits) and one line on
 * stderr holding `names` and, if not NULL, `what`.
 *
 * In args (split at spaces), names and what, a whole word starting with @
 * is a file in the folder:
 *   @bad     the hostile file: bad.json after --config, else bad.safetensors
 *   @params  @grads  @config   the valid inputs (two variables, three calls)
 *   @state   a valid state file, made by the driver from the valid inputs
 *   @many    a params file of 2000 scalar variables v0 ... v1999
 *   @dir     the folder itself
 * "--out FILE" is added by the check (and left out once). */
typedef struct {
    const char *name;
    making how;
    const char *content;
    int64_t n;
    const char *args;
    unsigned status;
    const char *names, *what;
} row;

#define EXIT(s) (1u << (s))
#define PARAMS "--params @bad --grads @grads"
#define GRADS "--params @params --grads @bad"
#define CONFIG "--params @params --grads @grads --config @bad"
#define RESUME "--resume @bad --grads @grads"

/* clang-format off */
static const row rows[] = {
    /* files (3) */
    {"missing: --params file", MISSING, NULL, 0, PARAMS, EXIT(3), "@bad", NULL},
    {"missing: --grads file", MISSING, NULL, 0, GRADS, EXIT(3), "@bad", NULL},
    {"missing: --config file", MISSING, NULL, 0, CONFIG, EXIT(3), "@bad", NULL},
    {"missing: --params is a folder", NONE, NULL, 0, "--params @dir --grads @grads", EXIT(3), "@dir", NULL},
    {"fifo: --params is a named pipe", FIFO, NULL, 0, PARAMS, EXIT(3), "@bad", "not a regular file"},
    {"fifo: --grads is a named pipe", FIFO, NULL, 0, GRADS, EXIT(3), "@bad", "not a regular file"},
    {"fifo: --config is a named pipe", FIFO, NULL, 0, CONFIG, EXIT(3), "@bad", "not a regular file"},
    {"fifo: --resume is a named pipe", FIFO, NULL, 0, RESUME, EXIT(3), "@bad", "not a regular file"},
    {"truncated: params, 0 bytes", CUT, "@params", 0, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 1 byte", CUT, "@params", 1, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, inside the length", CUT, "@params", 7, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, the length only", CUT, "@params", 8, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 1 header byte", CUT, "@params", 9, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, inside the header", CUT, "@params", 20, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, half", CUT, "@params", HALF, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 24 bytes short", CUT, "@params", -24, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 13 bytes short", CUT, "@params", -13, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 4 bytes short", CUT, "@params", -4, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: params, 1 byte short", CUT, "@params", -1, PARAMS, EXIT(3), "@bad", NULL},
    {"truncated: grads, 0 bytes", CUT, "@grads", 0, GRADS, EXIT(3), "@bad", NULL},
    {"truncated: grads, inside the length", CUT, "@grads", 5, GRADS, EXIT(3), "@bad", NULL},
    {"truncated: grads, the length only", CUT, "@grads", 8, GRADS, EXIT(3), "@bad", NULL},
    {"truncated: grads, inside the header", CUT, "@grads", 30, GRADS, EXIT(3), "@bad", NULL},
    {"truncated: grads, half", CUT, "@grads", HALF, GRADS, EXIT(3), "@bad", NULL},
    {"truncated: grads, 1 byte short", CUT, "@grads", -1, GRADS, EXIT(3), "@bad", NULL},
    {"header length: 200, 16 bytes there", BYTES, "\310\0\0\0\0\0\0\0{}              ", 24, PARAMS, EXIT(3), "@bad", "header length"},
    {"header length: 2^64 - 1", BYTES, "\377\377\377\377\377\377\377\377{}              ", 24, PARAMS, EXIT(3), "@bad", "header length"},
    {"header length: 2^64 - 1 in grads", BYTES, "\377\377\377\377\377\377\377\377{}              ", 24, GRADS, EXIT(3), "@bad", "header length"},
    {"header JSON: cut short", HEADER, "{\"dense/kernel\":{\"dtype\":\"F32\",\"shape\":[2,3]", 0, PARAMS, EXIT(3), "@bad", "JSON"},
    {"header JSON: not JSON", HEADER, "not json", 0, PARAMS, EXIT(3), "@bad", "JSON"},
    {"header JSON: an array", HEADER, "[]", 0, PARAMS, EXIT(3), "@bad", "not a JSON object"},
    {"header JSON: grads cut short", HEADER, "{\"grads/0/dense/bias\":", 0, GRADS, EXIT(3), "@bad", "JSON"},
    {"duplicate: tensor name", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, PARAMS, EXIT(3), "@bad", "duplicate"},
    {"duplicate: gradient name", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}", 24, GRADS, EXIT(3), "@bad", "duplicate"},
    /* Call 0 written "0" and "00": grads/00/... is not a spelling of call 0,
     * the driver must not pick one silently. */
    {"duplicate: call 0 as 0 and 00", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"grads/00/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}", 24, GRADS, EXIT(3), "@bad", "grads/00/dense/bias"},
    {"dtype: BF16 gradient of a float32 variable", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 6, GRADS, EXIT(4), "@bad", "BF16"},
    {"dtype: F16 gradient of a float32 variable", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 6, GRADS, EXIT(4), "@bad", "F16"},
    /* A known dtype the driver cannot use as a variable: still a bad file. */
    {"dtype: I64 variable", HEADER, "{\"dense/bias\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 24, PARAMS, EXIT(3), "@bad", "'dense/bias' is I64"},
    {"dtype: U8 gradient", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, GRADS, EXIT(3), "@bad", "U8"},
    {"shape: negative", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, PARAMS, EXIT(3), "@bad", "shape[0]"},
    {"shape: 2^64 elements", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, PARAMS, EXIT(3), "@bad", "overflow"},
    {"shape: 2^64 bytes", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0, PARAMS, EXIT(3), "@bad", "overflow"},
    {"shape: negative in grads", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3,-2],\"data_offsets\":[0,12]}}", 12, GRADS, EXIT(3), "@bad", "shape[1]"},
    {"shape: 2^64 elements in grads", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[2305843009213693952,8],\"data_offsets\":[0,0]}}", 0, GRADS, EXIT(3), "@bad", "overflow"},
    {"offsets: past the data", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 8, PARAMS, EXIT(3), "@bad", "data_offsets"},
    {"offsets: negative", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, PARAMS, EXIT(3), "@bad", "data_offsets"},
    {"offsets: near 2^63", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,9223372036854775804]}}", 4, PARAMS, EXIT(3), "@bad", "data_offsets"},
    {"offsets: past the data in grads", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", 12, GRADS, EXIT(3), "@bad", "data_offsets"},
    {"offsets: overlapping", HEADER, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, PARAMS, EXIT(3), "@bad", "overlapping"},
    {"offsets: the same bytes twice", HEADER, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, PARAMS, EXIT(3), "@bad", "overlapping"},
    {"offsets: a gap", HEADER, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, PARAMS, EXIT(3), "@bad", "gap"},
    {"offsets: overlapping in grads", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"grads/1/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, GRADS, EXIT(3), "@bad", "overlapping"},
    {"bytes: fewer than the shape", HEADER, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, PARAMS, EXIT(3), "@bad", "shape needs 12"},
    {"bytes: more than the shape in grads", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, GRADS, EXIT(3), "@bad", "shape needs 12"},
    {"not safetensors: text as params", TEXT, "hello, this is not safetensors at all\n", 0, PARAMS, EXIT(3), "@bad", NULL},
    /* A badly named gradient tensor is a malformed grads file. */
    {"not safetensors: gradient not named grads/<call>/<variable>", HEADER, "{\"dense/bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, GRADS, EXIT(3), "@bad", "dense/bias"},
    /* grads (4) */
    {"grads: unknown variable", HEADER, "{\"grads/0/dense/nope\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, GRADS, EXIT(4), "@bad", "dense/nope"},
    {"grads: shape [3,2] for [2,3]", HEADER, "{\"grads/0/dense/kernel\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}}", 24, GRADS, EXIT(4), "@bad", "dense/kernel"},
    {"grads: shape [1,3] for [3]", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,12]}}", 12, GRADS, EXIT(4), "@bad", "dense/bias"},
    {"grads: scalar for [3]", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, GRADS, EXIT(4), "@bad", "dense/bias"},
    {"grads: F64 for F32", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 24, GRADS, EXIT(4), "@bad", "is F64, variable 'dense/bias' is F32"},
    {"grads: I64 for F32", HEADER, "{\"grads/0/dense/bias\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]}}", 24, GRADS, EXIT(4), "@bad", "dense/bias"},
    /* Every call before 10^7 has no gradient: the driver must say so, not
     * build a 10^7 x 2000 table first. */
    {"grads: only call 10000000 of 2000 variables", HEADER, "{\"grads/10000000/v0\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "--params @many --grads @bad", EXIT(4), "@bad", "no gradient"},
    /* config (2) */
    {"config: unknown key", TEXT, "{\"learning_rate\": 1.0, \"momentum\": 0.9}", 0, CONFIG, EXIT(2), "momentum", NULL},
    {"config: unknown schedule key", TEXT, "{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1, \"decay_steps\": 2, \"decay_rate\": 0.5, \"speed\": 1}}}", 0, CONFIG, EXIT(2), "speed", NULL},
    {"config: unknown inner optimizer key", TEXT, "{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": \"Adadelta\", \"config\": {\"nesterov\": true}}}", 0, CONFIG, EXIT(2), "nesterov", NULL},
    {"config: rho a string", TEXT, "{\"rho\": \"0.9\"}", 0, CONFIG, EXIT(2), "rho", NULL},
    {"config: use_ema a number", TEXT, "{\"use_ema\": 1}", 0, CONFIG, EXIT(2), "use_ema", NULL},
    {"config: learning_rate an array", TEXT, "{\"learning_rate\": [1]}", 0, CONFIG, EXIT(2), "learning_rate", NULL},
    {"config: gradient_accumulation_steps 2.5", TEXT, "{\"gradient_accumulation_steps\": 2.5}", 0, CONFIG, EXIT(2), "gradient_accumulation_steps", NULL},
    {"config: epsilon null", TEXT, "{\"epsilon\": null}", 0, CONFIG, EXIT(2), "epsilon", NULL},
    {"config: name a number", TEXT, "{\"name\": 3}", 0, CONFIG, EXIT(2), "name", NULL},
    {"config: an array", TEXT, "[]", 0, CONFIG, EXIT(2), "top level", NULL},
    /* Python's json.dumps writes NaN and Infinity; JSON has no such numbers.
     * A JSON parser stops there, before the key: the file is named. */
    {"config: NaN", TEXT, "{\"learning_rate\": NaN}", 0, CONFIG, EXIT(2), "bad.json", NULL},
    {"config: Infinity", TEXT, "{\"epsilon\": Infinity}", 0, CONFIG, EXIT(2), "bad.json", NULL},
    {"config: -Infinity", TEXT, "{\"clipnorm\": -Infinity}", 0, CONFIG, EXIT(2), "bad.json", NULL},
    {"config: 1e400 overflows", TEXT, "{\"learning_rate\": 1e400}", 0, CONFIG, EXIT(2), "bad.json", NULL},
    {"config: rho 2", TEXT, "{\"rho\": 2}", 0, CONFIG, EXIT(2), "rho", NULL},
    {"config: rho -0.1", TEXT, "{\"rho\": -0.1}", 0, CONFIG, EXIT(2), "rho", NULL},
    {"config: epsilon negative", TEXT, "{\"epsilon\": -1e-7}", 0, CONFIG, EXIT(2), "epsilon", NULL},
    {"config: ema_momentum 1.5", TEXT, "{\"use_ema\": true, \"ema_momentum\": 1.5}", 0, CONFIG, EXIT(2), "ema_momentum", NULL},
    {"config: initial_scale 0", TEXT, "{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": \"Adadelta\", \"config\": {}}, \"initial_scale\": 0}", 0, CONFIG, EXIT(2), "initial_scale", NULL},
    {"config: dynamic_growth_steps 0", TEXT, "{\"name\": \"loss_scale_optimizer\", \"inner_optimizer\": {\"class_name\": \"Adadelta\", \"config\": {}}, \"dynamic_growth_steps\": 0}", 0, CONFIG, EXIT(2), "dynamic_growth_steps", NULL},
    {"config: clipnorm and clipvalue", TEXT, "{\"clipnorm\": 1.0, \"clipvalue\": 0.5}", 0, CONFIG, EXIT(2), "clipvalue", NULL},
    {"config: clipnorm and global_clipnorm", TEXT, "{\"clipnorm\": 1.0, \"global_clipnorm\": 0.5}", 0, CONFIG, EXIT(2), "global_clipnorm", NULL},
    {"config: decay_steps 0", TEXT, "{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1, \"decay_steps\": 0, \"decay_rate\": 0.5}}}", 0, CONFIG, EXIT(2), "decay_steps", NULL},
    {"config: first_decay_steps 0", TEXT, "{\"learning_rate\": {\"class_name\": \"CosineDecayRestarts\", \"config\": {\"initial_learning_rate\": 1, \"first_decay_steps\": 0}}}", 0, CONFIG, EXIT(2), "first_decay_steps", NULL},
    {"config: piecewise values one short", TEXT, "{\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [1, 2], \"values\": [1.0, 0.5]}}}", 0, CONFIG, EXIT(2), "values", NULL},
    {"config: piecewise value a string", TEXT, "{\"learning_rate\": {\"class_name\": \"PiecewiseConstantDecay\", \"config\": {\"boundaries\": [1], \"values\": [1.0, \"x\"]}}}", 0, CONFIG, EXIT(2), "values", NULL},
    {"config: schedule not in Keras", TEXT, "{\"learning_rate\": {\"class_name\": \"StepDecay\", \"config\": {}}}", 0, CONFIG, EXIT(2), "class_name", NULL},
    {"config: decay_steps missing", TEXT, "{\"learning_rate\": {\"class_name\": \"ExponentialDecay\", \"config\": {\"initial_learning_rate\": 1, \"decay_rate\": 0.5}}}", 0, CONFIG, EXIT(2), "decay_steps", NULL},
    {"config: gradient_accumulation_steps 1", TEXT, "{\"gradient_accumulation_steps\": 1}", 0, CONFIG, EXIT(2), "gradient_accumulation_steps", NULL},
    {"config: gradient_accumulation_steps -3", TEXT, "{\"gradient_accumulation_steps\": -3}", 0, CONFIG, EXIT(2), "gradient_accumulation_steps", NULL},
    {"config: gradient_accumulation_steps 1.0", TEXT, "{\"gradient_accumulation_steps\": 1.0}", 0, CONFIG, EXIT(2), "gradient_accumulation_steps", NULL},
    /* Keras: `not isinstance(ema_overwrite_frequency, int)` raises. (0 and
     * 0.0 are falsy in Keras, so they mean None: see test_config.) */
    {"config: ema_overwrite_frequency 2.0", TEXT, "{\"use_ema\": true, \"ema_overwrite_frequency\": 2.0}", 0, CONFIG, EXIT(2), "ema_overwrite_frequency", NULL},
    /* Broken JSON: the file is named. 2 (invalid config) today; 3
     * ("malformed file") would also fit replay-cli.md. */
    {"config: JSON cut short", TEXT, "{\"rho\": 0.9, ", 0, CONFIG, EXIT(2) | EXIT(3), "@bad", NULL},
    {"config: a NUL byte", BYTES, "{\"rho\": 0.9}\0junk", 17, CONFIG, EXIT(2) | EXIT(3), "@bad", NULL},
    /* usage (2); an unknown option gets one line too (replay-cli.md) */
    {"usage: no --grads", NONE, NULL, 0, "--params @params", EXIT(2), "--grads", NULL},
    {"usage: no --params", NONE, NULL, 0, "--grads @grads", EXIT(2), "--params", NULL},
    {"usage: --threads 0", NONE, NULL, 0, "--params @params --grads @grads --threads 0", EXIT(2), "--threads", NULL},
    {"usage: --threads 2x", NONE, NULL, 0, "--params @params --grads @grads --threads 2x", EXIT(2), "--threads", NULL},
    {"usage: unknown option", NONE, NULL, 0, "--params @params --grads @grads --bogus", EXIT(2), "--bogus", NULL},
    /* --resume */
    {"resume: state cut 3 bytes short", CUT, "@state", -3, RESUME, EXIT(3), "@bad", NULL},
    {"resume: state with a data bit flipped", FLIP, "@state", -5, RESUME, EXIT(3), "@bad", "checksum"},
    {"resume: a params file (no metadata)", NONE, NULL, 0, "--resume @params --grads @grads", EXIT(3), "@params", NULL},
    {"resume: state without a slot tensor", DROP, "optimizer/accumulated_grad/dense/bias", 0, RESUME, EXIT(3) | EXIT(4), "@bad", "optimizer/accumulated_grad/dense/bias"},
    {"resume: a config that does not fit the state", TEXT, "{\"use_ema\": true}", 0, "--resume @state --grads @grads --config @bad", EXIT(4), "@state", NULL},
    /* Checksum right, an iteration count no run can reach: INT64_MAX
     * overflows on the next apply (UBSan: signed overflow in
     * lib/optimizer.c), a negative count is nonsense. */
    {"resume: iterations INT64_MAX", ITERATIONS, NULL, INT64_MAX, RESUME, EXIT(3), "@bad", "iterations"},
    {"resume: iterations -5", ITERATIONS, NULL, -5, RESUME, EXIT(3), "@bad", "iterations"},
};
/* clang-format on */

enum { N_ROWS = sizeof rows / sizeof rows[0] };

/* ------------------------------------------------------------ fixtures */

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
    assert_int_equal(adadelta_st_write(th_path("params.safetensors"), params, 2, NULL, 0, 0), 0);
    adadelta_st_out grads[] = {
        {"grads/0/dense/kernel", ADADELTA_ST_F32, 2, k_shape, gk},
        {"grads/0/dense/bias", ADADELTA_ST_F32, 1, b_shape, gb},
        {"grads/1/dense/kernel", ADADELTA_ST_F32, 2, k_shape, gk},
        {"grads/2/dense/bias", ADADELTA_ST_F32, 1, b_shape, gb},
    };
    assert_int_equal(adadelta_st_write(th_path("grads.safetensors"), grads, 4, NULL, 0, 0), 0);
    th_write_text("config.json", "{\"learning_rate\": 1.0, \"rho\": 0.9}\n");
}

static int setup(void **state)
{
    (void)state;
    return th_replay_check() == 0 && th_tmpdir_create(NULL) == 0 ? 0 : -1;
}

/* Each test starts from a folder with only the valid inputs. */
static int fresh(void **state)
{
    (void)state;
    th_tmpdir_clear();
    write_valid_files();
    return 0;
}

/* The driver with args (NULL-terminated) plus "--out out" unless out is
 * NULL: its exit status (-signal when killed), stderr in err. */
static int run(const char *const *args, const char *out, char *err, size_t cap)
{
    const char *argv[40];
    int n = 0;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 37);
        argv[n++] = args[i];
    }
    if (out) {
        argv[n++] = "--out";
        argv[n++] = out;
    }
    argv[n] = NULL;
    return th_replay(argv, err, cap);
}

/* A valid state file from the valid inputs. */
static void make_state(const char *name)
{
    char err[4096];
    int rc = run(TH_ARGS("--params", th_path("params.safetensors"), "--grads",
                         th_path("grads.safetensors"), "--config", th_path("config.json")),
                 th_path(name), err, sizeof err);
    if (rc)
        fprintf(stderr, "making %s: exit %d: %s", name, rc, err);
    assert_int_equal(rc, 0);
}

/* 2000 scalar variables v0 ... v1999. */
static void make_many(const char *name)
{
    enum { NV = 2000 };
    static float ones[NV];
    static char names[NV][16];
    static adadelta_st_out t[NV];
    for (int i = 0; i < NV; i++) {
        ones[i] = 1;
        snprintf(names[i], sizeof names[i], "v%d", i);
        t[i] = (adadelta_st_out){names[i], ADADELTA_ST_F32, 0, NULL, &ones[i]};
    }
    assert_int_equal(adadelta_st_write(th_path(name), t, NV, NULL, 0, 0), 0);
}

/* Rewrites state `from` into `to` without tensor `drop` (NULL: none) and,
 * when `iterations` is not NULL, with that optimizer/iterations; the
 * checksum and all other metadata stay valid. */
static void rewrite_state(const char *from, const char *to, const char *drop,
                          const int64_t *iterations)
{
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(from, &f), 0);
    adadelta_st_out t[32];
    int n = 0;
    assert_true(f->n <= 32);
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
            assert_true(m < 8);
            meta[2 * m] = f->meta_keys[i];
            meta[2 * m + 1] = f->meta_values[i];
            m++;
        }
    /* the state format of the file read: version 2 covers the whole file */
    int whole = !strcmp(adadelta_st_meta(f, "version"), "2");
    assert_int_equal(adadelta_st_write(to, t, n, meta, m,
                                       whole ? ADADELTA_ST_CHECKSUM_FILE : ADADELTA_ST_CHECKSUM_DATA),
                     0);
    adadelta_st_free(f);
}

/* The path of a row's @word, making @state and @many when first used;
 * other words are themselves. */
static const char *expand(const row *r, const char *word, const char *bad)
{
    if (!word || word[0] != '@')
        return word;
    static const struct {
        const char *word, *file;
        void (*make)(const char *name);
    } files[] = {
        {"@params", "params.safetensors", NULL},
        {"@grads", "grads.safetensors", NULL},
        {"@config", "config.json", NULL},
        {"@state", "state.safetensors", make_state},
        {"@many", "many.safetensors", make_many},
    };
    if (strcmp(word, "@bad") == 0)
        return th_path(bad);
    if (strcmp(word, "@dir") == 0)
        return th_tmpdir();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(word, files[i].word) == 0) {
            const char *path = th_path(files[i].file);
            if (files[i].make && access(path, F_OK) != 0)
                files[i].make(files[i].file);
            return path;
        }
    fprintf(stderr, "row '%s': unknown file %s\n", r->name, word);
    fail();
    return NULL;
}

/* Offset n of a file of len bytes (n < 0: from the end; HALF: the middle). */
static size_t offset_in(const row *r, int64_t n, size_t len)
{
    int64_t at = n == HALF ? (int64_t)(len / 2) : n < 0 ? (int64_t)len + n : n;
    if (at < 0 || (uint64_t)at > len) {
        fprintf(stderr, "row '%s': offset %lld outside the %zu-byte file\n", r->name,
                (long long)n, len);
        fail();
    }
    return (size_t)at;
}

/* Writes the row's hostile file `bad` (a name in the folder). */
static void make_hostile(const row *r, const char *bad)
{
    size_t len = 0;
    unsigned char *b = NULL;
    switch (r->how) {
    case NONE:
    case MISSING:
        break;
    case HEADER:
        th_write_raw_st(bad, r->content, (size_t)r->n);
        break;
    case BYTES:
        th_write_bytes(bad, r->content, (size_t)r->n);
        break;
    case TEXT:
        th_write_text(bad, r->content);
        break;
    case CUT:
    case FLIP:
        b = th_read_file(expand(r, r->content, bad), &len);
        assert_non_null(b);
        if (r->how == CUT) {
            th_write_bytes(bad, b, offset_in(r, r->n, len));
        } else {
            size_t at = offset_in(r, r->n, len);
            assert_true(at < len);
            b[at] ^= 0x10;
            th_write_bytes(bad, b, len);
        }
        free(b);
        break;
    case DROP:
        rewrite_state(expand(r, "@state", bad), th_path(bad), r->content, NULL);
        break;
    case ITERATIONS:
        rewrite_state(expand(r, "@state", bad), th_path(bad), NULL, &r->n);
        break;
    case FIFO:
        assert_int_equal(mkfifo(th_path(bad), 0600), 0);
        break;
    }
}

/* ---------------------------------------------------------- the check */

static const char previous[] = "previous --out contents, must survive\n";

static const char *statuses_text(unsigned statuses, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int s = 0; s < 32; s++)
        if (statuses & EXIT(s))
            snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", buf[0] ? " or " : "", s);
    return buf;
}

static int is_one_line(const char *s)
{
    size_t len = strlen(s);
    return len > 1 && s[len - 1] == '\n' && strchr(s, '\n') == s + len - 1;
}

/* The core check of every row: an exit status in `statuses`, one line
 * naming `names` (and `what` when not NULL), existing --out unchanged,
 * missing --out not created, the same status without --out, no temporary
 * file left. */
static void expect_refused(const char *const *args, unsigned statuses, const char *names,
                           const char *what)
{
    char err[4096], cmd[4096], want[64];
    int before = th_tmpdir_count();
    /* 1. An existing --out stays byte-identical. */
    th_write_text("out.safetensors", previous);
    int rc = run(args, th_path("out.safetensors"), err, sizeof err);
    int status_ok = rc >= 0 && rc < 32 && (statuses & EXIT(rc));
    if (!status_ok || !is_one_line(err) || !strstr(err, names) || (what && !strstr(err, what)))
        fprintf(stderr,
                "adadelta-replay %s --out ...: exit %d (expected %s), stderr:\n%s"
                "(expected one line naming '%s'%s%s%s)\n",
                th_command_line(args, cmd, sizeof cmd), rc,
                statuses_text(statuses, want, sizeof want), err, names, what ? " and '" : "",
                what ? what : "", what ? "'" : "");
    assert_true(status_ok);
    size_t n = 0;
    unsigned char *got = th_read_file(th_path("out.safetensors"), &n);
    assert_non_null(got);
    assert_int_equal(n, strlen(previous));
    assert_memory_equal(got, previous, n);
    free(got);
    /* 2. One line, naming the file or key. */
    assert_true(is_one_line(err));
    assert_non_null(strstr(err, names));
    if (what)
        assert_non_null(strstr(err, what));
    /* 3. No --out: nothing created. */
    unlink(th_path("out.safetensors"));
    assert_int_equal(run(args, th_path("out.safetensors"), err, sizeof err), rc);
    assert_int_equal(access(th_path("out.safetensors"), F_OK), -1);
    /* 4. Without the option --out: the same status and name. */
    assert_int_equal(run(args, NULL, err, sizeof err), rc);
    if (!strstr(err, names))
        fprintf(stderr, "without --out, stderr: %s(expected to name '%s')\n", err, names);
    assert_non_null(strstr(err, names));
    /* 5. No temporary or other file left behind. */
    assert_int_equal(th_tmpdir_count(), before);
}

/* One row: its files made, its arguments expanded, the check. */
static void row_is_refused(void **state)
{
    const row *r = *state;
    char words[512];
    assert_true(strlen(r->args) < sizeof words);
    strcpy(words, r->args);
    const char *bad = strstr(r->args, "--config @bad") ? "bad.json" : "bad.safetensors";
    const char *argv[24];
    int n = 0;
    for (char *w = words; *w;) {
        char *end = w + strcspn(w, " ");
        int last = *end == '\0';
        *end = '\0';
        if (*w) {
            assert_true(n < 23);
            argv[n++] = expand(r, w, bad);
        }
        w = last ? end : end + 1;
    }
    argv[n] = NULL;
    if ((r->how != NONE) != (strstr(r->args, "@bad") != NULL)) {
        fprintf(stderr, "row '%s': a hostile file needs @bad in the arguments\n", r->name);
        fail();
    }
    make_hostile(r, bad);
    expect_refused(argv, r->status, expand(r, r->names, bad), expand(r, r->what, bad));
}

/* ------------------------------------------------------------ baseline */

static void valid_inputs_succeed(void **state)
{
    (void)state;
    char err[4096];
    int rc = run(TH_ARGS("--params", th_path("params.safetensors"), "--grads",
                         th_path("grads.safetensors"), "--config", th_path("config.json")),
                 th_path("out.safetensors"), err, sizeof err);
    if (rc)
        fprintf(stderr, "%s", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(th_path("out.safetensors"), &f), 0);
    assert_non_null(adadelta_st_find(f, "dense/kernel"));
    adadelta_st_free(f);
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

/* Keras's defaults with a learning rate of 1. */
static adadelta_config lr_one(void)
{
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta_lr_constant(&cfg.learning_rate, 1.0);
    return cfg;
}

static void nan_gradient_propagates(void **state)
{
    (void)state;
    adadelta_config cfg = lr_one();
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {0.1f, NAN, 0.3f, 0.4f}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    assert_true(isnan(m.w[1]));
    assert_true(isfinite(m.w[0]) && isfinite(m.w[2]) && isfinite(m.w[3]));
    assert_true(isfinite(m.b[0]) && isfinite(m.b[1]));
    assert_true(isnan(((float *)adadelta_slot(m.opt, 0, ADADELTA_SLOT_ACCUMULATED_GRAD))[1]));
    assert_int_equal(adadelta_iterations(m.opt), 1);
    adadelta_destroy(m.opt);
}

static void inf_gradient_with_global_clipnorm_gives_nan_everywhere(void **state)
{
    (void)state;
    adadelta_config cfg = lr_one();
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
    adadelta_config cfg = lr_one();
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
    adadelta_config cfg = lr_one();
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
        th_assert_refused(adadelta_apply(m.opt, g2), ADADELTA_ENONFINITE, "NaN or Inf");
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
    th_assert_refused(adadelta_apply(m.opt, g3), ADADELTA_ENONFINITE, "NaN or Inf");
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
    assert_int_equal(adadelta_st_write(th_path("nan.safetensors"), grads, 1, NULL, 0, 0), 0);
    char err[4096];
    int rc = run(TH_ARGS("--params", th_path("params.safetensors"), "--grads",
                         th_path("nan.safetensors")),
                 th_path("out.safetensors"), err, sizeof err);
    assert_int_equal(rc, 0);
    adadelta_st_file *f;
    assert_int_equal(adadelta_st_read(th_path("out.safetensors"), &f), 0);
    float b[3];
    adadelta_st_copy_f32(adadelta_st_find(f, "dense/bias"), b);
    assert_true(isfinite(b[0]) && isnan(b[1]) && isfinite(b[2]));
    adadelta_st_free(f);
}

/* check_finite also covers the learning rate: a callback returning NaN or
 * an infinity is refused before anything changes. */
static float bad_lr_value;
static float bad_lr(void *ud)
{
    (void)ud;
    return bad_lr_value;
}

static void check_finite_refuses_a_nonfinite_learning_rate(void **state)
{
    (void)state;
    adadelta_config cfg = lr_one();
    cfg.check_finite = 1;
    adadelta_lr_from_callback(&cfg.learning_rate, bad_lr, NULL);
    small_model m;
    make_model(&m, &cfg);
    float gw[4] = {1, 2, 3, 4}, gb[2] = {1, 2};
    const float *g[2] = {gw, gb};
    bad_lr_value = 1.0f;
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    float w[4];
    memcpy(w, m.w, sizeof w);
    float values[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        bad_lr_value = values[i];
        th_assert_refused(adadelta_apply(m.opt, g), ADADELTA_ENONFINITE, "learning rate");
        assert_int_equal(adadelta_iterations(m.opt), 1);
        assert_memory_equal(m.w, w, sizeof w);
    }
    bad_lr_value = 0.5f;
    assert_int_equal(adadelta_apply(m.opt, g), 0);
    adadelta_destroy(m.opt);
}

/* Names that could not be saved and loaded are refused when added:
 * malformed UTF-8 (overlong, surrogates, above U+10FFFF), too long, or so
 * many long names that the saved header would pass the readers' limit. */
static void unsavable_names_are_refused(void **state)
{
    (void)state;
    adadelta_config cfg;
    adadelta_config_default(&cfg);
    adadelta *opt;
    assert_int_equal(adadelta_create(&cfg, &opt), 0);
    float x[1] = {0};
    int64_t one[1] = {1};
    const char *bad[] = {"over\xC0\xAFlong", "over\xE0\x80\xAFlong", "sur\xED\xA0\x80rogate",
                         "big\xF4\x90\x80\x80", "big\xF5\x80\x80\x80", "cut\xE2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        th_assert_refused(adadelta_add_variable(opt, bad[i], ADADELTA_F32, x, 1, one),
                          ADADELTA_EINVAL, "UTF-8");
    assert_true(adadelta_add_variable(opt, "ok/\xE2\x82\xAC/\xF0\x9F\x98\x80", ADADELTA_F32, x,
                                      1, one) == 0);
    char *name = malloc(ADADELTA_VARIABLE_NAME_MAX + 2);
    assert_non_null(name);
    memset(name, 'a', ADADELTA_VARIABLE_NAME_MAX + 1);
    name[ADADELTA_VARIABLE_NAME_MAX + 1] = '\0';
    th_assert_refused(adadelta_add_variable(opt, name, ADADELTA_F32, x, 1, one), ADADELTA_EINVAL,
                      "longer than");
    /* many names of the longest length: refused before the header limit */
    name[ADADELTA_VARIABLE_NAME_MAX] = '\0';
    int added = 1, rc = 0;
    for (int k = 0; k < 10000 && rc >= 0; k++) {
        snprintf(name, 16, "%08d", k);
        name[8] = 'a';
        rc = adadelta_add_variable(opt, name, ADADELTA_F32, x, 1, one);
        added += rc >= 0;
    }
    assert_int_equal(rc, ADADELTA_EINVAL);
    assert_non_null(strstr(adadelta_last_error(), "header"));
    assert_true(added > 1000);
    /* and what was accepted saves and loads */
    assert_int_equal(adadelta_save(opt, th_path("long.safetensors")), 0);
    assert_int_equal(adadelta_load(opt, th_path("long.safetensors")), 0);
    unlink(th_path("long.safetensors"));
    free(name);
    adadelta_destroy(opt);
}

/* An --out that cannot be written is status 3 (a file), naming it. */
static void unwritable_out_is_status_3(void **state)
{
    (void)state;
    char err[4096];
    char out[600];
    snprintf(out, sizeof out, "%s/no-such-folder/out.safetensors", th_tmpdir());
    int rc = run(TH_ARGS("--params", th_path("params.safetensors"), "--grads",
                         th_path("grads.safetensors")),
                 out, err, sizeof err);
    assert_int_equal(rc, 3);
    assert_true(is_one_line(err));
    assert_non_null(strstr(err, out));
}

#define T(f) cmocka_unit_test_setup(f, fresh)

int main(void)
{
    static const struct CMUnitTest before[] = {T(valid_inputs_succeed)};
    static const struct CMUnitTest after[] = {
        T(nan_gradient_propagates),
        T(inf_gradient_with_global_clipnorm_gives_nan_everywhere),
        T(loss_scale_optimizer_skips_nonfinite_step),
        T(check_finite_refuses_before_any_change),
        T(replay_nan_gradient_propagates),
        T(check_finite_refuses_a_nonfinite_learning_rate),
        T(unsavable_names_are_refused),
        T(unwritable_out_is_status_3),
    };
    enum { N_BEFORE = sizeof before / sizeof before[0], N_AFTER = sizeof after / sizeof after[0] };
    static struct CMUnitTest tests[N_BEFORE + N_ROWS + N_AFTER];
    size_t n = 0;
    for (size_t i = 0; i < N_BEFORE; i++)
        tests[n++] = before[i];
    for (size_t i = 0; i < N_ROWS; i++)
        tests[n++] = (struct CMUnitTest){rows[i].name, row_is_refused, fresh, NULL,
                                         (void *)&rows[i]};
    for (size_t i = 0; i < N_AFTER; i++)
        tests[n++] = after[i];
    fprintf(stderr, "%d rows of the bad input catalogue\n", (int)N_ROWS);
    return _cmocka_run_group_tests("test_bad_inputs", tests, n, setup, th_group_teardown);
}
