/* builtin.c: YOLOv5 v7.0 P5 models built natively (train/builtin.h).
 *
 * Follows models/yolov5*.yaml and models/yolo.py parse_model of Ultralytics
 * YOLOv5 v7.0: channels make_divisible(c * width, 8), repeats
 * max(round(n * depth), 1), Conv = Conv2d(k, s, k // 2) + BN + SiLU, C3,
 * Bottleneck, SPPF(k 5), nn.Upsample(2, nearest), Concat, Detect. The graph is
 * what torch.onnx.export gives for the fused model at opset 12 (compare
 * ../shared/models/yolov5s.onnx): same node order and names, Constant nodes
 * for the Resize scales, one bias initializer per Conv (the torch exporter
 * would deduplicate the all-zero ones through Identity nodes; prepare.c reads
 * either). Then ot_graph_finalize and the ONNX writer. */
#include "builtin.h"
#include "../import/detect_head.h"
#include "../import/onnx_write.h"
#include "../kernels/ops.h"
#include <math.h>
#include <string.h>

typedef struct size_def { const char *name; double depth, width; } size_def;
static const size_def sizes[] = {
    {"yolov5n", 0.33, 0.25}, {"yolov5s", 0.33, 0.50}, {"yolov5m", 0.67, 0.75},
    {"yolov5l", 1.00, 1.00}, {"yolov5x", 1.33, 1.25},
};

static const float p5_anchors[3][3][2] = {{{10, 13}, {16, 30}, {33, 23}},
                                          {{30, 61}, {62, 45}, {59, 119}},
                                          {{116, 90}, {156, 198}, {373, 326}}};

static const size_def *find_size(const char *name) {
    for (size_t i = 0; name && i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(sizes[i].name, name) == 0) return &sizes[i];
    return NULL;
}

bool ot_builtin_known(const char *name) { return find_size(name) != NULL; }

/* ---- the generator: splitmix64, one stream per tensor ---- */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n values U(-bound, bound) * scale from stream `index` of seed. */
static void fill_uniform(float *x, int64_t n, uint64_t seed, uint64_t index, float bound, float scale) {
    uint64_t s = seed ^ (index * 0xd1b54a32d192ed03ull);
    splitmix64(&s);
    for (int64_t i = 0; i < n; i++) {
        float u = (float)(splitmix64(&s) >> 40) * 0x1p-24f;   /* [0, 1), 24 bits */
        x[i] = ((2.0f * u - 1.0f) * bound) * scale;
    }
}

/* ---- graph building ---- */
typedef struct bld {
    ot_graph *g;
    ot_error *err;
    ot_status st;
    uint64_t seed;
    uint64_t n_tensors;   /* stream index of the next random tensor */
    float fold;           /* fresh BN folded into the conv: 1 / sqrt(1 + eps) */
} bld;

static bool fail_nomem(bld *b) {
    if (!b->st) b->st = ot_fail(b->err, OT_ERR_NOMEM, "out of memory building the model");
    return false;
}

static bool set_attr_ints(ot_attr *a, const char *name, int k, const int64_t *v) {
    a->name = ot_strdup(name);
    a->type = OT_ATTR_INTS;
    a->ints = ot_calloc((size_t)k, sizeof(int64_t));
    if (!a->name || !a->ints) return false;
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)k);
    a->n = k;
    return true;
}

/* Node `name` (op) with one output "<name>_output_0"; returns the output id or -1. */
static int node(bld *b, const char *op, const char *name, int n_in, const int *in, int n_attr, ot_node **out_node) {
    if (b->st) return -1;
    char vn[512];
    snprintf(vn, sizeof vn, "%s_output_0", name);
    int out = ot_graph_value(b->g, vn);
    ot_node *n = out >= 0 ? ot_graph_add_node(b->g) : NULL;
    if (!n) return fail_nomem(b), -1;
    n->name = ot_strdup(name);
    n->op_type = ot_strdup(op);
    n->domain = ot_strdup("");
    n->op = ot_op_lookup(op, "");
    n->attr = ot_calloc((size_t)n_attr, sizeof(ot_attr));
    n->n_attr = n_attr;
    if (!n->name || !n->op_type || !n->domain || !n->attr || !ot_node_set_io(n, n_in, in, 1, &out)) return fail_nomem(b), -1;
    if (out_node) *out_node = n;
    return out;
}

/* A float32 initializer of the given shape; data (may be NULL: zeros). */
static int init(bld *b, const char *name, int rank, const int64_t *dims, const float *data) {
    if (b->st) return -1;
    ot_const c = {OT_F32, ot_shape_make(rank, dims), NULL, 0};
    c.nbytes = (size_t)ot_numel(&c.shape) * sizeof(float);
    float *z = NULL;
    if (!data && !(data = z = calloc(c.nbytes ? c.nbytes : 1, 1))) return fail_nomem(b), -1;
    c.data = (void *)(uintptr_t)data;
    int id = ot_graph_add_init(b->g, name, &c);
    free(z);
    if (id < 0) return fail_nomem(b), -1;
    return id;
}

/* Conv2d(c1, c2, k, s, p) with weight and bias initializers; the Conv node's output.
 * bias NULL: a folded fresh BN (weight * fold, bias 0); else a plain conv with that bias. */
static int conv2d(bld *b, int x, const char *node_name, const char *wname, const char *bname, int c1, int c2, int k, int s,
                  int p, const float *bias) {
    if (b->st) return -1;
    int64_t wd[4] = {c2, c1, k, k}, bd[1] = {c2};
    int64_t nw = (int64_t)c2 * c1 * k * k;
    float *w = malloc(sizeof(float) * (size_t)nw);
    if (!w) return fail_nomem(b), -1;
    float bound = 1.0f / sqrtf((float)(c1 * k * k));
    fill_uniform(w, nw, b->seed, b->n_tensors++, bound, bias ? 1.0f : b->fold);
    int wid = init(b, wname, 4, wd, w), bid = init(b, bname, 1, bd, bias);
    free(w);
    if (wid < 0 || bid < 0) return -1;
    ot_node *n;
    int in[3] = {x, wid, bid};
    int y = node(b, "Conv", node_name, 3, in, 5, &n);
    if (y < 0) return -1;
    int64_t one2[2] = {1, 1}, ks[2] = {k, k}, st[2] = {s, s}, pads[4] = {p, p, p, p};
    n->attr[1].name = ot_strdup("group");
    n->attr[1].type = OT_ATTR_INT;
    n->attr[1].i = 1;
    if (!set_attr_ints(&n->attr[0], "dilations", 2, one2) || !n->attr[1].name ||
        !set_attr_ints(&n->attr[2], "kernel_shape", 2, ks) || !set_attr_ints(&n->attr[3], "pads", 4, pads) ||
        !set_attr_ints(&n->attr[4], "strides", 2, st))
        return fail_nomem(b), -1;
    return y;
}

/* models/common.py Conv: Conv2d (BN folded, padding autopad(k) = k / 2) + SiLU (Sigmoid, Mul).
 * path "/model.2/m/m.0/cv1", module "model.2.m.0.cv1". */
static int conv_p(bld *b, int x, const char *path, const char *module, int c1, int c2, int k, int s, int p) {
    char nn[400], wn[400], bn[400];
    snprintf(nn, sizeof nn, "%s/conv/Conv", path);
    snprintf(wn, sizeof wn, "%s.conv.weight", module);
    snprintf(bn, sizeof bn, "%s.conv.bias", module);
    int y = conv2d(b, x, nn, wn, bn, c1, c2, k, s, p, NULL);
    snprintf(nn, sizeof nn, "%s/act/Sigmoid", path);
    int sg = node(b, "Sigmoid", nn, 1, &y, 0, NULL);
    snprintf(nn, sizeof nn, "%s/act/Mul", path);
    int in[2] = {y, sg};
    return node(b, "Mul", nn, 2, in, 0, NULL);
}

static int conv(bld *b, int x, const char *path, const char *module, int c1, int c2, int k, int s) {
    return conv_p(b, x, path, module, c1, c2, k, s, k / 2);
}

static int concat(bld *b, const char *name, int n, const int *in) {
    ot_node *nd;
    int y = node(b, "Concat", name, n, in, 1, &nd);
    if (y < 0) return -1;
    nd->attr[0].name = ot_strdup("axis");
    nd->attr[0].type = OT_ATTR_INT;
    nd->attr[0].i = 1;
    if (!nd->attr[0].name) return fail_nomem(b), -1;
    return y;
}

/* C3(c1, c2, n, shortcut): cv3(cat(m(cv1(x)), cv2(x))), c_ = c2 / 2. */
static int c3(bld *b, int x, int i, int c1, int c2, int n, bool shortcut) {
    char p[128], m[128], p2[128], m2[128];
    int c_ = c2 / 2;
    snprintf(p, sizeof p, "/model.%d/cv1", i);
    snprintf(m, sizeof m, "model.%d.cv1", i);
    int y = conv(b, x, p, m, c1, c_, 1, 1);
    for (int j = 0; j < n; j++) {   /* Bottleneck(c_, c_, shortcut, e=1.0) */
        snprintf(p, sizeof p, "/model.%d/m/m.%d/cv1", i, j);
        snprintf(m, sizeof m, "model.%d.m.%d.cv1", i, j);
        snprintf(p2, sizeof p2, "/model.%d/m/m.%d/cv2", i, j);
        snprintf(m2, sizeof m2, "model.%d.m.%d.cv2", i, j);
        int t = conv(b, conv(b, y, p, m, c_, c_, 1, 1), p2, m2, c_, c_, 3, 1);
        if (shortcut) {
            snprintf(p, sizeof p, "/model.%d/m/m.%d/Add", i, j);
            int in[2] = {y, t};
            y = node(b, "Add", p, 2, in, 0, NULL);
        } else y = t;
    }
    snprintf(p, sizeof p, "/model.%d/cv2", i);
    snprintf(m, sizeof m, "model.%d.cv2", i);
    int y2 = conv(b, x, p, m, c1, c_, 1, 1);
    snprintf(p, sizeof p, "/model.%d/Concat", i);
    int in[2] = {y, y2};
    int cat = concat(b, p, 2, in);
    snprintf(p, sizeof p, "/model.%d/cv3", i);
    snprintf(m, sizeof m, "model.%d.cv3", i);
    return conv(b, cat, p, m, 2 * c_, c2, 1, 1);
}

/* SPPF(c1, c2, k=5): cv2(cat(x, m(x), m(m(x)), m(m(m(x))))) with x = cv1(x), c_ = c1 / 2. */
static int sppf(bld *b, int x, int i, int c1, int c2) {
    char p[128], m[128];
    int c_ = c1 / 2;
    snprintf(p, sizeof p, "/model.%d/cv1", i);
    snprintf(m, sizeof m, "model.%d.cv1", i);
    int y[4];
    y[0] = conv(b, x, p, m, c1, c_, 1, 1);
    for (int k = 1; k < 4; k++) {
        if (k == 1) snprintf(p, sizeof p, "/model.%d/m/MaxPool", i);
        else snprintf(p, sizeof p, "/model.%d/m_%d/MaxPool", i, k - 1);
        ot_node *n;
        y[k] = node(b, "MaxPool", p, 1, &y[k - 1], 4, &n);
        if (y[k] < 0) return -1;
        int64_t ks[2] = {5, 5}, pads[4] = {2, 2, 2, 2}, st[2] = {1, 1};
        n->attr[0].name = ot_strdup("ceil_mode");
        n->attr[0].type = OT_ATTR_INT;
        if (!n->attr[0].name || !set_attr_ints(&n->attr[1], "kernel_shape", 2, ks) ||
            !set_attr_ints(&n->attr[2], "pads", 4, pads) || !set_attr_ints(&n->attr[3], "strides", 2, st))
            return fail_nomem(b), -1;
    }
    snprintf(p, sizeof p, "/model.%d/Concat", i);
    int cat = concat(b, p, 4, y);
    snprintf(p, sizeof p, "/model.%d/cv2", i);
    snprintf(m, sizeof m, "model.%d.cv2", i);
    return conv(b, cat, p, m, 4 * c_, c2, 1, 1);
}

/* A Constant node holding a float32 tensor. */
static int constant_f(bld *b, const char *name, int rank, const int64_t *dims, const float *v) {
    ot_node *n;
    int y = node(b, "Constant", name, 0, NULL, 1, &n);
    if (y < 0) return -1;
    ot_attr *a = &n->attr[0];
    a->name = ot_strdup("value");
    a->type = OT_ATTR_TENSOR;
    a->t = calloc(1, sizeof *a->t);
    ot_const c = {OT_F32, ot_shape_make(rank, dims), (void *)(uintptr_t)v, 0};
    c.nbytes = (size_t)ot_numel(&c.shape) * sizeof(float);
    if (!a->name || !a->t || ot_const_copy(a->t, &c, NULL)) return fail_nomem(b), -1;
    return y;
}

static bool str_attr(ot_attr *a, const char *name, const char *s) {
    a->name = ot_strdup(name);
    a->type = OT_ATTR_STRING;
    a->s = ot_strdup(s);
    return a->name && a->s;
}

/* nn.Upsample(None, 2, 'nearest') as exported at opset 12: Resize(x, roi [], scales [1,1,2,2]). */
static int upsample(bld *b, int x, int i) {
    char p[128];
    static const float scales[4] = {1, 1, 2, 2};
    int64_t four = 4, zero = 0;
    snprintf(p, sizeof p, "/model.%d/Constant", i);
    int sc = constant_f(b, p, 1, &four, scales);
    snprintf(p, sizeof p, "/model.%d/Constant_1", i);
    int roi = constant_f(b, p, 1, &zero, NULL);
    snprintf(p, sizeof p, "/model.%d/Resize", i);
    int in[3] = {x, roi, sc};
    ot_node *n;
    int y = node(b, "Resize", p, 3, in, 4, &n);
    if (y < 0) return -1;
    n->attr[1].name = ot_strdup("cubic_coeff_a");
    n->attr[1].type = OT_ATTR_FLOAT;
    n->attr[1].f = -0.75f;
    if (!str_attr(&n->attr[0], "coordinate_transformation_mode", "asymmetric") || !n->attr[1].name ||
        !str_attr(&n->attr[2], "mode", "nearest") || !str_attr(&n->attr[3], "nearest_mode", "floor"))
        return fail_nomem(b), -1;
    return y;
}

/* ---- metadata: Python reprs, as export.py writes str(value) ---- */
typedef struct sbuf { char *s; size_t n, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = true; return; }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Python's repr() of a str: single quotes unless the text has ' and no ". */
static void sb_pyrepr(sbuf *b, const char *s) {
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    sb_put(b, &q, 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[8];
        if (*c == (unsigned char)q || *c == '\\') { e[0] = '\\'; e[1] = (char)*c; sb_put(b, e, 2); }
        else if (*c == '\n') sb_str(b, "\\n");
        else if (*c == '\r') sb_str(b, "\\r");
        else if (*c == '\t') sb_str(b, "\\t");
        else if (*c < 0x20 || *c == 0x7f) { snprintf(e, sizeof e, "\\x%02x", *c); sb_str(b, e); }
        else sb_put(b, (const char *)c, 1);
    }
    sb_put(b, &q, 1);
}

static bool add_meta(ot_graph *g, const char *key, const char *value) {
    ot_meta *m = realloc(g->meta, sizeof *m * (size_t)(g->n_meta + 1));
    if (!m) return false;
    g->meta = m;
    m[g->n_meta].key = ot_strdup(key);
    m[g->n_meta].value = ot_strdup(value);
    g->n_meta++;
    return m[g->n_meta - 1].key && m[g->n_meta - 1].value;
}

/* ---- the model ---- */
static int chan(const size_def *d, int c) { return (int)ceil(c * d->width / 8.0) * 8; }     /* make_divisible(c * gw, 8) */
static int reps(const size_def *d, int n) { return n > 1 ? (int)fmax(nearbyint(n * d->depth), 1) : n; } /* round() */

static ot_status build(ot_graph *g, const size_def *d, int nc, int img, uint64_t seed, const char *const *names, ot_error *err) {
    bld b = {g, err, OT_OK, seed, 0, 1.0f / sqrtf(1.0f + 1e-3f)};
    g->path = ot_strdup(d->name);
    g->graph_name = ot_strdup(d->name);
    g->producer_name = ot_strdup("onnx-train");
    g->producer_version = ot_strdup(OT_VERSION);
    g->opset = 12;
    g->ir_version = 7;
    if (!g->path || !g->graph_name || !g->producer_name || !g->producer_version) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    int x = ot_graph_value(g, "images");
    g->inputs = malloc(sizeof(int));
    if (x < 0 || !g->inputs) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    int64_t ind[4] = {1, 3, img, img};
    g->values[x].dtype = g->values[x].file_dtype = OT_F32;
    g->values[x].shape = ot_shape_make(4, ind);
    g->values[x].flags |= OT_V_INPUT;
    g->inputs[g->n_inputs++] = x;

    int c64 = chan(d, 64), c128 = chan(d, 128), c256 = chan(d, 256), c512 = chan(d, 512), c1024 = chan(d, 1024);
    int n3 = reps(d, 3), n6 = reps(d, 6), n9 = reps(d, 9);
    int L[24];
    /* backbone */
    L[0] = conv_p(&b, x, "/model.0", "model.0", 3, c64, 6, 2, 2);   /* Conv(64, 6, 2, 2): padding 2, not 6 / 2 */
    L[1] = conv(&b, L[0], "/model.1", "model.1", c64, c128, 3, 2);
    L[2] = c3(&b, L[1], 2, c128, c128, n3, true);
    L[3] = conv(&b, L[2], "/model.3", "model.3", c128, c256, 3, 2);
    L[4] = c3(&b, L[3], 4, c256, c256, n6, true);
    L[5] = conv(&b, L[4], "/model.5", "model.5", c256, c512, 3, 2);
    L[6] = c3(&b, L[5], 6, c512, c512, n9, true);
    L[7] = conv(&b, L[6], "/model.7", "model.7", c512, c1024, 3, 2);
    L[8] = c3(&b, L[7], 8, c1024, c1024, n3, true);
    L[9] = sppf(&b, L[8], 9, c1024, c1024);
    /* head */
    L[10] = conv(&b, L[9], "/model.10", "model.10", c1024, c512, 1, 1);
    L[11] = upsample(&b, L[10], 11);
    int in12[2] = {L[11], L[6]};
    L[12] = concat(&b, "/model.12/Concat", 2, in12);
    L[13] = c3(&b, L[12], 13, 2 * c512, c512, n3, false);
    L[14] = conv(&b, L[13], "/model.14", "model.14", c512, c256, 1, 1);
    L[15] = upsample(&b, L[14], 15);
    int in16[2] = {L[15], L[4]};
    L[16] = concat(&b, "/model.16/Concat", 2, in16);
    L[17] = c3(&b, L[16], 17, 2 * c256, c256, n3, false);
    L[18] = conv(&b, L[17], "/model.18", "model.18", c256, c256, 3, 2);
    int in19[2] = {L[18], L[14]};
    L[19] = concat(&b, "/model.19/Concat", 2, in19);
    L[20] = c3(&b, L[19], 20, 2 * c256, c512, n3, false);
    L[21] = conv(&b, L[20], "/model.21", "model.21", c512, c512, 3, 2);
    int in22[2] = {L[21], L[10]};
    L[22] = concat(&b, "/model.22/Concat", 2, in22);
    L[23] = c3(&b, L[22], 23, 2 * c512, c1024, n3, false);
    if (b.st) return b.st;

    /* Detect: Conv2d(ch, na * no, 1) with bias, then _initialize_biases */
    ot_yolo_head h;
    memset(&h, 0, sizeof h);
    h.nl = 3; h.na = 3; h.nc = nc;
    for (int l = 0; l < 3; l++)
        for (int a = 0; a < 3; a++) { h.anchors[l][a][0] = p5_anchors[l][a][0]; h.anchors[l][a][1] = p5_anchors[l][a][1]; }
    int no = nc + 5, ch[3] = {c256, c512, c1024}, src[3] = {L[17], L[20], L[23]}, maps[3];
    for (int l = 0; l < 3; l++) {
        int64_t s = (int64_t)8 << l;
        h.stride[l] = s;
        float *bias = malloc(sizeof(float) * (size_t)(3 * no));
        if (!bias) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        float bound = 1.0f / sqrtf((float)ch[l]);
        fill_uniform(bias, 3 * no, seed, b.n_tensors++, bound, 1.0f);
        float obj = (float)log(8.0 / pow(640.0 / (double)s, 2.0)), cls = (float)log(0.6 / (nc - 0.99999));
        for (int a = 0; a < 3; a++) {
            bias[a * no + 4] += obj;
            for (int c = 0; c < nc; c++) bias[a * no + 5 + c] += cls;
        }
        char nn[64], wn[64], bn[64];
        snprintf(nn, sizeof nn, "/model.24/m.%d/Conv", l);
        snprintf(wn, sizeof wn, "model.24.m.%d.weight", l);
        snprintf(bn, sizeof bn, "model.24.m.%d.bias", l);
        maps[l] = conv2d(&b, src[l], nn, wn, bn, ch[l], 3 * no, 1, 1, 0, bias);
        free(bias);
        if (b.st) return b.st;
    }
    const char *out_name = "output0";
    OT_TRY(ot_detect_append(g, maps, &h, OT_FORM_INFERENCE, img, img, 1, &out_name, err));

    /* metadata, as export.py: {'stride': int(max(model.stride)), 'names': model.names} */
    sbuf nb = {0};
    sb_str(&nb, "{");
    for (int c = 0; c < nc; c++) {
        char k[48];
        snprintf(k, sizeof k, "%s%d: ", c ? ", " : "", c);
        sb_str(&nb, k);
        if (names && names[c]) sb_pyrepr(&nb, names[c]);
        else { snprintf(k, sizeof k, "'class%d'", c); sb_str(&nb, k); }
    }
    sb_str(&nb, "}");
    bool ok = !nb.oom && add_meta(g, "stride", "32") && add_meta(g, "names", nb.s);
    free(nb.s);
    if (!ok) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    return ot_graph_finalize(g, err);
}

ot_status ot_builtin_onnx(const char *name, int nc, int img, uint64_t seed, const char *const *names, uint8_t **buf,
                          size_t *len, ot_error *err) {
    *buf = NULL;
    *len = 0;
    const size_def *d = find_size(name);
    if (!d) return ot_fail(err, OT_ERR_INVALID, "unknown built-in model '%s' (expected yolov5n, yolov5s, yolov5m, yolov5l or yolov5x)",
                           name ? name : "(null)");
    if (nc < 1 || nc > 100000) return ot_fail(err, OT_ERR_INVALID, "%s: %d classes (expected 1 to 100000)", name, nc);
    if (img < 32 || img > 8192 || img % 32)
        return ot_fail(err, OT_ERR_INVALID, "%s: image size %d (expected a multiple of 32, the largest stride, from 32 to 8192)", name, img);
    ot_graph *g = ot_graph_create();
    if (!g) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    ot_status st = build(g, d, nc, img, seed, names, err);
    if (!st) st = ot_onnx_serialize(g, NULL, buf, len, err);
    ot_graph_destroy(g);
    return st;
}
