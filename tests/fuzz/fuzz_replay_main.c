/* fuzz_replay_main.c - a main() for the libFuzzer harnesses built with the
 * ordinary compiler: calls LLVMFuzzerTestOneInput once per file named on the
 * command line (directories are walked one level), so make check replays the
 * seed corpus (and any crash reproducers) in a few seconds. Without
 * arguments it replays DEFAULT_CORPUS, set by the Makefile. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
            }
            buf = bigger;
        }
    }
    fclose(fp);
    if (!buf)
        return 1;
    LLVMFuzzerTestOneInput(buf, n);
    /* Every prefix too: truncation anywhere must be refused cleanly. */
    for (size_t cut = 0; cut < n && cut < 512; cut++)
        LLVMFuzzerTestOneInput(buf, cut);
    free(buf);
    return 0;
}

#ifndef DEFAULT_CORPUS
#define DEFAULT_CORPUS "."
#endif

int main(int argc, char **argv)
{
    int files = 0, bad = 0;
    /* Without arguments: the seed corpus this harness was built for. */
    char *fallback[] = {argv[0], (char *)DEFAULT_CORPUS, NULL};
    if (argc < 2) {
        argc = 2;
        argv = fallback;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "%s: no such file or directory\n", argv[i]);
            bad++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                bad += run_file(path);
                files++;
            }
        }
        if (d)
            closedir(d);
    }
    printf("%d corpus file(s) replayed, %d unreadable\n", files, bad);
    return bad || files == 0;
}
