/* detect_head.c: YOLOv5 v7.0 Detect's exported tail as IR nodes
 * (import/detect_head.h).
 *
 * Mirrors what torch.onnx.export makes of models/yolo.py Detect.forward at
 * opset 12 (see ../shared/models/yolov5s.onnx, tools/ref/README.md "where
 * anchors and strides are"): per level
 *   Constant(shape5) Reshape Transpose(0,1,3,4,2)        -- raw form stops here
 *   Sigmoid Split(axis 4, [2, 2, nc+1])
 *   Constant(2) Mul, Add(grid), Constant(stride) Mul      -- xy
 *   Constant(2) Mul, Constant(2) Pow, Mul(anchor_grid)    -- wh
 *   Concat(axis 4) Constant(shape3) Reshape
 * and Concat(axis 1) of the levels. Node names count per op type in emission
 * order ("Reshape", "Reshape_1", ...; grid and anchor_grid, initializers here,
 * still take their Constant numbers), which reproduces the export's names. */
#include "detect_head.h"
#include "../kernels/ops.h"
#include <string.h>

enum { K_CONSTANT, K_RESHAPE, K_TRANSPOSE, K_SIGMOID, K_SPLIT, K_MUL, K_ADD, K_POW, K_CONCAT, K_N };
static const char *const op_names[K_N] = {"Constant", "Reshape", "Transpose", "Sigmoid", "Split", "Mul", "Add", "Pow", "Concat"};

typedef struct em {
    ot_graph *g;
    ot_error *err;
    char prefix[256];   /* "/model.24" */
    char module[256];   /* "model.24" */
    int count[K_N];
    int64_t opset;
} em;

/* A value with a name nobody uses yet: name, or name_2, name_3, ... */
static int fresh_value(ot_graph *g, const char *name) {
    char nm[600];
    snprintf(nm, sizeof nm, "%s", name);
    for (int k = 2; ot_graph_find(g, nm) >= 0; k++) snprintf(nm, sizeof nm, "%s_%d", name, k);
    return ot_graph_value(g, nm);
}

static ot_attr *new_attr(ot_node *n, const char *name, ot_attr_type t) {
    ot_attr *a = realloc(n->attr, sizeof *a * (size_t)(n->n_attr + 1));
    if (!a) return NULL;
    n->attr = a;
    a = &a[n->n_attr];
    memset(a, 0, sizeof *a);
    if (!(a->name = ot_strdup(name))) return NULL;
    a->type = t;
    n->n_attr++;
    return a;
}

static bool attr_int(ot_node *n, const char *name, int64_t v) {
    ot_attr *a = new_attr(n, name, OT_ATTR_INT);
    if (a) a->i = v;
    return a != NULL;
}

static bool attr_ints(ot_node *n, const char *name, int k, const int64_t *v) {
    ot_attr *a = new_attr(n, name, OT_ATTR_INTS);
    if (!a || !(a->ints = ot_calloc((size_t)k, sizeof(int64_t)))) return false;
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)k);
    a->n = k;
    return true;
}

/* Node "<prefix>/<Op>[_k]" with outputs "<node>_output_<i>" (or out[i] when >= 0).
 * Output ids land in out. NULL on OOM. */
static ot_node *emit(em *e, int kind, int n_in, const int *in, int n_out, int *out) {
    char name[400], vname[500];
    int k = e->count[kind]++;
    if (k) snprintf(name, sizeof name, "%s/%s_%d", e->prefix, op_names[kind], k);
    else snprintf(name, sizeof name, "%s/%s", e->prefix, op_names[kind]);
    for (int i = 0; i < n_out; i++) {
        if (out[i] >= 0) continue;
        snprintf(vname, sizeof vname, "%s_output_%d", name, i);
        if ((out[i] = fresh_value(e->g, vname)) < 0) return NULL;
    }
    ot_node *n = ot_graph_add_node(e->g);
    if (!n) return NULL;
    n->name = ot_strdup(name);
    n->op_type = ot_strdup(op_names[kind]);
    n->domain = ot_strdup("");
    n->op = ot_op_lookup(op_names[kind], "");
    if (!n->name || !n->op_type || !n->domain || !ot_node_set_io(n, n_in, in, n_out, out)) return NULL;
    return n;
}

/* A Constant node holding (dtype, shape, data); its output id, -1 on OOM. */
static int constant(em *e, ot_dtype dt, int rank, const int64_t *dims, const void *data) {
    int out = -1;
    ot_node *n = emit(e, K_CONSTANT, 0, NULL, 1, &out);
    if (!n) return -1;
    ot_attr *a = new_attr(n, "value", OT_ATTR_TENSOR);
    if (!a || !(a->t = calloc(1, sizeof *a->t))) return -1;
    ot_const c = {dt, ot_shape_make(rank, dims), (void *)(uintptr_t)data, 0};
    c.nbytes = (size_t)ot_numel(&c.shape) * ot_dtype_size(dt);
    if (ot_const_copy(a->t, &c, NULL)) return -1;
    return out;
}

static int const_f(em *e, float v) { return constant(e, OT_F32, 0, NULL, &v); }

static int const_i64(em *e, int k, const int64_t *v) {
    int64_t d = k;
    return constant(e, OT_I64, 1, &d, v);
}

/* grid / anchor_grid of level l as a float32 initializer (1, na, ny, nx, 2). */
static int grid_init(em *e, const char *what, int l, int na, int64_t ny, int64_t nx, const float (*anchors)[2]) {
    int64_t dims[5] = {1, na, ny, nx, 2};
    ot_const c = {OT_F32, ot_shape_make(5, dims), NULL, 0};
    c.nbytes = (size_t)ot_numel(&c.shape) * sizeof(float);
    float *d = malloc(c.nbytes);
    if (!d) return -1;
    for (int a = 0; a < na; a++)
        for (int64_t y = 0; y < ny; y++)
            for (int64_t x = 0; x < nx; x++) {
                float *p = d + (((size_t)a * (size_t)ny + (size_t)y) * (size_t)nx + (size_t)x) * 2;
                if (anchors) { p[0] = anchors[a][0]; p[1] = anchors[a][1]; }
                else { p[0] = (float)x - 0.5f; p[1] = (float)y - 0.5f; }  /* _make_grid: stack((xv, yv)) - 0.5 */
            }
    c.data = d;
    char nm[400], un[500];
    snprintf(nm, sizeof nm, "%s.%s.%d", e->module, what, l);
    snprintf(un, sizeof un, "%s", nm);
    for (int k = 2; ot_graph_find(e->g, un) >= 0; k++) snprintf(un, sizeof un, "%s_%d", nm, k);
    int id = ot_graph_add_init(e->g, un, &c);
    free(d);
    e->count[K_CONSTANT]++; /* the export has a Constant node here */
    return id;
}

/* "<prefix>" from the conv's node name "/model.24/m.0/Conv"; "/Detect" otherwise. */
static void set_prefix(em *e, int map) {
    const char *nm = NULL;
    int pn = e->g->values[map].producer;
    if (pn >= 0 && pn < e->g->n_nodes) nm = e->g->nodes[pn].name;
    if (!nm) /* not finalized yet: look for the producer */
        for (int i = 0; i < e->g->n_nodes && !nm; i++)
            for (int k = 0; k < e->g->nodes[i].n_out; k++)
                if (e->g->nodes[i].out[k] == map) nm = e->g->nodes[i].name;
    const char *m = nm ? strstr(nm, "/m.") : NULL;
    if (nm && nm[0] == '/' && m && m > nm) snprintf(e->prefix, sizeof e->prefix, "%.*s", (int)(m - nm), nm);
    else snprintf(e->prefix, sizeof e->prefix, "/Detect");
    snprintf(e->module, sizeof e->module, "%s", e->prefix + 1);
    for (char *c = e->module; *c; c++) if (*c == '/') *c = '.';
}

static ot_status add_output(ot_graph *g, int v, int rank, const int64_t *dims, ot_error *err) {
    int *o = realloc(g->outputs, sizeof(int) * (size_t)(g->n_outputs + 1));
    if (!o) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    g->outputs = o;
    g->outputs[g->n_outputs++] = v;
    g->values[v].flags |= OT_V_OUTPUT;
    g->values[v].dtype = OT_F32;
    g->values[v].file_dtype = OT_F32;
    g->values[v].shape = ot_shape_make(rank, dims);
    return OT_OK;
}

ot_status ot_detect_append(ot_graph *g, const int *maps, const ot_yolo_head *head, ot_form form, int img_h, int img_w,
                           int batch, const char *const *out_names, ot_error *err) {
    const char *path = g->path ? g->path : "model";
    int nl = head->nl, na = head->na, nc = head->nc, no = nc + 5;
    if (nl < 1 || nl > OT_MAX_HEADS || na < 1 || na > 16 || nc < 1)
        return ot_fail(err, OT_ERR_INVALID, "%s: Detect head with %d levels, %d anchors, %d classes (expected 1..%d, 1..16, >= 1)",
                       path, nl, na, nc, OT_MAX_HEADS);
    if (form != OT_FORM_INFERENCE && form != OT_FORM_RAW)
        return ot_fail(err, OT_ERR_INVALID, "%s: Detect export form '%s': expected inference or raw", path, ot_form_name(form));
    if (batch < 1 || img_h < 1 || img_w < 1)
        return ot_fail(err, OT_ERR_INVALID, "%s: Detect export size %dx%d, batch %d", path, img_h, img_w, batch);
    if (!out_names) return ot_fail(err, OT_ERR_INVALID, "%s: no output names for the Detect head", path);
    int n_names = form == OT_FORM_INFERENCE ? 1 : nl;
    for (int k = 0; k < n_names; k++) {
        if (!out_names[k] || !out_names[k][0]) return ot_fail(err, OT_ERR_INVALID, "%s: Detect output %d has no name", path, k);
        if (ot_graph_find(g, out_names[k]) >= 0)
            return ot_fail(err, OT_ERR_INVALID, "%s: Detect output name '%s' is already used in the graph", path, out_names[k]);
    }
    int64_t ny[OT_MAX_HEADS], nx[OT_MAX_HEADS];
    for (int l = 0; l < nl; l++) {
        int64_t s = head->stride[l];
        if (s < 1 || img_h % s || img_w % s)
            return ot_fail(err, OT_ERR_INVALID, "%s: image size %dx%d is not a multiple of Detect stride %lld", path, img_h, img_w, (long long)s);
        ny[l] = img_h / s;
        nx[l] = img_w / s;
        if (maps[l] < 0 || maps[l] >= g->n_values)
            return ot_fail(err, OT_ERR_INVALID, "%s: Detect level %d: no such value (id %d)", path, l, maps[l]);
        const ot_shape *ms = &g->values[maps[l]].shape;
        if (ms->rank == 4 && ((ms->d[1] >= 0 && ms->d[1] != (int64_t)na * no) || (ms->d[2] >= 0 && ms->d[2] != ny[l]) ||
                              (ms->d[3] >= 0 && ms->d[3] != nx[l])))
            return ot_fail(err, OT_ERR_SHAPE, "%s: Detect level %d: '%s' is declared %s, expected [%d,%d,%lld,%lld]", path, l,
                           g->values[maps[l]].name, ot_shape_str(ms, (char[96]){0}, 96), batch, na * no, (long long)ny[l],
                           (long long)nx[l]);
    }
    em e = {g, err, {0}, {0}, {0}, g->opset > 0 ? g->opset : 12};
    set_prefix(&e, maps[0]);

    int level_out[OT_MAX_HEADS];
    int64_t total = 0;
#define NEED(x) do { if (!(x)) return ot_fail(err, OT_ERR_NOMEM, "out of memory"); } while (0)
    for (int l = 0; l < nl; l++) {
        int64_t cells = (int64_t)na * ny[l] * nx[l];
        total += cells;
        /* view(bs, na, no, ny, nx).permute(0, 1, 3, 4, 2) */
        int64_t s5[5] = {batch, na, no, ny[l], nx[l]};
        int c5 = const_i64(&e, 5, s5);
        NEED(c5 >= 0);
        int rin[2] = {maps[l], c5}, r = -1;
        NEED(emit(&e, K_RESHAPE, 2, rin, 1, &r));
        int t = form == OT_FORM_RAW ? fresh_value(g, out_names[l]) : -1;
        NEED(form != OT_FORM_RAW || t >= 0);
        ot_node *tn = emit(&e, K_TRANSPOSE, 1, &r, 1, &t);
        static const int64_t perm[5] = {0, 1, 3, 4, 2};
        NEED(tn && attr_ints(tn, "perm", 5, perm));
        if (form == OT_FORM_RAW) {
            int64_t od[5] = {batch, na, ny[l], nx[l], no};
            OT_TRY(add_output(g, t, 5, od, err));
            continue;
        }
        /* sigmoid, split (2, 2, nc + 1) */
        int sg = -1;
        NEED(emit(&e, K_SIGMOID, 1, &t, 1, &sg));
        int64_t split[3] = {2, 2, no - 4};
        int sp_in[2] = {sg, -1}, n_sp_in = 1, xy_wh_conf[3] = {-1, -1, -1};
        if (e.opset >= 13) { NEED((sp_in[1] = const_i64(&e, 3, split)) >= 0); n_sp_in = 2; }
        ot_node *spn = emit(&e, K_SPLIT, n_sp_in, sp_in, 3, xy_wh_conf);
        NEED(spn && attr_int(spn, "axis", 4) && (e.opset >= 13 || attr_ints(spn, "split", 3, split)));
        /* xy = (xy * 2 + grid) * stride */
        int two = const_f(&e, 2.0f);
        NEED(two >= 0);
        int m_in[2] = {xy_wh_conf[0], two}, xy2 = -1;
        NEED(emit(&e, K_MUL, 2, m_in, 1, &xy2));
        int grid = grid_init(&e, "grid", l, na, ny[l], nx[l], NULL);
        NEED(grid >= 0);
        int a_in[2] = {xy2, grid}, xyg = -1;
        NEED(emit(&e, K_ADD, 2, a_in, 1, &xyg));
        int st = const_f(&e, (float)head->stride[l]);
        NEED(st >= 0);
        int s_in[2] = {xyg, st}, xy = -1;
        NEED(emit(&e, K_MUL, 2, s_in, 1, &xy));
        /* wh = (wh * 2) ** 2 * anchor_grid */
        int two_b = const_f(&e, 2.0f);
        NEED(two_b >= 0);
        int w_in[2] = {xy_wh_conf[1], two_b}, wh2 = -1;
        NEED(emit(&e, K_MUL, 2, w_in, 1, &wh2));
        int two_p = const_f(&e, 2.0f);
        NEED(two_p >= 0);
        int p_in[2] = {wh2, two_p}, whp = -1;
        NEED(emit(&e, K_POW, 2, p_in, 1, &whp));
        int ag = grid_init(&e, "anchor_grid", l, na, ny[l], nx[l], head->anchors[l]);
        NEED(ag >= 0);
        int g_in[2] = {whp, ag}, wh = -1;
        NEED(emit(&e, K_MUL, 2, g_in, 1, &wh));
        /* cat((xy, wh, conf), 4).view(bs, -1, no) */
        int c_in[3] = {xy, wh, xy_wh_conf[2]}, cat = -1;
        ot_node *cn = emit(&e, K_CONCAT, 3, c_in, 1, &cat);
        NEED(cn && attr_int(cn, "axis", 4));
        int64_t s3[3] = {batch, cells, no};
        int c3 = const_i64(&e, 3, s3);
        NEED(c3 >= 0);
        int r2in[2] = {cat, c3};
        level_out[l] = -1;
        NEED(emit(&e, K_RESHAPE, 2, r2in, 1, &level_out[l]));
    }
    if (form == OT_FORM_INFERENCE) {
        int out = fresh_value(g, out_names[0]);
        NEED(out >= 0);
        ot_node *cn = emit(&e, K_CONCAT, nl, level_out, 1, &out);
        NEED(cn && attr_int(cn, "axis", 1));
        int64_t od[3] = {batch, total, no};
        OT_TRY(add_output(g, out, 3, od, err));
    }
#undef NEED
    return OT_OK;
}
