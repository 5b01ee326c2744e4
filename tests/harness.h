/* harness.h - what the cmocka test programs share.
 *
 * - A temporary folder per test program: made by mkdtemp under /tmp in the
 *   cmocka group setup, removed with everything in it in the group teardown
 *   (nftw, no shell).
 * - Paths in that folder and files written into it: bytes, text, and raw
 *   safetensors files whose header text is given as is (so it can be broken
 *   on purpose).
 * - Running a program (the replay driver, $ADADELTA_REPLAY) with arguments:
 *   its exit status and its stderr, with a time limit so that a hang fails
 *   the test instead of blocking make check.
 * - The check of a refused C-API call: the expected status, and
 *   adadelta_last_error() one non-empty line holding an expected substring.
 *
 * Failures go through cmocka (fail()), so these helpers are for use inside a
 * running test; th_tmpdir_create, th_tmpdir_remove, th_group_setup,
 * th_group_teardown and th_replay_check return 0 or -1 for use in fixtures.
 * Not thread-safe, except th_tmpdir() (read only once the folder exists). */
#ifndef ADADELTA_TESTS_HARNESS_H
#define ADADELTA_TESTS_HARNESS_H

#include <stddef.h>

/* ------------------------------------------------- the temporary folder */

/* Makes /tmp/<prefix>.XXXXXX (prefix NULL: the program's name). 0 or -1,
 * with a message on stderr. */
int th_tmpdir_create(const char *prefix);

/* Removes the folder and all in it; 0 or -1. Does nothing without one. */
int th_tmpdir_remove(void);

/* cmocka group fixtures: th_tmpdir_create(NULL) and th_tmpdir_remove(). */
int th_group_setup(void **state);
int th_group_teardown(void **state);

/* The folder's path ("" before th_tmpdir_create). */
const char *th_tmpdir(void);

/* "<folder>/<name>". The string stays valid for the next 1023 calls of
 * th_path (the other helpers do not use them up). */
const char *th_path(const char *name);

/* Removes everything inside the folder, keeps the folder. */
void th_tmpdir_clear(void);

/* How many entries (hidden ones too, without . and ..) the folder holds. */
int th_tmpdir_count(void);

/* Removes path and, for a folder, all below it (symbolic links are removed,
 * not followed). 0 or -1 with a message on stderr. */
int th_remove_tree(const char *path);

/* -------------------------------------------------------------- files */

/* Write the file `name` in the folder (replacing it). */
void th_write_bytes(const char *name, const void *bytes, size_t n);
void th_write_text(const char *name, const char *text);

/* A safetensors file: the 8-byte little-endian length of `header`, the
 * header text as given (unchecked), then data_len data bytes (the floats
 * 0.25, 0.5, 0.75, ... and zeros after the last whole float). */
void th_write_raw_st(const char *name, const char *header, size_t data_len);

/* The whole file at `path` (any path) in a malloc'd buffer with a NUL
 * after its *n bytes; NULL when it cannot be opened. */
unsigned char *th_read_file(const char *path, size_t *n);

/* tools/read_state.py's output on `path` (its lines, NUL-terminated, in a
 * malloc'd buffer), run by the first of python3, /usr/bin/python3 that has
 * numpy; NULL when none has (the caller skips). Asserts its exit 0. */
char *th_read_state_output(const char *path);

/* ----------------------------------------------------- running programs */

/* Time limit of a run, in seconds. */
#define TH_TIMEOUT 60

/* NULL-terminated argument lists written in place. */
#define TH_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Runs argv[0] (a path, no PATH search) with argv, stdin and stdout on
 * /dev/null. Returns its exit status, or -N when signal N killed it; its
 * stderr goes into err (NUL-terminated, cut to cap - 1 bytes; err may be
 * NULL with cap 0). A run still going after timeout_s seconds is killed
 * (SIGKILL) and the test fails, naming the command. */
int th_run(const char *const *argv, int timeout_s, char *err, size_t cap);

/* The replay driver: $ADADELTA_REPLAY, or ../tools/adadelta-replay. */
const char *th_replay_path(void);

/* For a group setup: 0 when th_replay_path() is an executable, else -1
 * with a message on stderr. */
int th_replay_check(void);

/* th_run of the replay driver with args (NULL-terminated, without the
 * program) and the time limit TH_TIMEOUT. */
int th_replay(const char *const *args, char *err, size_t cap);

/* argv joined by spaces into buf (cut to fit), for messages; returns buf. */
const char *th_command_line(const char *const *argv, char *buf, size_t cap);

/* ------------------------------------------------ refused C-API calls */

/* Checks that `call` (an expression giving an ADADELTA_* status) returned
 * `expected` and that adadelta_last_error() is one non-empty line holding
 * `needle` (NULL: any such line). On failure prints the call, the status
 * and the message, and fails at the caller's line. */
#define th_assert_refused(call, expected, needle) \
    th_assert_refused_at((call), (expected), (needle), #call, __FILE__, __LINE__)
/* The same for the safetensors module, which has its own message. */
#define th_assert_st_refused(call, expected, needle)                                      \
    th_assert_refused_msg_at((call), (expected), (needle), adadelta_st_error(), #call,   \
                             __FILE__, __LINE__)
void th_assert_refused_msg_at(int got, int expected, const char *needle, const char *msg,
                              const char *call, const char *file, int line);

void th_assert_refused_at(int got, int expected, const char *needle, const char *call,
                          const char *file, int line);

#endif
