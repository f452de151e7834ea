/* status.c: error filling, warnings, checked allocation. */
#include "status.h"
#include <stdarg.h>
#include <string.h>

static bool g_quiet;

const char *ot_status_name(ot_status s) {
    switch (s) {
    case OT_OK: return "ok";
    case OT_ERR_IO: return "i/o error";
    case OT_ERR_PARSE: return "parse error";
    case OT_ERR_UNSUPPORTED: return "unsupported";
    case OT_ERR_INVALID: return "invalid";
    case OT_ERR_SHAPE: return "shape error";
    case OT_ERR_NOMEM: return "out of memory";
    case OT_ERR_INTERNAL: return "internal error";
    }
    return "unknown";
}

ot_status ot_fail(ot_error *err, ot_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

ot_status ot_fail_prefix(ot_error *err, const char *fmt, ...) {
    if (!err) return OT_ERR_INTERNAL;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    if ((size_t)k < sizeof err->msg) {
        size_t room = sizeof err->msg - (size_t)k;
        size_t len = strnlen(old, sizeof old - 1);
        if (len >= room) len = room - 1;
        memcpy(err->msg + k, old, len);
        err->msg[(size_t)k + len] = 0;
    }
    return err->code;
}

void ot_error_clear(ot_error *err) {
    if (err) { err->code = OT_OK; err->msg[0] = 0; }
}

void ot_set_quiet(bool quiet) { g_quiet = quiet; }

void ot_warn(const char *fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("onnx-train: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void *ot_calloc(size_t n, size_t size) {
    if (n == 0 || size == 0) return calloc(1, 1);
    if (n > SIZE_MAX / size) return NULL;
    return calloc(n, size);
}

char *ot_strdup(const char *s) { return s ? ot_strndup(s, strlen(s)) : NULL; }

char *ot_strndup(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, s, n);
    r[n] = 0;
    return r;
}
