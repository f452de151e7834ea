/* targets.c: reading batch target files (train/targets.h). */
#include "targets.h"
#include <errno.h>
#include <math.h>
#include <string.h>

ot_status ot_targets_read(const char *path, int batch, int nc, float **rows, int *nt, ot_error *err) {
    *rows = NULL;
    *nt = 0;
    FILE *f = fopen(path, "r");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, n = 0, cap = 0;
    float *r = NULL;
    ot_status st = OT_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        double v[7];
        int k = 0;
        char *s = line, *end;
        while (k < 7) {
            while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\r' || *s == '\n') s++;
            if (!*s) break;
            errno = 0;
            v[k] = strtod(s, &end);
            if (end == s) { st = ot_fail(err, OT_ERR_INVALID, "%s:%d: '%.20s' is not a number", path, lineno, s); goto done; }
            s = end;
            k++;
        }
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
        if (k == 0) continue;
        if (k != 6 || *s) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%d: expected 6 columns (image_index class cx cy w h), found %d", path, lineno, *s ? 7 : k);
            goto done;
        }
        for (int i = 0; i < 6; i++)
            if (!isfinite(v[i])) { st = ot_fail(err, OT_ERR_INVALID, "%s:%d: column %d is not a finite number", path, lineno, i + 1); goto done; }
        if (v[0] != floor(v[0]) || v[0] < 0 || v[0] >= batch) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%d: image index %g is outside the batch of %d", path, lineno, v[0], batch);
            goto done;
        }
        if (v[1] != floor(v[1]) || v[1] < 0 || v[1] >= nc) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%d: class %g is outside 0..%d (the model has %d classes)", path, lineno, v[1], nc - 1, nc);
            goto done;
        }
        if (!(v[4] > 0) || !(v[5] > 0)) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%d: box size %g x %g must be positive", path, lineno, v[4], v[5]);
            goto done;
        }
        if (v[2] < 0 || v[2] > 1 || v[3] < 0 || v[3] > 1 || v[4] > 1 || v[5] > 1) {
            st = ot_fail(err, OT_ERR_INVALID, "%s:%d: box (%g %g %g %g) is not normalised to 0..1", path, lineno, v[2], v[3], v[4], v[5]);
            goto done;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            float *nr = realloc(r, sizeof(float) * 6 * (size_t)cap);
            if (!nr) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
            r = nr;
        }
        for (int i = 0; i < 6; i++) r[6 * n + i] = (float)v[i];
        n++;
    }
done:
    fclose(f);
    if (st) { free(r); return st; }
    *rows = r;
    *nt = n;
    return OT_OK;
}
