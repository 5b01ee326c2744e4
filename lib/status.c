/* status.c - status names and texts (from ADADELTA_STATUS_MAP), the
 * per-thread last error shared by both libraries, and the version. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *adadelta_status_name(int status)
{
    switch (status) {
#define NAME_CASE(name, value, text)                                          \
    case value:                                                               \
        return "ADADELTA_" #name;
        ADADELTA_STATUS_MAP(NAME_CASE)
#undef NAME_CASE
    }
    return "ADADELTA_UNKNOWN";
}

const char *adadelta_strerror(int status)
{
    switch (status) {
#define TEXT_CASE(name, value, text)                                          \
    case value:                                                               \
        return text;
        ADADELTA_STATUS_MAP(TEXT_CASE)
#undef TEXT_CASE
    }
    return "unknown status";
}

const char *adadelta_last_error(void) { return last_error; }

void adadelta__clear_error(void) { last_error[0] = '\0'; }

int adadelta__vfail(int status, const char *fmt, va_list ap)
{
    /* The arguments may point into last_error itself (a message wrapped in
     * a longer one): format into a copy first. */
    char msg[sizeof last_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(last_error, msg, sizeof msg);
    return status;
}

int adadelta__fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    adadelta__vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

unsigned adadelta_version(void) { return ADADELTA_VERSION_HEX; }

const char *adadelta_version_string(void)
{
#define STR2(x) #x
#define STR(x) STR2(x)
    return STR(ADADELTA_VERSION_MAJOR) "." STR(ADADELTA_VERSION_MINOR) "." STR(
        ADADELTA_VERSION_PATCH);
}
