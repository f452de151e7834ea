/* test_core.c: shapes, half floats, the test pattern, .npy, graph order. */
#include "core/device.h"
#include "core/npy.h"
#include "core/backend.h"
#include "testutil.h"
#include <math.h>
#include <string.h>

START_TEST(shape_numel_and_limits) {
    ot_shape s = {4, {1, 3, 640, 640}};
    int64_t n;
    ck_assert(ot_shape_numel(&s, &n));
    ck_assert_int_eq(n, 1228800);
    ot_shape neg = {2, {3, -1}};
    ck_assert(!ot_shape_numel(&neg, &n));
    ot_shape huge = {3, {1000000, 1000000, 1000000}};
    ck_assert(!ot_shape_numel(&huge, &n));
    ot_shape ovf = {4, {INT64_MAX / 2, 4, 1, 1}};
    ck_assert(!ot_shape_numel(&ovf, &n));
}
END_TEST

START_TEST(shape_broadcast) {
    ot_shape a = {4, {2, 3, 4, 5}}, b = {3, {3, 1, 5}}, c = {1, {4}}, o;
    ck_assert(ot_shape_broadcast(&a, &b, &o));
    ck_assert_int_eq(o.rank, 4);
    ck_assert_int_eq(o.d[0], 2); ck_assert_int_eq(o.d[1], 3); ck_assert_int_eq(o.d[2], 4); ck_assert_int_eq(o.d[3], 5);
    ck_assert(!ot_shape_broadcast(&a, &c, &o)); /* 5 vs 4 */
}
END_TEST

START_TEST(half_roundtrip) {
    /* exact values and IEEE special cases, against known bit patterns */
    ck_assert_uint_eq(ot_float_to_half(1.0f), 0x3c00);
    ck_assert_uint_eq(ot_float_to_half(-2.0f), 0xc000);
    ck_assert_uint_eq(ot_float_to_half(65504.0f), 0x7bff);
    ck_assert_uint_eq(ot_float_to_half(1e6f), 0x7c00);            /* overflow to inf */
    ck_assert_uint_eq(ot_float_to_half(5.960464477539063e-08f), 0x0001); /* smallest subnormal */
    ck_assert(ot_half_to_float(0x0001) == 5.960464477539063e-08f);
    ck_assert(ot_half_to_float(0x3555) == 0.333251953125f);
    ck_assert(isinf(ot_half_to_float(0x7c00)));
    ck_assert(isnan(ot_half_to_float(0x7e00)));
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half survives a round trip */
        ck_assert_uint_eq(ot_float_to_half(ot_half_to_float((uint16_t)h)), h);
}
END_TEST

START_TEST(pattern_matches_python) {
    /* first values of tools/ref/common.py pattern(n, seed=1), printed by that script */
    float x[8];
    ot_fill_pattern(x, 8, 1);
    static const int bytes[8] = {224, 43, 22, 215, 133, 99, 193, 211};
    for (int i = 0; i < 8; i++) ck_assert_float_eq(x[i], (float)bytes[i] / 255.0f);
}
END_TEST

START_TEST(npy_roundtrip) {
    float d[6] = {1, -2, 3.5f, 0, 1e-7f, 65504};
    ot_tensor t = {OT_F32, {2, {2, 3}}, d}, r;
    ot_error e;
    char path[4096];
    snprintf(path, sizeof path, "%s/rt.npy", tu_work());
    ck_assert_int_eq(ot_npy_write(path, &t, &e), OT_OK);
    ck_assert_int_eq(ot_npy_read(path, &r, &e), OT_OK);
    ck_assert(ot_shape_eq(&r.shape, &t.shape));
    ck_assert_mem_eq(r.data, d, sizeof d);
    free(r.data);
    FILE *f = fopen(path, "wb");
    fputs("not numpy", f);
    fclose(f);
    ck_assert_int_eq(ot_npy_read(path, &r, &e), OT_ERR_PARSE);
}
END_TEST

static void add(ot_graph *g, const char *op, const char *in, const char *out) {
    ot_node *n = ot_graph_add_node(g);
    n->name = ot_strdup(out);
    n->op_type = ot_strdup(op);
    n->domain = ot_strdup("");
    n->n_in = 1; n->n_out = 1;
    n->in = malloc(sizeof(int)); n->out = malloc(sizeof(int));
    n->in[0] = ot_graph_value(g, in);
    n->out[0] = ot_graph_value(g, out);
}

START_TEST(topological_order_and_cycles) {
    ot_graph *g = ot_graph_create();
    g->path = ot_strdup("t.onnx");
    int x = ot_graph_value(g, "x");
    g->values[x].flags |= OT_V_INPUT;
    add(g, "Sigmoid", "b", "c"); /* out of order in the file */
    add(g, "Sigmoid", "x", "a");
    add(g, "Sigmoid", "a", "b");
    g->outputs = malloc(sizeof(int)); g->outputs[0] = ot_graph_find(g, "c"); g->n_outputs = 1;
    ot_error e;
    ck_assert_int_eq(ot_graph_finalize(g, &e), OT_OK);
    ck_assert_str_eq(g->nodes[0].name, "a");
    ck_assert_str_eq(g->nodes[1].name, "b");
    ck_assert_str_eq(g->nodes[2].name, "c");
    ot_graph_destroy(g);

    g = ot_graph_create();
    g->path = ot_strdup("cyc.onnx");
    x = ot_graph_value(g, "x");
    g->values[x].flags |= OT_V_INPUT;
    add(g, "Sigmoid", "q", "p");
    add(g, "Sigmoid", "p", "q");
    g->outputs = malloc(sizeof(int)); g->outputs[0] = ot_graph_find(g, "q"); g->n_outputs = 1;
    ck_assert_int_eq(ot_graph_finalize(g, &e), OT_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(e.msg, "cycle"));
    ot_graph_destroy(g);
}
END_TEST

START_TEST(host_memory_without_gpu) {
    /* the CPU devices' staging memory: ordinary, aligned, and host code may use it (on the guard too) */
    ot_backend *devs[2] = {ot_backend_cpu(), ot_backend_cpu_guard()};
    for (int k = 0; k < 2; k++) {
        unsigned char *p = ot_be_host_alloc(devs[k], 1000);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 64, 0);
        ck_assert(!ot_guard_owns(p));
        p[0] = p[999] = 7;
        ot_be_host_free(devs[k], p);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("core");
    TCase *t = tcase_create("core");
    tcase_add_test(t, shape_numel_and_limits);
    tcase_add_test(t, shape_broadcast);
    tcase_add_test(t, half_roundtrip);
    tcase_add_test(t, pattern_matches_python);
    tcase_add_test(t, npy_roundtrip);
    tcase_add_test(t, topological_order_and_cycles);
    tcase_add_test(t, host_memory_without_gpu);
    suite_add_tcase(s, t);
    return tu_main(s);
}
