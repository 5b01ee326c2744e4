/* harness.c - the shared test helpers of harness.h. */
#define _GNU_SOURCE /* nftw, mkdtemp, program_invocation_short_name */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adadelta.h"
#include "harness.h"
#include "safetensors.h"

/* ------------------------------------------------- the temporary folder */

static char tmpdir[256];

/* The program's name without libtool's "lt-" (its wrapper runs
 * .libs/lt-test_x), for the folder's name. */
static const char *program_name(void)
{
#ifdef __GLIBC__
    const char *name = program_invocation_short_name;
    if (strncmp(name, "lt-", 3) == 0)
        name += 3;
    if (*name && !strchr(name, '/'))
        return name;
#endif
    return "adadelta-test";
}

int th_tmpdir_create(const char *prefix)
{
    if (!prefix || !*prefix)
        prefix = program_name();
    int n = snprintf(tmpdir, sizeof tmpdir, "/tmp/%s.XXXXXX", prefix);
    if (n < 0 || (size_t)n >= sizeof tmpdir || strchr(prefix, '/')) {
        fprintf(stderr, "harness: bad folder prefix '%s'\n", prefix);
        tmpdir[0] = '\0';
        return -1;
    }
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        tmpdir[0] = '\0';
        return -1;
    }
    return 0;
}

/* nftw passes no user data: whether the walk keeps its top folder. */
static int keep_top;

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    if (keep_top && ftw->level == 0)
        return 0;
    if (remove(path) != 0) {
        fprintf(stderr, "harness: cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int walk_remove(const char *path, int keep)
{
    keep_top = keep;
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rc == -1 && errno)
        fprintf(stderr, "harness: cannot walk %s: %s\n", path, strerror(errno));
    return rc == 0 ? 0 : -1;
}

int th_remove_tree(const char *path)
{
    return walk_remove(path, 0);
}

int th_tmpdir_remove(void)
{
    if (!tmpdir[0])
        return 0;
    int rc = walk_remove(tmpdir, 0);
    if (rc == 0)
        tmpdir[0] = '\0';
    return rc;
}

int th_group_setup(void **state)
{
    (void)state;
    return th_tmpdir_create(NULL);
}

int th_group_teardown(void **state)
{
    (void)state;
    return th_tmpdir_remove();
}

const char *th_tmpdir(void)
{
    return tmpdir;
}

enum { PATH_MAX_LEN = 320 };

/* "<folder>/<name>" into p (PATH_MAX_LEN bytes). */
static char *path_into(char *p, const char *name)
{
    assert_true(tmpdir[0] != '\0');
    int n = snprintf(p, PATH_MAX_LEN, "%s/%s", tmpdir, name);
    if (n < 0 || n >= PATH_MAX_LEN) {
        fprintf(stderr, "harness: path too long: %s/%s\n", tmpdir, name);
        fail();
    }
    return p;
}

const char *th_path(const char *name)
{
    static char pool[1024][PATH_MAX_LEN];
    static unsigned next;
    return path_into(pool[next++ % 1024], name);
}

void th_tmpdir_clear(void)
{
    assert_true(tmpdir[0] != '\0');
    assert_int_equal(walk_remove(tmpdir, 1), 0);
}

int th_tmpdir_count(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) {
        fprintf(stderr, "harness: cannot open %s: %s\n", tmpdir, strerror(errno));
        fail();
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* -------------------------------------------------------------- files */

void th_write_bytes(const char *name, const void *bytes, size_t n)
{
    char path[PATH_MAX_LEN];
    path_into(path, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "harness: cannot create %s: %s\n", path, strerror(errno));
        fail();
    }
    assert_int_equal(n ? fwrite(bytes, 1, n, fp) : 0, n);
    assert_int_equal(fclose(fp), 0);
}

void th_write_text(const char *name, const char *text)
{
    th_write_bytes(name, text, strlen(text));
}

void th_write_raw_st(const char *name, const char *header, size_t data_len)
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
    th_write_bytes(name, b, 8 + h + data_len);
    free(b);
}

char *th_read_state_output(const char *path)
{
    FILE *pp = popen("for p in python3 /usr/bin/python3; do "
                     "$p -c 'import numpy' 2>/dev/null && echo $p && exit 0; done; exit 1",
                     "r");
    char py[256] = "";
    int found = pp && fgets(py, sizeof py, pp) != NULL;
    if (pp)
        pclose(pp);
    if (!found)
        return NULL;
    py[strcspn(py, "\n")] = '\0';
    const char *src = getenv("ADADELTA_SRCDIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/tools/read_state.py' '%s'", py, src ? src : "..", path);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len = fread(text, 1, cap - 1, out);
    text[len] = '\0';
    assert_int_equal(pclose(out), 0);
    return text;
}

unsigned char *th_read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap + 1);
    assert_non_null(b);
    for (;;) {
        len += fread(b + len, 1, cap - len, fp);
        if (len < cap)
            break;
        cap *= 2;
        b = realloc(b, cap + 1);
        assert_non_null(b);
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        fprintf(stderr, "harness: cannot read %s\n", path);
        free(b);
        fail();
    }
    b[len] = '\0';
    *n = len;
    return b;
}

/* ----------------------------------------------------- running programs */

const char *th_command_line(const char *const *argv, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; argv[i] && len + 1 < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s", i ? " " : "", argv[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return buf;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The child: stdin and stdout on /dev/null, stderr into the pipe. */
static void exec_child(const char *const *argv, int pipe_read, int pipe_write)
{
    int nul = open("/dev/null", O_RDWR);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(pipe_write, 2) < 0)
        _exit(127);
    close(nul);
    close(pipe_read);
    close(pipe_write);
    execv(argv[0], (char *const *)argv);
    dprintf(2, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int th_run(const char *const *argv, int timeout_s, char *err, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exec_child(argv, fds[0], fds[1]);
    close(fds[1]);

    /* Read stderr to its end, then wait for the exit, both until the
     * deadline. */
    double deadline = now() + timeout_s;
    size_t len = 0;
    int reading = 1, status = 0, exited = 0;
    while (!exited) {
        double left = deadline - now();
        if (left <= 0)
            break;
        if (reading) {
            struct pollfd p = {fds[0], POLLIN, 0};
            int r = poll(&p, 1, (int)(left * 1000) + 1);
            if (r <= 0)
                continue; /* EINTR, or the deadline */
            char buf[4096];
            ssize_t k = read(fds[0], buf, sizeof buf);
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (k <= 0) {
                reading = 0;
                continue;
            }
            size_t keep = cap > len + 1 ? cap - len - 1 : 0;
            if ((size_t)k < keep)
                keep = (size_t)k;
            memcpy(err + len, buf, keep);
            len += keep;
        } else {
            pid_t w = waitpid(pid, &status, WNOHANG);
            assert_true(w >= 0);
            if (w == pid) {
                exited = 1;
            } else {
                struct timespec ts = {0, 2 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
    }
    close(fds[0]);
    if (cap)
        err[len] = '\0';
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        char cmd[2048];
        fprintf(stderr, "harness: killed after %d s (a hang): %s\nits stderr so far: %s\n",
                timeout_s, th_command_line(argv, cmd, sizeof cmd), cap ? err : "(not kept)");
        fail();
    }
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return WEXITSTATUS(status);
}

const char *th_replay_path(void)
{
    const char *r = getenv("ADADELTA_REPLAY");
    return r && *r ? r : "../tools/adadelta-replay";
}

int th_replay_check(void)
{
    const char *r = th_replay_path();
    if (access(r, X_OK) != 0) {
        fprintf(stderr, "the replay driver %s (ADADELTA_REPLAY) is not an executable\n", r);
        return -1;
    }
    return 0;
}

int th_replay(const char *const *args, char *err, size_t cap)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = th_replay_path();
    for (int i = 0; args[i]; i++) {
        assert_true(n < 63);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return th_run(argv, TH_TIMEOUT, err, cap);
}

/* ------------------------------------------------ refused C-API calls */

void th_assert_refused_at(int got, int expected, const char *needle, const char *call,
                          const char *file, int line)
{
    th_assert_refused_msg_at(got, expected, needle, adadelta_last_error(), call, file, line);
}

void th_assert_refused_msg_at(int got, int expected, const char *needle, const char *msg,
                              const char *call, const char *file, int line)
{
    const char *why = NULL;
    if (got != expected)
        why = "another status";
    else if (!msg || !*msg)
        why = "no message";
    else if (strchr(msg, '\n'))
        why = "a message of more than one line";
    else if (needle && !strstr(msg, needle))
        why = "a message without the expected words";
    if (!why)
        return;
    fprintf(stderr,
            "%s:%d: %s: %s: status %d %s (expected %d %s), message '%s' (expected one line "
            "with '%s')\n",
            file, line, call, why, got, adadelta_status_name(got), expected,
            adadelta_status_name(expected), msg ? msg : "(null)", needle ? needle : "");
    _fail(file, line);
}
