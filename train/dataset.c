/* dataset.c: dataset YAML (libyaml), image listing and the images -> labels
 * rule, label parsing and the verification scan (Ultralytics
 * verify_image_label), run on a small pthread pool. See dataset.h. */
#include "train/dataset.h"
#include "train/image_io.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

/* ---- paths ---- */

static bool is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static bool is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }

/* base/rel (rel as is when absolute), with '.' and '..' folded lexically. */
static char *path_join(const char *base, const char *rel) {
    size_t n = strlen(base) + strlen(rel) + 2;
    char *s = malloc(n), *out = malloc(n + 1);
    if (!s || !out) { free(s); free(out); return NULL; }
    if (rel[0] == '/' || !base[0]) snprintf(s, n, "%s", rel);
    else snprintf(s, n, "%s/%s", base, rel);
    bool abs_ = s[0] == '/';
    size_t k = 0;
    out[0] = 0;
    for (char *tok = s, *next; tok; tok = next) {
        next = strchr(tok, '/');
        if (next) *next++ = 0;
        if (!*tok || strcmp(tok, ".") == 0) continue;
        if (strcmp(tok, "..") == 0) {
            char *sl = k ? strrchr(out, '/') : NULL;
            bool last_is_dotdot = k >= 2 && strcmp(sl ? sl + 1 : out, "..") == 0;
            if (k && !last_is_dotdot) {
                k = sl ? (size_t)(sl - out) : 0;
                out[k] = 0;
                continue;
            }
            if (abs_) continue; /* /.. is / */
        }
        k += (size_t)sprintf(out + k, "%s%s", (k || abs_) ? "/" : "", tok);
    }
    if (!k) strcpy(out, abs_ ? "/" : ".");
    free(s);
    return out;
}

static char *dir_of(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl) return ot_strdup(".");
    if (sl == path) return ot_strdup("/");
    return ot_strndup(path, (size_t)(sl - path));
}

char *ot_img2label_path(const char *img) {
    const char *sa = "/images/";
    const char *hit = NULL;
    for (const char *p = strstr(img, sa); p; p = strstr(p + 1, sa)) hit = p;
    size_t n = strlen(img);
    char *s = malloc(n + 8);
    if (!s) return NULL;
    if (hit) {
        size_t a = (size_t)(hit - img);
        memcpy(s, img, a);
        memcpy(s + a, "/labels/", 8);
        strcpy(s + a + 8, hit + 8);
    } else {
        strcpy(s, img);
    }
    char *dot = strrchr(s, '.');
    if (dot) *dot = 0;
    strcat(s, ".txt");
    return s;
}

static const char *const img_formats[] = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm"};

bool ot_is_image_path(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof img_formats / sizeof img_formats[0]; i++)
        if (strcasecmp(dot + 1, img_formats[i]) == 0) return true;
    return false;
}

/* ---- listing ---- */

typedef struct strvec { char **v; int64_t n, cap; } strvec;

static bool sv_push(strvec *s, char *x) {
    if (!x) return false;
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) { free(x); return false; }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return true;
}

static void sv_free(strvec *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static ot_status walk(const char *dir, strvec *out, int depth, ot_error *err) {
    if (depth > 32) return OT_OK;
    DIR *d = opendir(dir);
    if (!d) return ot_fail(err, OT_ERR_IO, "%s: cannot list folder: %s", dir, strerror(errno));
    struct dirent *e;
    ot_status st = OT_OK;
    while (st == OT_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* hidden, '.' and '..' (glob skips them too) */
        char *p = path_join(dir, e->d_name);
        if (!p) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
        if (is_dir(p)) { st = walk(p, out, depth + 1, err); free(p); }
        else if (strchr(e->d_name, '.') && !sv_push(out, p)) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        else if (!strchr(e->d_name, '.')) free(p);
    }
    closedir(d);
    return st;
}

static ot_status list_txt(const char *txt, strvec *out, ot_error *err) {
    uint8_t *buf;
    size_t len;
    OT_TRY(ot_file_read(txt, &buf, &len, err));
    char *parent = dir_of(txt);
    ot_status st = OT_OK;
    size_t i = 0;
    while (i < len && st == OT_OK) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t a = i, b = j;
        while (a < b && isspace(buf[a])) a++;
        while (b > a && isspace(buf[b - 1])) b--;
        if (b > a) {
            char *line = ot_strndup((const char *)buf + a, b - a);
            /* './x' and other relative lines are relative to the list's folder */
            char *p = line ? path_join(parent, line[0] == '.' && line[1] == '/' ? line + 2 : line) : NULL;
            free(line);
            if (!sv_push(out, p)) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        }
        i = j + 1;
    }
    free(parent);
    free(buf);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

ot_status ot_list_images(char *const *sources, int n_sources, char ***files, int64_t *n, ot_error *err) {
    strvec all = {0}, img = {0};
    ot_status st = OT_OK;
    for (int i = 0; i < n_sources && st == OT_OK; i++) {
        const char *p = sources[i];
        if (is_dir(p)) st = walk(p, &all, 0, err);
        else if (is_file(p)) st = ot_is_image_path(p) ? (sv_push(&all, ot_strdup(p)) ? OT_OK : ot_fail(err, OT_ERR_NOMEM, "out of memory"))
                                                       : list_txt(p, &all, err);
        else st = ot_fail(err, OT_ERR_IO, "dataset not found: %s does not exist", p);
    }
    for (int64_t i = 0; i < all.n && st == OT_OK; i++) {
        if (ot_is_image_path(all.v[i])) { sv_push(&img, all.v[i]); all.v[i] = NULL; }
    }
    sv_free(&all);
    if (st != OT_OK) { sv_free(&img); return st; }
    if (img.n == 0) {
        char where[600] = "";
        for (int i = 0, k = 0; i < n_sources && k < (int)sizeof where - 4; i++)
            k += snprintf(where + k, sizeof where - (size_t)k, "%s%s", i ? ", " : "", sources[i]);
        sv_free(&img);
        return ot_fail(err, OT_ERR_INVALID, "no images found in %s (image files end in .jpg, .jpeg, .png, ...)", where);
    }
    qsort(img.v, (size_t)img.n, sizeof *img.v, cmp_str);
    *files = img.v;
    *n = img.n;
    return OT_OK;
}

/* ---- YAML ---- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *scalar(yaml_node_t *n) {
    if (!n || n->type != YAML_SCALAR_NODE) return NULL;
    const char *s = (const char *)n->data.scalar.value;
    /* YAML null: empty, ~ or null */
    if (!*s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) return NULL;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (strcmp(s, "~") == 0 || strcmp(s, "null") == 0)) return NULL;
    return s;
}

void ot_data_cfg_free(ot_data_cfg *c) {
    if (!c) return;
    free(c->yaml);
    free(c->root);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < c->n_split[s]; i++) free(c->split[s][i]);
        free(c->split[s]);
    }
    for (int i = 0; c->names && i < c->nc; i++) free(c->names[i]);
    free(c->names);
    memset(c, 0, sizeof *c);
}

bool ot_data_is_coco(const ot_data_cfg *cfg) {
    if (cfg->n_split[OT_SPLIT_VAL] != 1) return false;
    const char *v = cfg->split[OT_SPLIT_VAL][0];
    size_t n = strlen(v), k = strlen("coco/val2017.txt");
    return n >= k && strcmp(v + n - k, "coco/val2017.txt") == 0;
}

int ot_split_index(const char *name) {
    static const char *const n[] = {"train", "val", "test"};
    for (int i = 0; i < 3; i++) if (strcmp(name, n[i]) == 0) return i;
    return -1;
}

/* Resolve one split entry as check_dataset does: root/x; a missing '../x' falls back to root/x. */
static char *resolve_split(const char *root, const char *x) {
    char *p = path_join(root, x);
    if (p && !is_dir(p) && !is_file(p) && strncmp(x, "../", 3) == 0) {
        char *q = path_join(root, x + 3);
        if (q && (is_dir(q) || is_file(q))) { free(p); return q; }
        free(q);
    }
    return p;
}

static ot_status parse_names(const char *path, yaml_document_t *doc, yaml_node_t *nm, ot_data_cfg *c, ot_error *err) {
    if (nm->type == YAML_SEQUENCE_NODE) {
        int n = (int)(nm->data.sequence.items.top - nm->data.sequence.items.start);
        c->names = calloc((size_t)(n ? n : 1), sizeof *c->names);
        if (!c->names) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        c->nc = n;
        for (int i = 0; i < n; i++) {
            const char *s = scalar(yaml_document_get_node(doc, nm->data.sequence.items.start[i]));
            c->names[i] = ot_strdup(s ? s : "");
        }
        return OT_OK;
    }
    if (nm->type != YAML_MAPPING_NODE)
        return ot_fail(err, OT_ERR_PARSE, "%s:%zu: names must be a list or a mapping {0: name, ...}", path, nm->start_mark.line + 1);
    int n = (int)(nm->data.mapping.pairs.top - nm->data.mapping.pairs.start);
    c->names = calloc((size_t)(n ? n : 1), sizeof *c->names);
    if (!c->names) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    c->nc = n;
    for (yaml_node_pair_t *p = nm->data.mapping.pairs.start; p < nm->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        const char *ks = scalar(k), *vs = scalar(yaml_document_get_node(doc, p->value));
        char *end = NULL;
        long id = ks ? strtol(ks, &end, 10) : -1;
        if (!ks || *end || id < 0 || id >= n)
            return ot_fail(err, OT_ERR_PARSE, "%s:%zu: names keys must be the class ids 0..%d", path, k->start_mark.line + 1, n - 1);
        if (c->names[id]) return ot_fail(err, OT_ERR_PARSE, "%s:%zu: class id %ld named twice", path, k->start_mark.line + 1, id);
        c->names[id] = ot_strdup(vs ? vs : "");
    }
    return OT_OK;
}

ot_status ot_data_cfg_load(const char *path, ot_data_cfg *c, ot_error *err) {
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open dataset YAML: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    if (!yaml_parser_load(&p, &doc)) {
        ot_status st = ot_fail(err, OT_ERR_PARSE, "%s:%zu: invalid YAML: %s", path, p.problem_mark.line + 1,
                               p.problem ? p.problem : "parse error");
        yaml_parser_delete(&p);
        fclose(f);
        return st;
    }
    ot_status st = OT_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    c->yaml = ot_strdup(path);
    if (!root || root->type != YAML_MAPPING_NODE) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: a dataset YAML is a mapping with train, val and names", path);
        goto done;
    }
    c->has_download = map_get(&doc, root, "download") != NULL;
    /* root: `path`, relative to the YAML's folder; default that folder */
    char *ydir = dir_of(path);
    const char *rp = scalar(map_get(&doc, root, "path"));
    c->root = path_join(ydir, rp ? rp : ".");
    free(ydir);
    static const char *const keys[3] = {"train", "val", "test"};
    for (int s = 0; s < 3 && st == OT_OK; s++) {
        yaml_node_t *v = map_get(&doc, root, keys[s]);
        if (!v || (v->type == YAML_SCALAR_NODE && !scalar(v))) {
            if (s < 2) st = ot_fail(err, OT_ERR_INVALID, "%s: no '%s' key (train and val are required)", path, keys[s]);
            continue;
        }
        int n = v->type == YAML_SEQUENCE_NODE ? (int)(v->data.sequence.items.top - v->data.sequence.items.start) : 1;
        c->split[s] = calloc((size_t)n + 1, sizeof(char *));
        if (!c->split[s]) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
        for (int i = 0; i < n && st == OT_OK; i++) {
            yaml_node_t *it = v->type == YAML_SEQUENCE_NODE ? yaml_document_get_node(&doc, v->data.sequence.items.start[i]) : v;
            const char *x = scalar(it);
            if (!x) { st = ot_fail(err, OT_ERR_PARSE, "%s:%zu: '%s' must be a path or a list of paths", path, it->start_mark.line + 1, keys[s]); break; }
            char *r = resolve_split(c->root, x);
            if (!r) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); break; }
            c->split[s][c->n_split[s]++] = r;
            if (!is_dir(r) && !is_file(r))
                st = ot_fail(err, OT_ERR_IO,
                             "%s: dataset not found: %s '%s' was looked for at %s (path: %s)%s", path, keys[s], x, r,
                             c->root,
                             c->has_download ? "; the download: key is never run, fetch the data yourself" : "");
        }
    }
    if (st != OT_OK) goto done;
    yaml_node_t *nm = map_get(&doc, root, "names");
    const char *ncs = scalar(map_get(&doc, root, "nc"));
    long nc = -1;
    if (ncs) {
        char *end;
        nc = strtol(ncs, &end, 10);
        if (*end || nc < 1 || nc > 100000) { st = ot_fail(err, OT_ERR_PARSE, "%s: nc must be a positive integer", path); goto done; }
    }
    if (nm) {
        if ((st = parse_names(path, &doc, nm, c, err)) != OT_OK) goto done;
        if (nc >= 0 && nc != c->nc) { st = ot_fail(err, OT_ERR_INVALID, "%s: nc is %ld but names has %d entries", path, nc, c->nc); goto done; }
    } else if (nc > 0) {
        c->nc = (int)nc;
        c->names = calloc((size_t)nc, sizeof *c->names);
        if (!c->names) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto done; }
        for (int i = 0; i < c->nc; i++) {
            char b[32];
            snprintf(b, sizeof b, "class%d", i);
            c->names[i] = ot_strdup(b);
        }
    } else {
        st = ot_fail(err, OT_ERR_INVALID, "%s: no 'names' (or 'nc') key", path);
        goto done;
    }
    if (c->nc < 1) st = ot_fail(err, OT_ERR_INVALID, "%s: names is empty", path);
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
    if (st != OT_OK) ot_data_cfg_free(c);
    return st;
}

/* ---- labels ---- */

static bool bad(ot_label_result *r, int line, const char *fmt, ...) OT_PRINTF(3, 4);
static bool bad(ot_label_result *r, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    r->bad_line = line;
    return false;
}

/* One line -> (class, cx, cy, w, h); false with r->why on a bad line. */
static bool parse_line(char *s, int line, int nc, float row[5], ot_label_result *r) {
    float v[4096];
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, " \t\r\v\f", &save); tok; tok = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (n == (int)(sizeof v / sizeof v[0])) return bad(r, line, "more than %d values", n);
        char *end;
        errno = 0;
        float x = strtof(tok, &end);
        if (end == tok || *end) return bad(r, line, "'%s' is not a number", tok);
        if (!isfinite(x)) return bad(r, line, "non-finite value '%s'", tok);
        v[n++] = x;
    }
    if (n != 5 && (n < 7 || (n - 1) % 2)) return bad(r, line, "%d columns (a box has 5: class cx cy w h; a polygon class x1 y1 x2 y2 x3 y3 ...)", n);
    if (v[0] != floorf(v[0]) || v[0] < 0 || v[0] >= (float)nc) return bad(r, line, "class %g is not one of 0..%d", v[0], nc - 1);
    for (int i = 1; i < n; i++) {
        if (v[i] < -OT_LABEL_TOL || v[i] > 1 + OT_LABEL_TOL)
            return bad(r, line, "coordinate %g is outside 0..1 (labels are normalised)", v[i]);
        v[i] = fminf(fmaxf(v[i], 0.f), 1.f);
    }
    row[0] = v[0];
    if (n == 5) { memcpy(row + 1, v + 1, 4 * sizeof(float)); return true; }
    float x0 = v[1], x1 = v[1], y0 = v[2], y1 = v[2];
    for (int i = 1; i + 1 < n; i += 2) {
        x0 = fminf(x0, v[i]); x1 = fmaxf(x1, v[i]);
        y0 = fminf(y0, v[i + 1]); y1 = fmaxf(y1, v[i + 1]);
    }
    row[1] = (x0 + x1) / 2;
    row[2] = (y0 + y1) / 2;
    row[3] = x1 - x0;
    row[4] = y1 - y0;
    r->polygons++;
    return true;
}

ot_status ot_labels_parse(const char *text, size_t len, int nc, ot_label_result *r, ot_error *err) {
    memset(r, 0, sizeof *r);
    size_t cap = 16;
    r->rows = malloc(cap * 5 * sizeof(float));
    char *line = malloc(len + 1);
    if (!r->rows || !line) { free(r->rows); free(line); r->rows = NULL; return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    int ln = 0;
    for (size_t i = 0; i <= len && i < len + 1;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        ln++;
        memcpy(line, text + i, j - i);
        line[j - i] = 0;
        bool blank = true;
        for (char *c = line; *c; c++) if (!isspace((unsigned char)*c)) { blank = false; break; }
        if (!blank) {
            float row[5];
            if (!parse_line(line, ln, nc, row, r)) break;
            bool dup = false;
            for (int k = 0; k < r->n && !dup; k++) dup = memcmp(r->rows + 5 * k, row, sizeof row) == 0;
            if (dup) r->duplicates++;
            else {
                if ((size_t)r->n == cap) {
                    float *g = realloc(r->rows, 2 * cap * 5 * sizeof(float));
                    if (!g) { free(line); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
                    r->rows = g;
                    cap *= 2;
                }
                memcpy(r->rows + 5 * r->n++, row, sizeof row);
            }
        }
        if (j >= len) break;
        i = j + 1;
    }
    free(line);
    if (r->bad_line || r->n == 0) { free(r->rows); r->rows = NULL; if (r->bad_line) r->n = 0; }
    return OT_OK;
}

/* ---- the scan ---- */

enum { REC_OK = 0, REC_CORRUPT, REC_BAD_LABEL, REC_NOMEM };
typedef struct scan_rec {
    int state, w0, h0, label_state; /* label_state: 0 found, 1 missing, 2 empty */
    ot_label_result lr;
    char *warn;
} scan_rec;

typedef struct scan_ctx {
    char **im, **lb;
    scan_rec *rec;
    int64_t n;
    int nc;
    atomic_llong next;
} scan_ctx;

static void scan_one(scan_ctx *c, int64_t i) {
    scan_rec *r = &c->rec[i];
    ot_error e;
    char msg[1400];
    if (ot_image_verify(c->im[i], &r->w0, &r->h0, &e) != OT_OK) {
        r->state = REC_CORRUPT;
        snprintf(msg, sizeof msg, "%s: ignoring corrupt image: %s", c->im[i], e.msg);
        r->warn = ot_strdup(msg);
        return;
    }
    if (r->w0 < 10 || r->h0 < 10) {
        r->state = REC_CORRUPT;
        snprintf(msg, sizeof msg, "%s: ignoring image: size %dx%d is under 10 pixels", c->im[i], r->w0, r->h0);
        r->warn = ot_strdup(msg);
        return;
    }
    if (!is_file(c->lb[i])) { r->label_state = 1; return; }
    uint8_t *buf;
    size_t len;
    if (ot_file_read(c->lb[i], &buf, &len, &e) != OT_OK) {
        r->state = REC_BAD_LABEL;
        snprintf(msg, sizeof msg, "%s: ignoring image: %s", c->im[i], e.msg);
        r->warn = ot_strdup(msg);
        return;
    }
    if (ot_labels_parse((const char *)buf, len, c->nc, &r->lr, &e) != OT_OK) { free(buf); r->state = REC_NOMEM; return; }
    free(buf);
    if (r->lr.bad_line) {
        r->state = REC_BAD_LABEL;
        snprintf(msg, sizeof msg, "%s:%d: ignoring image %s: bad label line: %s", c->lb[i], r->lr.bad_line, c->im[i], r->lr.why);
        r->warn = ot_strdup(msg);
        return;
    }
    r->label_state = r->lr.n ? 0 : 2;
    if (r->lr.duplicates) {
        snprintf(msg, sizeof msg, "%s: %d duplicate label rows removed", c->lb[i], r->lr.duplicates);
        r->warn = ot_strdup(msg);
    }
}

static void *scan_thread(void *arg) {
    scan_ctx *c = arg;
    for (int64_t i; (i = atomic_fetch_add(&c->next, 1)) < c->n;) scan_one(c, i);
    return NULL;
}

void ot_dataset_destroy(ot_dataset *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) {
        free(d->im_files[i]);
        free(d->lb_files[i]);
        free(d->labels[i]);
    }
    free(d->im_files);
    free(d->lb_files);
    free(d->labels);
    free(d->w0);
    free(d->h0);
    free(d->n_labels);
    free(d->sum.per_class);
    free(d);
}

ot_status ot_dataset_open(char *const *sources, int n_sources, int nc, int threads, bool quiet, ot_dataset **out,
                          ot_error *err) {
    *out = NULL;
    if (nc < 1) return ot_fail(err, OT_ERR_INVALID, "dataset: nc must be >= 1");
    char **im;
    int64_t n;
    OT_TRY(ot_list_images(sources, n_sources, &im, &n, err));
    scan_ctx c = {.im = im, .n = n, .nc = nc};
    c.lb = calloc((size_t)n, sizeof *c.lb);
    c.rec = calloc((size_t)n, sizeof *c.rec);
    ot_dataset *d = calloc(1, sizeof *d);
    ot_status st = OT_OK;
    if (!c.lb || !c.rec || !d) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    for (int64_t i = 0; i < n; i++)
        if (!(c.lb[i] = ot_img2label_path(im[i]))) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
    atomic_init(&c.next, 0);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&th[started], NULL, scan_thread, &c) == 0) started++;
    scan_thread(&c);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);

    d->nc = nc;
    d->sum.per_class = calloc((size_t)nc, sizeof(int64_t));
    d->im_files = calloc((size_t)n, sizeof(char *));
    d->lb_files = calloc((size_t)n, sizeof(char *));
    d->labels = calloc((size_t)n, sizeof(float *));
    d->w0 = calloc((size_t)n, sizeof(int32_t));
    d->h0 = calloc((size_t)n, sizeof(int32_t));
    d->n_labels = calloc((size_t)n, sizeof(int32_t));
    if (!d->sum.per_class || !d->im_files || !d->lb_files || !d->labels || !d->w0 || !d->h0 || !d->n_labels) {
        st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    d->sum.listed = n;
    for (int64_t i = 0; i < n; i++) {
        scan_rec *r = &c.rec[i];
        if (r->state == REC_NOMEM) { st = ot_fail(err, OT_ERR_NOMEM, "out of memory"); goto fail; }
        if (r->warn && !quiet) ot_warn("%s", r->warn);
        if (r->state == REC_CORRUPT) { d->sum.corrupt++; continue; }
        if (r->state == REC_BAD_LABEL) { d->sum.bad_labels++; continue; }
        d->sum.duplicates += r->lr.duplicates;
        d->sum.polygons += r->lr.polygons;
        if (r->label_state == 0) d->sum.labelled++;
        else if (r->label_state == 1) d->sum.missing++;
        else d->sum.empty++;
        int64_t k = d->n++;
        d->im_files[k] = im[i];
        d->lb_files[k] = c.lb[i];
        im[i] = c.lb[i] = NULL;
        d->w0[k] = r->w0;
        d->h0[k] = r->h0;
        d->n_labels[k] = r->lr.n;
        d->labels[k] = r->lr.rows;
        r->lr.rows = NULL;
        d->sum.boxes += r->lr.n;
        for (int j = 0; j < r->lr.n; j++) d->sum.per_class[(int)d->labels[k][5 * j]]++;
    }
    d->sum.images = d->n;
    if (d->n == 0) {
        st = ot_fail(err, OT_ERR_INVALID, "dataset is empty: none of the %lld images found (first: %s) is usable (%lld corrupt, %lld with bad labels)",
                     (long long)n, c.lb[0] ? im[0] : "?", (long long)d->sum.corrupt, (long long)d->sum.bad_labels);
        goto fail;
    }
fail:
    for (int64_t i = 0; i < n; i++) {
        free(im[i]);
        if (c.lb) free(c.lb[i]);
        if (c.rec) { free(c.rec[i].warn); free(c.rec[i].lr.rows); }
    }
    free(im);
    free(c.lb);
    free(c.rec);
    if (st != OT_OK) { ot_dataset_destroy(d); return st; }
    *out = d;
    return OT_OK;
}

ot_status ot_dataset_open_split(const ot_data_cfg *cfg, int split, int threads, bool quiet, ot_dataset **out,
                                ot_error *err) {
    *out = NULL;
    if (split < 0 || split > 2 || cfg->n_split[split] == 0)
        return ot_fail(err, OT_ERR_INVALID, "%s: the %s split is not set", cfg->yaml,
                       split == 0 ? "train" : split == 1 ? "val" : split == 2 ? "test" : "requested");
    ot_status st = ot_dataset_open(cfg->split[split], cfg->n_split[split], cfg->nc, threads, quiet, out, err);
    if (st != OT_OK) ot_fail_prefix(err, "%s: ", cfg->yaml);
    return st;
}
