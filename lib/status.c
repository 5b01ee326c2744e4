/* status.c - status codes, their names, and the per-thread last error. */
#include "internal.h"

#include <stdio.h>

static _Thread_local char last_error[512];

static const struct {
    int code;
    const char *name;
    const char *text;
} status_table[] = {
    {ADADELTA_OK, "ADADELTA_OK", "success"},
    {ADADELTA_EINVAL, "ADADELTA_EINVAL", "invalid argument"},
    {ADADELTA_ENOMEM, "ADADELTA_ENOMEM", "out of memory"},
    {ADADELTA_EIO, "ADADELTA_EIO", "input/output error"},
    {ADADELTA_EFORMAT, "ADADELTA_EFORMAT", "malformed file"},
    {ADADELTA_EMISMATCH, "ADADELTA_EMISMATCH", "inputs disagree"},
    {ADADELTA_ENOGRAD, "ADADELTA_ENOGRAD", "no gradients provided for any variable"},
    {ADADELTA_ESTATE, "ADADELTA_ESTATE", "call not allowed in this state"},
    {ADADELTA_ENONFINITE, "ADADELTA_ENONFINITE", "non-finite gradient"},
    {ADADELTA_ENOTFOUND, "ADADELTA_ENOTFOUND", "not found"},
};

#define N_STATUS (sizeof status_table / sizeof status_table[0])

const char *adadelta_status_name(int status)
{
    for (size_t i = 0; i < N_STATUS; i++)
        if (status_table[i].code == status)
            return status_table[i].name;
    return "ADADELTA_UNKNOWN";
}

const char *adadelta_strerror(int status)
{
    for (size_t i = 0; i < N_STATUS; i++)
        if (status_table[i].code == status)
            return status_table[i].text;
    return "unknown status";
}

const char *adadelta_last_error(void) { return last_error; }

void adadelta__clear_error(void) { last_error[0] = '\0'; }

int adadelta__fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
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
