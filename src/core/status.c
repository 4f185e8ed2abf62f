/* status.c — the thread-local error message behind kiln_last_error(), and status names. */
#include "core.h"

#include <stdarg.h>
#include <string.h>

#define KILN_ERROR_CAP 1024
static _Thread_local char error_buf[KILN_ERROR_CAP];

const char *kiln_last_error(void) { return error_buf; }

void kiln_clear_error(void) { error_buf[0] = 0; }

kiln_status kiln_error(kiln_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_buf, sizeof error_buf, fmt, ap);
    va_end(ap);
    return s;
}

kiln_status kiln_error_prefix(kiln_status s, const char *fmt, ...) {
    char prefix[KILN_ERROR_CAP], old[KILN_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_buf, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof error_buf - 3) n = sizeof error_buf - 3;
    memcpy(error_buf, prefix, n);
    memcpy(error_buf + n, ": ", 2);
    size_t room = sizeof error_buf - n - 3, m = strnlen(old, room);
    memcpy(error_buf + n + 2, old, m);
    error_buf[n + 2 + m] = 0;
    return s;
}

const char *kiln_status_name(kiln_status s) {
    switch (s) {
    case KILN_STATUS_OK: return "ok";
    case KILN_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case KILN_STATUS_INVALID_MODEL: return "invalid model";
    case KILN_STATUS_UNSUPPORTED: return "unsupported";
    case KILN_STATUS_IO_ERROR: return "i/o error";
    case KILN_STATUS_OUT_OF_MEMORY: return "out of memory";
    case KILN_STATUS_RUNTIME_ERROR: return "runtime error";
    case KILN_STATUS_INTERNAL: return "internal error";
    }
    return "unknown status";
}

void *kiln_malloc(size_t n) { return malloc(n ? n : 1); }
void *kiln_calloc(size_t n, size_t s) { return calloc(n ? n : 1, s ? s : 1); }
char *kiln_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
