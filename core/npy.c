/* npy.c: NumPy .npy reading and writing
 * (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html). */
#include "npy.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>

static const char *find_key(const char *hdr, const char *key) {
    const char *p = strstr(hdr, key);
    if (!p) return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == ':') p++;
    return p;
}

ot_status ot_npy_read(const char *path, ot_tensor *out, ot_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char pre[10];
    ot_status st = OT_OK;
    char *hdr = NULL;
    void *raw = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    else {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) { st = ot_fail(err, OT_ERR_PARSE, "%s: truncated header", path); goto done; }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    }
    if (hlen > 65536) { st = ot_fail(err, OT_ERR_PARSE, "%s: header too long", path); goto done; }
    hdr = calloc(1, hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) { st = ot_fail(err, OT_ERR_PARSE, "%s: truncated header", path); goto done; }
    const char *descr = find_key(hdr, "'descr'"), *fo = find_key(hdr, "'fortran_order'"), *sh = find_key(hdr, "'shape'");
    if (!descr || !fo || !sh || *sh != '(') { st = ot_fail(err, OT_ERR_PARSE, "%s: malformed header", path); goto done; }
    if (strncmp(fo, "False", 5) != 0) { st = ot_fail(err, OT_ERR_UNSUPPORTED, "%s: Fortran-order arrays are not supported", path); goto done; }
    size_t esz;
    int kind; /* 0 f4, 1 f8, 2 i8 */
    if (strncmp(descr, "'<f4'", 5) == 0) { esz = 4; kind = 0; }
    else if (strncmp(descr, "'<f8'", 5) == 0) { esz = 8; kind = 1; }
    else if (strncmp(descr, "'<i8'", 5) == 0) { esz = 8; kind = 2; }
    else { st = ot_fail(err, OT_ERR_UNSUPPORTED, "%s: dtype %.8s is not supported (expected '<f4')", path, descr); goto done; }
    ot_shape s = {0, {0}};
    const char *q = sh + 1;
    while (*q && *q != ')') {
        while (*q == ' ' || *q == ',') q++;
        if (*q == ')') break;
        char *end;
        errno = 0;
        long long d = strtoll(q, &end, 10);
        if (end == q || errno || d < 0 || s.rank >= OT_MAX_RANK) { st = ot_fail(err, OT_ERR_PARSE, "%s: bad shape in header", path); goto done; }
        s.d[s.rank++] = d;
        q = end;
    }
    int64_t n;
    if (!ot_shape_numel(&s, &n)) { st = ot_fail(err, OT_ERR_PARSE, "%s: shape too large", path); goto done; }
    raw = malloc((size_t)n * esz + 1);
    float *data = malloc((size_t)n * 4 + 1);
    if (!raw || !data) { free(data); st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if (fread(raw, esz, (size_t)n, f) != (size_t)n) {
        free(data);
        st = ot_fail(err, OT_ERR_PARSE, "%s: truncated data (expected %lld values)", path, (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (kind == 0) memcpy(&data[i], (char *)raw + 4 * i, 4);
        else if (kind == 1) { double x; memcpy(&x, (char *)raw + 8 * i, 8); data[i] = (float)x; }
        else { int64_t x; memcpy(&x, (char *)raw + 8 * i, 8); data[i] = (float)x; }
    }
    out->dtype = OT_F32;
    out->shape = s;
    out->data = data;
done:
    free(hdr);
    free(raw);
    fclose(f);
    return st;
}

ot_status ot_npy_write(const char *path, const ot_tensor *t, ot_error *err) {
    const char *descr = t->dtype == OT_F32 ? "<f4" : t->dtype == OT_I64 ? "<i8" : NULL;
    if (!descr) return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: cannot write dtype %s", path, ot_dtype_name(t->dtype));
    char hdr[512];
    int k = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->shape.rank; i++)
        k += snprintf(hdr + k, sizeof hdr - (size_t)k, "%lld%s", (long long)t->shape.d[i], t->shape.rank == 1 ? "," : i + 1 < t->shape.rank ? ", " : "");
    k += snprintf(hdr + k, sizeof hdr - (size_t)k, "), }");
    int total = 10 + k + 1;
    int pad = (64 - total % 64) % 64;
    for (int i = 0; i < pad; i++) hdr[k++] = ' ';
    hdr[k++] = '\n';
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(k & 0xff), (unsigned char)(k >> 8)};
    int64_t n = ot_numel(&t->shape);
    size_t esz = ot_dtype_size(t->dtype);
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)k, f) == (size_t)k &&
              fwrite(t->data, esz, (size_t)n, f) == (size_t)n;
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ot_fail(err, OT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return OT_OK;
}
