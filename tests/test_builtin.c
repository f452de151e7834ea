/* test_builtin.c: the built-in YOLOv5 sizes (train/builtin.c), the Detect head
 * emitter (import/detect_head.c) and the ONNX writer (import/onnx_write.c).
 *
 * - every size imports with its head found (inference form, anchors from the
 *   decode, strides 8/16/32) and prepares to a training graph whose tensors are
 *   exactly the PyTorch state_dict's of Model('models/yolov5X.yaml', nc)
 *   (names, shapes, parameter count; tests/fixtures/builtin, made by
 *   tools/ref/make_builtin_fixtures.py);
 * - serialize -> load -> serialize: the same bytes and the same forward;
 * - with ../shared: yolov5s with the weights of ../shared/models/yolov5s.onnx
 *   copied in (Conv by Conv) computes Ultralytics' own export's output0
 *   (architecture and decode equal);
 * - write/re-load round trips of real exports keep the forward bit-identical;
 * - ot_file_write_atomic leaves nothing behind on failure. */
#include "import/detect_head.h"
#include "import/onnx_write.h"
#include "testutil.h"
#include "train/builtin.h"
#include "train/prepare.h"
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static ot_model *load_buf(const uint8_t *buf, size_t len, const char *name) {
    ot_model *m;
    ot_error e;
    ck_assert_msg(ot_model_load_buffer(buf, len, NULL, name, &m, &e) == OT_OK, "%s", e.msg);
    return m;
}

static ot_model *build(const char *name, int nc, int img, uint64_t seed) {
    uint8_t *buf;
    size_t len;
    ot_error e;
    ck_assert_msg(ot_builtin_onnx(name, nc, img, seed, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ot_model *m = load_buf(buf, len, name);
    free(buf);
    return m;
}

/* Forward on the pattern input (seed 1) of the declared input shape; a malloc'd copy of output k. */
static float *forward(const ot_model *m, int k, ot_shape *out_shape) {
    ot_shape s = ot_model_input_shape(m, 0);
    int64_t n = ot_numel(&s);
    float *x = malloc(sizeof(float) * (size_t)n);
    ck_assert_ptr_nonnull(x);
    ot_fill_pattern(x, n, 1);
    ot_tensor in = {OT_F32, s, x}, out[8];
    ot_session *sess;
    ot_error e;
    ck_assert_msg(ot_session_create(m, NULL, &sess, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_session_run(sess, &in, out, &e) == OT_OK, "%s", e.msg);
    int64_t no = ot_numel(&out[k].shape);
    float *y = malloc(sizeof(float) * (size_t)no);
    ck_assert_ptr_nonnull(y);
    memcpy(y, out[k].data, sizeof(float) * (size_t)no);
    *out_shape = out[k].shape;
    ot_session_destroy(sess);
    free(x);
    return y;
}

static void check_head(const ot_model *m, int nc) {
    const ot_yolo_head *h = ot_model_head(m);
    ck_assert(h->found);
    ck_assert_int_eq(h->form, OT_FORM_INFERENCE);
    ck_assert_int_eq(h->nl, 3);
    ck_assert_int_eq(h->na, 3);
    ck_assert_int_eq(h->nc, nc);
    ck_assert_str_eq(h->anchor_source, "decode");
    for (int l = 0; l < 3; l++) ck_assert_int_eq(h->stride[l], 8 << l);
    ck_assert(h->anchors[0][0][0] == 10 && h->anchors[0][0][1] == 13);
    ck_assert(h->anchors[1][2][0] == 59 && h->anchors[1][2][1] == 119);
    ck_assert(h->anchors[2][2][0] == 373 && h->anchors[2][2][1] == 326);
}

/* (a) the training graph's tensors are the state_dict's */
static void check_fixture(const char *name, int nc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/builtin/%s_nc%d.json", OT_FIXTURES, name, nc);
    json_error_t je;
    json_t *ref = json_load_file(path, 0, &je);
    ck_assert_msg(ref != NULL, "%s: %s", path, je.text);
    ck_assert(ot_builtin_known(name));
    ot_model *m = build(name, nc, 128, 7);
    check_head(m, nc);
    ot_graph *tg;
    ot_error e;
    ck_assert_msg(ot_prepare_training_graph(m, NULL, &tg, &e) == OT_OK, "%s", e.msg);
    json_t *ts = json_object_get(ref, "tensors");
    size_t nt = json_array_size(ts);
    ck_assert_uint_gt(nt, 0);
    int n_init = 0;
    int64_t params = 0;
    for (int v = 0; v < tg->n_values; v++) {
        const ot_value *val = &tg->values[v];
        if (!(val->flags & OT_V_INIT)) continue;
        n_init++;
        size_t l = strlen(val->name);
        bool buffer = (l > 13 && strcmp(val->name + l - 13, ".running_mean") == 0) ||
                      (l > 12 && strcmp(val->name + l - 12, ".running_var") == 0);
        if (!buffer) params += ot_numel(&val->init.shape);
    }
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(ts, i), *sh = json_object_get(t, "shape");
        const char *tn = json_string_value(json_object_get(t, "name"));
        int v = ot_graph_find(tg, tn);
        ck_assert_msg(v >= 0 && (tg->values[v].flags & OT_V_INIT), "%s nc %d: no tensor '%s' in the training graph", name, nc, tn);
        const ot_shape *s = &tg->values[v].init.shape;
        ck_assert_msg((size_t)s->rank == json_array_size(sh), "%s: '%s' has rank %d", name, tn, s->rank);
        for (int d = 0; d < s->rank; d++)
            ck_assert_msg(s->d[d] == json_integer_value(json_array_get(sh, (size_t)d)), "%s: '%s' dim %d is %lld", name, tn, d,
                          (long long)s->d[d]);
    }
    ck_assert_msg((size_t)n_init == nt, "%s nc %d: %d tensors in the training graph, the state_dict has %zu", name, nc, n_init, nt);
    ck_assert_msg(params == (int64_t)tu_jnum(ref, "parameters"), "%s nc %d: %lld parameters, expected %.0f", name, nc,
                  (long long)params, tu_jnum(ref, "parameters"));
    printf("%s nc %d: %d tensors, %lld parameters, as Ultralytics\n", name, nc, n_init, (long long)params);
    ot_graph_destroy(tg);
    ot_model_destroy(m);
    json_decref(ref);
}

START_TEST(sizes_match_state_dict) {
    static const struct { const char *name; int nc; } cases[] = {
        {"yolov5n", 80}, {"yolov5s", 80}, {"yolov5m", 80}, {"yolov5l", 80}, {"yolov5x", 80}, {"yolov5n", 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_fixture(cases[i].name, cases[i].nc);
}
END_TEST

START_TEST(builtin_arguments) {
    uint8_t *buf = NULL;
    size_t len = 0;
    ot_error e;
    ck_assert(!ot_builtin_known("yolov5n6"));
    ck_assert(!ot_builtin_known(NULL));
    ck_assert_int_eq(ot_builtin_onnx("yolov5q", 80, 640, 1, NULL, &buf, &len, &e), OT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(e.msg, "yolov5q"));
    ck_assert_int_eq(ot_builtin_onnx("yolov5n", 0, 640, 1, NULL, &buf, &len, &e), OT_ERR_INVALID);
    ck_assert_int_eq(ot_builtin_onnx("yolov5n", 80, 100, 1, NULL, &buf, &len, &e), OT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(e.msg, "multiple of 32"));
    ck_assert_ptr_null(buf);
}
END_TEST

/* metadata, determinism, initial values */
START_TEST(builtin_metadata_and_init) {
    static const char *const names[3] = {"cat", "it's", "a\\b"};
    uint8_t *b1, *b2, *b3;
    size_t l1, l2, l3;
    ot_error e;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 42, names, &b1, &l1, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 42, names, &b2, &l2, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 64, 43, names, &b3, &l3, &e) == OT_OK, "%s", e.msg);
    ck_assert(l1 == l2 && memcmp(b1, b2, l1) == 0);   /* deterministic per seed */
    ck_assert(l1 == l3 && memcmp(b1, b3, l1) != 0);   /* and the seed matters */
    ot_model *m = load_buf(b1, l1, "yolov5n");
    ck_assert_str_eq(ot_graph_meta(m, "stride"), "32");
    ck_assert_str_eq(ot_graph_meta(m, "names"), "{0: 'cat', 1: \"it's\", 2: 'a\\\\b'}");
    ck_assert_str_eq(ot_model_input_name(m, 0), "images");
    ck_assert_str_eq(ot_model_output_name(m, 0), "output0");
    ck_assert_int_eq(m->opset, 12);
    ck_assert_int_eq(m->ir_version, 7);
    /* folded conv: |w| <= 1/sqrt(fan_in) / sqrt(1.001), zero bias; stem 6x6 s2 p2 */
    int w = ot_graph_find(m, "model.0.conv.weight"), b = ot_graph_find(m, "model.0.conv.bias");
    ck_assert(w >= 0 && b >= 0);
    const float *wd = m->values[w].init.data, *bd = m->values[b].init.data;
    float bound = 1.0f / sqrtf(3 * 36) / sqrtf(1.001f) * 1.000001f, wmax = 0;
    for (int64_t i = 0; i < ot_numel(&m->values[w].init.shape); i++) wmax = fmaxf(wmax, fabsf(wd[i]));
    ck_assert(wmax <= bound && wmax > 0.9f * bound);
    for (int64_t i = 0; i < ot_numel(&m->values[b].init.shape); i++) ck_assert(bd[i] == 0.0f);
    /* Detect biases: U(-1/sqrt(64), 1/sqrt(64)) plus log(8 / (640 / s)^2) on obj, log(0.6 / (nc - 0.99999)) on classes */
    int hb = ot_graph_find(m, "model.24.m.2.bias");
    ck_assert(hb >= 0);
    const float *hd = m->values[hb].init.data;
    double obj = log(8.0 / 400.0), cls = log(0.6 / (3 - 0.99999)), bb = 1.0 / sqrt(256.0) + 1e-6;
    for (int a = 0; a < 3; a++) {
        for (int k = 0; k < 4; k++) ck_assert(fabs(hd[a * 8 + k]) <= bb);
        ck_assert(fabs(hd[a * 8 + 4] - obj) <= bb);
        for (int c = 0; c < 3; c++) ck_assert(fabs(hd[a * 8 + 5 + c] - cls) <= bb);
    }
    ot_model_destroy(m);
    free(b1);
    free(b2);
    free(b3);
}
END_TEST

/* (b) serialize -> load -> serialize: same bytes, same forward */
START_TEST(serialize_round_trip) {
    uint8_t *b1, *b2;
    size_t l1, l2;
    ot_error e;
    ck_assert_msg(ot_builtin_onnx("yolov5n", 3, 160, 5, NULL, &b1, &l1, &e) == OT_OK, "%s", e.msg);
    ot_model *m1 = load_buf(b1, l1, "first");
    ck_assert_msg(ot_onnx_serialize(m1, NULL, &b2, &l2, &e) == OT_OK, "%s", e.msg);
    ot_model *m2 = load_buf(b2, l2, "second");
    ck_assert_msg(l1 == l2 && memcmp(b1, b2, l1) == 0, "re-serialized model differs (%zu vs %zu bytes)", l1, l2);
    check_head(m2, 3);
    ot_shape s1, s2;
    float *y1 = forward(m1, 0, &s1), *y2 = forward(m2, 0, &s2);
    ck_assert(ot_shape_eq(&s1, &s2));
    ck_assert_int_eq(s1.d[1], 3 * (20 * 20 + 10 * 10 + 5 * 5));
    ck_assert_int_eq(s1.d[2], 8);
    ck_assert(memcmp(y1, y2, sizeof(float) * (size_t)ot_numel(&s1)) == 0);
    free(y1);
    free(y2);
    ot_model_destroy(m1);
    ot_model_destroy(m2);
    free(b1);
    free(b2);
}
END_TEST

/* Initializer behind value v (through Identity), or -1. */
static int init_source(const ot_graph *g, int v) {
    for (int hops = 0; v >= 0 && hops < 8; hops++) {
        if (g->values[v].flags & OT_V_INIT) return v;
        int pn = g->values[v].producer;
        if (pn < 0 || strcmp(g->nodes[pn].op_type, "Identity") != 0) return -1;
        v = g->nodes[pn].in[0];
    }
    return -1;
}

/* (c) our yolov5s with Ultralytics' weights computes Ultralytics' export */
START_TEST(yolov5s_equals_ultralytics) {
    const char *sh = tu_shared();
    if (!sh) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/yolov5s.onnx", sh);
    ot_model *ref, *m = build("yolov5s", 80, 640, 1);
    ot_error e;
    ck_assert_msg(ot_model_load(path, &ref, &e) == OT_OK, "%s", e.msg);
    int kr = 0, km = 0, copied = 0;
    for (;; kr++, km++) {
        while (kr < ref->n_nodes && strcmp(ref->nodes[kr].op_type, "Conv") != 0) kr++;
        while (km < m->n_nodes && strcmp(m->nodes[km].op_type, "Conv") != 0) km++;
        if (kr == ref->n_nodes || km == m->n_nodes) break;
        const ot_node *nr = &ref->nodes[kr], *nm = &m->nodes[km];
        ck_assert_int_eq(nr->n_in, nm->n_in);
        for (int k = 1; k < nr->n_in; k++) {
            int vr = init_source(ref, nr->in[k]), vm = init_source(m, nm->in[k]);
            ck_assert(vr >= 0 && vm >= 0);
            ck_assert_msg(ot_shape_eq(&ref->values[vr].init.shape, &m->values[vm].init.shape), "conv '%s' vs '%s': shapes differ",
                          nr->name, nm->name);
            memcpy(m->values[vm].init.data, ref->values[vr].init.data, ref->values[vr].init.nbytes);
            copied++;
        }
        ck_assert_str_eq(nr->name, nm->name);
    }
    ck_assert_msg(kr == ref->n_nodes && km == m->n_nodes, "Conv counts differ");
    ck_assert_int_eq(copied, 2 * 60);   /* 57 Conv + BN, 3 Detect convs: weight and bias each */
    ot_shape sr, so;
    float *yr = forward(ref, 0, &sr), *yo = forward(m, 0, &so);
    ck_assert(ot_shape_eq(&sr, &so));
    double dmax = 0, rmax = 0;
    for (int64_t i = 0; i < ot_numel(&sr); i++) {
        dmax = fmax(dmax, fabs((double)yr[i] - (double)yo[i]));
        rmax = fmax(rmax, fabs((double)yr[i]));
    }
    printf("yolov5s built vs Ultralytics export: max |diff| %.3g, max |ref| %.3g\n", dmax, rmax);
    ck_assert_msg(rmax > 0 && dmax / rmax < 1e-5, "max |diff| / max |ref| = %.3g", dmax / rmax);
    free(yr);
    free(yo);
    ot_model_destroy(ref);
    ot_model_destroy(m);
}
END_TEST

/* (d) write -> re-load keeps every output bit-identical */
static void round_trip_file(const char *path, const char *name) {
    ot_model *m, *m2;
    ot_error e;
    ck_assert_msg(ot_model_load(path, &m, &e) == OT_OK, "%s", e.msg);
    uint8_t *buf;
    size_t len;
    ck_assert_msg(ot_onnx_serialize(m, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    char out[4096];
    snprintf(out, sizeof out, "%s/%s.rt.onnx", tu_work(), name);
    ck_assert_msg(ot_file_write_atomic(out, buf, len, &e) == OT_OK, "%s", e.msg);
    free(buf);
    ck_assert_msg(ot_model_load(out, &m2, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(m->n_nodes, m2->n_nodes);
    ck_assert_int_eq(ot_model_num_outputs(m), ot_model_num_outputs(m2));
    ck_assert_int_eq(m->n_meta, m2->n_meta);
    for (int k = 0; k < m->n_meta; k++) ck_assert_str_eq(ot_graph_meta(m2, m->meta[k].key), m->meta[k].value);
    const ot_yolo_head *h = ot_model_head(m), *h2 = ot_model_head(m2);
    ck_assert(h2->found == h->found && h2->form == h->form && h2->nc == h->nc);
    ck_assert(memcmp(h->anchors, h2->anchors, sizeof h->anchors) == 0);
    for (int k = 0; k < ot_model_num_outputs(m); k++) {
        ck_assert_str_eq(ot_model_output_name(m, k), ot_model_output_name(m2, k));
        ot_shape s1, s2;
        float *y1 = forward(m, k, &s1), *y2 = forward(m2, k, &s2);
        ck_assert(ot_shape_eq(&s1, &s2));
        ck_assert_msg(memcmp(y1, y2, sizeof(float) * (size_t)ot_numel(&s1)) == 0, "%s: output %d differs after the round trip", name, k);
        free(y1);
        free(y2);
    }
    printf("%s: write/re-load round trip identical (%d outputs)\n", name, ot_model_num_outputs(m));
    remove(out);
    ot_model_destroy(m);
    ot_model_destroy(m2);
}

START_TEST(writer_round_trip_exports) {
    char cmd[8192], path[4096];
    snprintf(cmd, sizeof cmd, "tar -xJf '%s/yolov5n-c3-416.tar.xz' -C '%s'", OT_FIXTURES, tu_work());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/yolov5n-c3-416.onnx", tu_work());
    round_trip_file(path, "yolov5n-c3-416");
    const char *sh = tu_shared();
    if (!sh) return;
    snprintf(path, sizeof path, "%s/models/yolov5s-bn.onnx", sh);   /* BN with unnamed optional outputs, metadata anchors */
    round_trip_file(path, "yolov5s-bn");
}
END_TEST

/* a training graph (BN inserted, dynamic batch and size, undeclared output
 * dtypes) written and read back */
START_TEST(training_graph_round_trip) {
    ot_model *m = build("yolov5n", 3, 64, 3);
    ot_graph *tg;
    ot_error e;
    ck_assert_msg(ot_prepare_training_graph(m, NULL, &tg, &e) == OT_OK, "%s", e.msg);
    uint8_t *buf;
    size_t len;
    ck_assert_msg(ot_onnx_serialize(tg, &(ot_onnx_write_opts){.opset = 12, .producer = "test"}, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ot_model *r = load_buf(buf, len, "training");
    free(buf);
    ck_assert_str_eq(r->producer_name, "test");
    ck_assert_int_eq(r->n_nodes, tg->n_nodes);
    ck_assert_int_eq(ot_model_num_outputs(r), 3);
    const ot_value *in = &r->values[r->inputs[0]];
    ck_assert(in->shape.rank == 4 && in->shape.d[0] < 0 && in->shape.d[1] == 3 && in->shape.d[2] < 0);
    ck_assert_str_eq(in->dim_param[0], "batch");
    ck_assert_str_eq(in->dim_param[3], "width");
    int v = ot_graph_find(r, "model.2.m.0.cv2.bn.running_var");
    ck_assert(v >= 0 && (r->values[v].flags & OT_V_INIT));
    ck_assert(((const float *)r->values[v].init.data)[0] == 1.0f - 1e-3f);
    /* the same maps at a size of our choosing (2 x 3 x 96 x 64) */
    int64_t dims[4] = {2, 3, 96, 64};
    ot_shape is = ot_shape_make(4, dims);
    float *x = malloc(sizeof(float) * 2 * 3 * 96 * 64);
    ck_assert_ptr_nonnull(x);
    ot_fill_pattern(x, 2 * 3 * 96 * 64, 2);
    ot_tensor xin = {OT_F32, is, x}, o1[3], o2[3];
    ot_session *s1, *s2;
    ck_assert_msg(ot_session_create(tg, &is, &s1, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_session_create(r, &is, &s2, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_session_run(s1, &xin, o1, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_session_run(s2, &xin, o2, &e) == OT_OK, "%s", e.msg);
    for (int k = 0; k < 3; k++) {
        ck_assert(ot_shape_eq(&o1[k].shape, &o2[k].shape));
        ck_assert_int_eq(o1[k].shape.d[2], 12 >> k);
        ck_assert(memcmp(o1[k].data, o2[k].data, sizeof(float) * (size_t)ot_numel(&o1[k].shape)) == 0);
    }
    ot_session_destroy(s1);
    ot_session_destroy(s2);
    free(x);
    ot_model_destroy(r);
    ot_graph_destroy(tg);
    ot_model_destroy(m);
}
END_TEST

/* the raw (--train) form of the Detect emitter */
START_TEST(detect_raw_form) {
    ot_model *m = build("yolov5n", 3, 96, 1);
    ot_graph *tg;
    ot_error e;
    ck_assert_msg(ot_prepare_training_graph(m, &(ot_prepare_opts){.no_bn = true}, &tg, &e) == OT_OK, "%s", e.msg);
    /* the training graph's outputs are the head convs; make it a --train export again */
    int maps[3];
    for (int l = 0; l < 3; l++) maps[l] = tg->outputs[l];
    tg->n_outputs = 0;
    for (int l = 0; l < 3; l++) tg->values[maps[l]].flags &= ~(unsigned)OT_V_OUTPUT;
    int in = tg->inputs[0];
    int64_t d[4] = {1, 3, 96, 96};
    tg->values[in].shape = ot_shape_make(4, d);
    static const char *const outs[3] = {"p3", "p4", "p5"};
    ck_assert_msg(ot_detect_append(tg, maps, ot_model_head(m), OT_FORM_RAW, 96, 96, 1, outs, &e) == OT_OK, "%s", e.msg);
    ck_assert_int_eq(ot_detect_append(tg, maps, ot_model_head(m), OT_FORM_RAW, 96, 96, 1, outs, &e), OT_ERR_INVALID); /* names taken */
    ck_assert_msg(ot_graph_finalize(tg, &e) == OT_OK, "%s", e.msg);
    uint8_t *buf;
    size_t len;
    ck_assert_msg(ot_onnx_serialize(tg, NULL, &buf, &len, &e) == OT_OK, "%s", e.msg);
    ot_model *r = load_buf(buf, len, "raw");
    free(buf);
    const ot_yolo_head *h = ot_model_head(r);
    ck_assert(h->found);
    ck_assert_int_eq(h->form, OT_FORM_RAW);
    ck_assert_int_eq(h->nc, 3);
    ck_assert_int_eq(ot_model_num_outputs(r), 3);
    ck_assert_str_eq(ot_model_output_name(r, 2), "p5");
    /* the raw maps are the inference decode's input: check one cell by hand */
    ot_shape sr, si;
    float *raw = forward(r, 0, &sr), *dec = forward(m, 0, &si);
    ck_assert_int_eq(sr.rank, 5);
    ck_assert(sr.d[1] == 3 && sr.d[2] == 12 && sr.d[3] == 12 && sr.d[4] == 8);
    int a = 1, y = 5, x = 7;
    const float *p = raw + (((size_t)a * 12 + y) * 12 + x) * 8, *q = dec + ((size_t)a * 144 + y * 12 + x) * 8;
    float sx = 1.0f / (1.0f + expf(-p[0])), sw = 1.0f / (1.0f + expf(-p[2])), so = 1.0f / (1.0f + expf(-p[4]));
    ck_assert(fabsf(q[0] - (sx * 2 + (x - 0.5f)) * 8) < 1e-3f);
    ck_assert(fabsf(q[2] - (sw * 2) * (sw * 2) * 16) < 1e-3f);   /* anchor (16, 30) */
    ck_assert(fabsf(q[4] - so) < 1e-6f);
    free(raw);
    free(dec);
    ot_model_destroy(r);
    ot_graph_destroy(tg);
    ot_model_destroy(m);
}
END_TEST

/* (e) atomic writes */
static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

START_TEST(atomic_write) {
    char dir[4096], path[4096], cmd[8192];
    ot_error e;
    snprintf(dir, sizeof dir, "%s/atomic", tu_work());
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    /* success: the bytes, no temporary left */
    snprintf(path, sizeof path, "%s/ok.bin", dir);
    ck_assert_msg(ot_file_write_atomic(path, "hello", 5, &e) == OT_OK, "%s", e.msg);
    ck_assert_msg(ot_file_write_atomic(path, "world!", 6, &e) == OT_OK, "%s", e.msg);   /* replaces */
    FILE *f = fopen(path, "rb");
    char got[16] = {0};
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(got, 1, sizeof got, f), 6);
    fclose(f);
    ck_assert_str_eq(got, "world!");
    ck_assert_int_eq(dir_entries(dir), 1);
    /* a folder that does not exist */
    snprintf(path, sizeof path, "%s/missing/model.onnx", dir);
    ck_assert_int_eq(ot_file_write_atomic(path, "x", 1, &e), OT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(e.msg, path));
    ck_assert_ptr_nonnull(strstr(e.msg, "No such file"));
    /* the target is a folder: the rename fails after the write, the temporary goes */
    snprintf(path, sizeof path, "%s/target", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    char inner[4200];
    snprintf(inner, sizeof inner, "%s/keep", path);
    ck_assert_int_eq(mkdir(inner, 0755), 0);
    ck_assert_int_eq(ot_file_write_atomic(path, "data", 4, &e), OT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(e.msg, path));
    ck_assert_int_eq(dir_entries(dir), 2);   /* ok.bin and target: no temporary */
    ck_assert_int_eq(dir_entries(path), 1);
    /* an unwritable folder (as an unprivileged user when run as root) */
    snprintf(path, sizeof path, "%s/ro", dir);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(chmod(path, 0555), 0);
    char target[4200];
    snprintf(target, sizeof target, "%s/model.onnx", path);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        ot_error e2;
        if (ot_file_write_atomic(target, "data", 4, &e2) == OT_OK) _exit(1);
        _exit(strstr(e2.msg, target) && strstr(e2.msg, "Permission denied") ? 0 : 2);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) printf("SKIP: cannot drop root privileges for the unwritable-folder case\n");
    else ck_assert_msg(WEXITSTATUS(status) == 0, "unwritable folder: exit %d (1: written, 2: message)", WEXITSTATUS(status));
    ck_assert_int_eq(dir_entries(path), 0);
    chmod(path, 0755);
}
END_TEST

int main(void) {
    ot_set_quiet(true);
    Suite *s = suite_create("builtin");
    TCase *t = tcase_create("builtin");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, sizes_match_state_dict);
    tcase_add_test(t, builtin_arguments);
    tcase_add_test(t, builtin_metadata_and_init);
    tcase_add_test(t, serialize_round_trip);
    tcase_add_test(t, yolov5s_equals_ultralytics);
    tcase_add_test(t, writer_round_trip_exports);
    tcase_add_test(t, training_graph_round_trip);
    tcase_add_test(t, detect_raw_form);
    tcase_add_test(t, atomic_write);
    suite_add_tcase(s, t);
    return tu_main(s);
}
