/* onnx_write.c: graph IR -> ONNX ModelProto (import/onnx_write.h).
 *
 * The protobuf-c message tree is built over the IR without copying tensor
 * data (raw_data points at the IR's bytes; packing only reads), every struct
 * and array of the tree comes from one allocation list freed at the end, and
 * the result is packed into one malloc'd buffer. Tensors are written as
 * raw_data, which ONNX defines as little-endian (so is the importer). */
#include "onnx_write.h"
#include "../core/plan.h"
#include "onnx/onnx.pb-c.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "onnx-train writes raw_data by memcpy: little-endian hosts only (as the importer)"
#endif

/* Protobuf messages hold non-const pointers; nothing here writes through them. */
#define MUTABLE(p) ((void *)(uintptr_t)(p))

/* ---- one allocation list for the whole message tree ---- */
typedef struct wr {
    void **blk;
    size_t n, cap;
} wr;

static void *wr_alloc(wr *w, size_t n, size_t size) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        void **nb = realloc(w->blk, cap * sizeof *nb);
        if (!nb) return NULL;
        w->blk = nb;
        w->cap = cap;
    }
    void *p = ot_calloc(n ? n : 1, size);
    if (p) w->blk[w->n++] = p;
    return p;
}

static void wr_free(wr *w) {
    for (size_t i = 0; i < w->n; i++) free(w->blk[i]);
    free(w->blk);
}

/* ---- tensors ---- */
static Onnx__TensorProto *tensor_proto(wr *w, const char *name, const ot_const *c, ot_error *err, const char *what) {
    size_t es = ot_dtype_size(c->dtype);
    if (es == 0) {
        ot_fail(err, OT_ERR_UNSUPPORTED, "%s: element type %s cannot be written", what, ot_dtype_name(c->dtype));
        return NULL;
    }
    int64_t numel = 1;
    for (int d = 0; d < c->shape.rank; d++) numel *= c->shape.d[d];
    if (c->shape.rank < 0 || (size_t)numel * es != c->nbytes) {
        ot_fail(err, OT_ERR_INTERNAL, "%s: %zu data bytes do not fit its shape", what, c->nbytes);
        return NULL;
    }
    Onnx__TensorProto *t = wr_alloc(w, 1, sizeof *t);
    int64_t *dims = wr_alloc(w, (size_t)(c->shape.rank > 0 ? c->shape.rank : 1), sizeof(int64_t));
    if (!t || !dims) { ot_fail(err, OT_ERR_NOMEM, "out of memory"); return NULL; }
    onnx__tensor_proto__init(t);
    for (int d = 0; d < c->shape.rank; d++) dims[d] = c->shape.d[d];
    t->n_dims = (size_t)c->shape.rank;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = (int32_t)c->dtype;
    t->name = name ? MUTABLE(name) : NULL;
    t->has_raw_data = 1;
    t->raw_data.len = c->nbytes;
    t->raw_data.data = c->nbytes ? MUTABLE(c->data) : NULL;
    return t;
}

/* ---- value info: element type and (possibly symbolic) shape ---- */
static Onnx__ValueInfoProto *value_info(wr *w, const ot_value *v, ot_dtype dt, const ot_shape *shape, ot_error *err) {
    Onnx__ValueInfoProto *vi = wr_alloc(w, 1, sizeof *vi);
    Onnx__TypeProto *tp = wr_alloc(w, 1, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = wr_alloc(w, 1, sizeof *tt);
    if (!vi || !tp || !tt) { ot_fail(err, OT_ERR_NOMEM, "out of memory"); return NULL; }
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    vi->name = MUTABLE(v->name);
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = (int32_t)dt;
    if (shape->rank >= 0) {
        Onnx__TensorShapeProto *sp = wr_alloc(w, 1, sizeof *sp);
        Onnx__TensorShapeProto__Dimension **dims = wr_alloc(w, (size_t)(shape->rank ? shape->rank : 1), sizeof *dims);
        if (!sp || !dims) { ot_fail(err, OT_ERR_NOMEM, "out of memory"); return NULL; }
        onnx__tensor_shape_proto__init(sp);
        for (int d = 0; d < shape->rank; d++) {
            Onnx__TensorShapeProto__Dimension *dm = wr_alloc(w, 1, sizeof *dm);
            if (!dm) { ot_fail(err, OT_ERR_NOMEM, "out of memory"); return NULL; }
            onnx__tensor_shape_proto__dimension__init(dm);
            if (shape->d[d] >= 0) {
                dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                dm->dim_value = shape->d[d];
            } else if (v->dim_param[d] && v->dim_param[d][0]) {
                dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                dm->dim_param = v->dim_param[d];
            } /* else: an unknown dim without a name (NOT_SET) */
            dims[d] = dm;
        }
        sp->n_dim = (size_t)shape->rank;
        sp->dim = dims;
        tt->shape = sp;
    }
    return vi;
}

/* ---- attributes ---- */
static ot_status attr_proto(wr *w, const ot_graph *g, const ot_node *n, const ot_attr *a, Onnx__AttributeProto **out, ot_error *err) {
    Onnx__AttributeProto *p = wr_alloc(w, 1, sizeof *p);
    if (!p) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    onnx__attribute_proto__init(p);
    p->name = MUTABLE(a->name);
    p->has_type = 1;
    p->type = (Onnx__AttributeProto__AttributeType)a->type;
    switch (a->type) {
    case OT_ATTR_FLOAT: p->has_f = 1; p->f = a->f; break;
    case OT_ATTR_INT: p->has_i = 1; p->i = a->i; break;
    case OT_ATTR_STRING:
        p->has_s = 1;
        p->s.data = MUTABLE(a->s ? a->s : "");
        p->s.len = a->s ? strlen(a->s) : 0;
        break;
    case OT_ATTR_FLOATS: p->n_floats = (size_t)a->n; p->floats = MUTABLE(a->floats); break;
    case OT_ATTR_INTS: p->n_ints = (size_t)a->n; p->ints = MUTABLE(a->ints); break;
    case OT_ATTR_STRINGS: {
        ProtobufCBinaryData *s = wr_alloc(w, (size_t)a->n, sizeof *s);
        if (!s) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        for (int64_t k = 0; k < a->n; k++) { s[k].data = MUTABLE(a->strings[k]); s[k].len = strlen(a->strings[k]); }
        p->n_strings = (size_t)a->n;
        p->strings = s;
        break;
    }
    case OT_ATTR_TENSOR: {
        char what[700], label[600];
        snprintf(what, sizeof what, "%sattribute '%s'", ot_node_label(g, n, label, sizeof label), a->name);
        if (!a->t) return ot_fail(err, OT_ERR_INTERNAL, "%s holds no tensor", what);
        if (!(p->t = tensor_proto(w, NULL, a->t, err, what))) return err ? err->code : OT_ERR_INTERNAL;
        break;
    }
    default: {
        char label[600];
        return ot_fail(err, OT_ERR_UNSUPPORTED, "%sattribute '%s' of type %d cannot be written",
                       ot_node_label(g, n, label, sizeof label), a->name, (int)a->type);
    }
    }
    *out = p;
    return OT_OK;
}

static ot_status node_proto(wr *w, const ot_graph *g, const ot_node *n, Onnx__NodeProto **out, ot_error *err) {
    Onnx__NodeProto *p = wr_alloc(w, 1, sizeof *p);
    char **in = wr_alloc(w, (size_t)n->n_in, sizeof(char *));
    char **o = wr_alloc(w, (size_t)n->n_out, sizeof(char *));
    Onnx__AttributeProto **at = wr_alloc(w, (size_t)n->n_attr, sizeof *at);
    if (!p || !in || !o || !at) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    onnx__node_proto__init(p);
    for (int k = 0; k < n->n_in; k++) in[k] = MUTABLE(n->in[k] >= 0 ? g->values[n->in[k]].name : "");
    for (int k = 0; k < n->n_out; k++) o[k] = MUTABLE(n->out[k] >= 0 ? g->values[n->out[k]].name : "");
    for (int k = 0; k < n->n_attr; k++) OT_TRY(attr_proto(w, g, n, &n->attr[k], &at[k], err));
    p->n_input = (size_t)n->n_in;
    p->input = in;
    p->n_output = (size_t)n->n_out;
    p->output = o;
    p->name = MUTABLE(n->name ? n->name : "");
    p->op_type = MUTABLE(n->op_type);
    if (n->domain && n->domain[0]) p->domain = MUTABLE(n->domain);
    p->n_attribute = (size_t)n->n_attr;
    p->attribute = at;
    *out = p;
    return OT_OK;
}

/* Outputs the IR does not declare (graphs built in memory, intermediate
 * values made outputs): planned twice, with every unknown input dim set to 64
 * and then to 128; the dtype comes from the plan, and a dim is written where
 * both plans agree (else it stays unknown, as a dynamic batch or size). */
typedef struct guess { ot_plan *p[2]; bool tried; } guess;

static void guess_plans(const ot_graph *g, guess *gs) {
    gs->tried = true;
    ot_shape sh[16];
    if (g->n_inputs > 16) return;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < g->n_inputs; i++) {
            sh[i] = g->values[g->inputs[i]].shape;
            if (sh[i].rank < 0) return;
            for (int d = 0; d < sh[i].rank; d++) if (sh[i].d[d] < 0) sh[i].d[d] = k ? 128 : 64;
        }
        ot_error e;
        if (ot_plan_create_ex(g, sh, OT_PLAN_NO_MEMORY, &gs->p[k], &e) != OT_OK) gs->p[k] = NULL;
    }
}

static void output_type(const ot_graph *g, int v, guess *gs, ot_dtype *dt, ot_shape *sh) {
    const ot_value *val = &g->values[v];
    *dt = val->dtype != OT_UNDEF ? val->dtype : val->file_dtype;
    *sh = val->flags & OT_V_INIT ? val->init.shape : val->shape;
    if (*dt != OT_UNDEF && sh->rank >= 0) return;
    if (!gs->tried) guess_plans(g, gs);
    ot_plan *a = gs->p[0], *b = gs->p[1];
    if (*dt == OT_UNDEF) *dt = a && a->dtype[v] != OT_UNDEF ? a->dtype[v] : OT_F32;
    if (sh->rank < 0 && a && b && a->shape[v].rank == b->shape[v].rank) {
        *sh = a->shape[v];
        for (int d = 0; d < sh->rank; d++) if (a->shape[v].d[d] != b->shape[v].d[d]) sh->d[d] = -1;
    }
}

static ot_status build(wr *w, const ot_graph *g, const ot_onnx_write_opts *o, Onnx__ModelProto *mp, ot_error *err) {
    int64_t opset = o && o->opset > 0 ? o->opset : g->opset > 0 ? g->opset : 12;
    int64_t ir = g->ir_version > 0 ? g->ir_version : opset <= 14 ? 7 : 8;
    Onnx__GraphProto *gp = wr_alloc(w, 1, sizeof *gp);
    Onnx__OperatorSetIdProto *os = wr_alloc(w, 1, sizeof *os);
    Onnx__OperatorSetIdProto **osv = wr_alloc(w, 1, sizeof *osv);
    unsigned char *used = wr_alloc(w, (size_t)g->n_values, 1);
    if (!gp || !os || !osv || !used) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    onnx__model_proto__init(mp);
    onnx__graph_proto__init(gp);
    onnx__operator_set_id_proto__init(os);
    os->domain = MUTABLE("");
    os->has_version = 1;
    os->version = opset;
    osv[0] = os;
    mp->has_ir_version = 1;
    mp->ir_version = ir;
    mp->n_opset_import = 1;
    mp->opset_import = osv;
    mp->producer_name = MUTABLE(o && o->producer ? o->producer : "onnx-train");
    mp->producer_version = MUTABLE(OT_VERSION);
    mp->graph = gp;
    gp->name = MUTABLE(g->graph_name && g->graph_name[0] ? g->graph_name : "onnx-train");

    /* initializers some node or output uses, in value order */
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) used[g->nodes[i].in[k]] = 1;
    for (int k = 0; k < g->n_outputs; k++) used[g->outputs[k]] = 1;
    size_t n_init = 0;
    for (int v = 0; v < g->n_values; v++) if (used[v] && (g->values[v].flags & OT_V_INIT)) n_init++;
    Onnx__TensorProto **inits = wr_alloc(w, n_init, sizeof *inits);
    if (!inits) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    n_init = 0;
    for (int v = 0; v < g->n_values; v++) {
        const ot_value *val = &g->values[v];
        if (!used[v] || !(val->flags & OT_V_INIT)) continue;
        char what[600];
        snprintf(what, sizeof what, "%s: initializer '%s'", g->path ? g->path : "model", val->name);
        if (!(inits[n_init++] = tensor_proto(w, val->name, &val->init, err, what))) return err ? err->code : OT_ERR_INTERNAL;
    }
    gp->n_initializer = n_init;
    gp->initializer = inits;

    /* inputs (IR < 4 lists the initializers as inputs too) */
    size_t n_in = (size_t)g->n_inputs + (ir < 4 ? n_init : 0);
    Onnx__ValueInfoProto **ins = wr_alloc(w, n_in, sizeof *ins);
    if (!ins) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    size_t k_in = 0;
    for (int k = 0; k < g->n_inputs; k++) {
        const ot_value *v = &g->values[g->inputs[k]];
        ot_dtype dt = v->dtype != OT_UNDEF ? v->dtype : v->file_dtype != OT_UNDEF ? v->file_dtype : OT_F32;
        if (!(ins[k_in++] = value_info(w, v, dt, &v->shape, err))) return err ? err->code : OT_ERR_NOMEM;
    }
    if (ir < 4)
        for (int v = 0; v < g->n_values; v++) {
            const ot_value *val = &g->values[v];
            if (!used[v] || !(val->flags & OT_V_INIT)) continue;
            if (!(ins[k_in++] = value_info(w, val, val->init.dtype, &val->init.shape, err))) return err ? err->code : OT_ERR_NOMEM;
        }
    gp->n_input = k_in;
    gp->input = ins;

    /* outputs */
    Onnx__ValueInfoProto **outs = wr_alloc(w, (size_t)g->n_outputs, sizeof *outs);
    if (!outs) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    guess gs = {{NULL, NULL}, false};
    ot_status st = OT_OK;
    for (int k = 0; k < g->n_outputs && !st; k++) {
        int v = g->outputs[k];
        ot_dtype dt;
        ot_shape sh;
        output_type(g, v, &gs, &dt, &sh);
        if (!(outs[k] = value_info(w, &g->values[v], dt, &sh, err))) st = err ? err->code : OT_ERR_NOMEM;
    }
    for (int k = 0; k < 2; k++) if (gs.p[k]) ot_plan_destroy(gs.p[k]);
    if (st) return st;
    gp->n_output = (size_t)g->n_outputs;
    gp->output = outs;

    /* nodes */
    Onnx__NodeProto **nodes = wr_alloc(w, (size_t)g->n_nodes, sizeof *nodes);
    if (!nodes) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) OT_TRY(node_proto(w, g, &g->nodes[i], &nodes[i], err));
    gp->n_node = (size_t)g->n_nodes;
    gp->node = nodes;

    /* metadata */
    Onnx__StringStringEntryProto **meta = wr_alloc(w, (size_t)g->n_meta, sizeof *meta);
    if (!meta) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < g->n_meta; k++) {
        Onnx__StringStringEntryProto *e = wr_alloc(w, 1, sizeof *e);
        if (!e) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        onnx__string_string_entry_proto__init(e);
        e->key = MUTABLE(g->meta[k].key ? g->meta[k].key : "");
        e->value = MUTABLE(g->meta[k].value ? g->meta[k].value : "");
        meta[k] = e;
    }
    mp->n_metadata_props = (size_t)g->n_meta;
    mp->metadata_props = meta;
    return OT_OK;
}

ot_status ot_onnx_serialize(const ot_graph *g, const ot_onnx_write_opts *o, uint8_t **buf, size_t *len, ot_error *err) {
    *buf = NULL;
    *len = 0;
    wr w = {0};
    Onnx__ModelProto mp;
    ot_status st = build(&w, g, o, &mp, err);
    if (!st) {
        size_t n = onnx__model_proto__get_packed_size(&mp);
        if (n > ((size_t)1 << 31)) {
            st = ot_fail(err, OT_ERR_UNSUPPORTED, "%s: the model needs %zu bytes, more than protobuf's 2 GiB limit",
                         g->path ? g->path : "model", n);
        } else if (!(*buf = malloc(n ? n : 1))) {
            st = ot_fail(err, OT_ERR_NOMEM, "out of memory (%zu bytes for the ONNX model)", n);
        } else {
            size_t got = onnx__model_proto__pack(&mp, *buf);
            if (got != n) {
                free(*buf);
                *buf = NULL;
                st = ot_fail(err, OT_ERR_INTERNAL, "protobuf packing wrote %zu of %zu bytes", got, n);
            } else *len = n;
        }
    }
    wr_free(&w);
    return st;
}

/* ---- atomic file write ---- */
ot_status ot_file_write_atomic(const char *path, const void *buf, size_t len, ot_error *err) {
    char tmp[PATH_MAX], dir[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return ot_fail(err, OT_ERR_IO, "%s: path too long", path);
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno == EEXIST) { /* left by a dead process that had our pid */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    }
    if (fd < 0) return ot_fail(err, OT_ERR_IO, "%s: cannot create the temporary file '%s': %s", path, tmp, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ot_fail(err, OT_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    const char *step = NULL;
    int e = 0;
    if (len && fwrite(buf, 1, len, f) != len) step = "write";
    else if (fflush(f) != 0) step = "write";
    else if (fsync(fileno(f)) != 0) step = "fsync";
    if (step) e = errno;
    if (fclose(f) != 0 && !step) { step = "close"; e = errno; }
    if (!step && rename(tmp, path) != 0) { step = "rename the temporary file onto"; e = errno; }
    if (step) {
        unlink(tmp);
        return ot_fail(err, OT_ERR_IO, "%s: cannot %s it: %s", path, step, strerror(e ? e : EIO));
    }
    /* make the rename itself durable; file systems without directory fsync say EINVAL */
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        int rc = fsync(dfd);
        e = errno;
        close(dfd);
        if (rc != 0 && e != EINVAL && e != ENOTSUP && e != EBADF)
            return ot_fail(err, OT_ERR_IO, "%s: written, but syncing the folder '%s' failed: %s", path, dir, strerror(e));
    }
    return OT_OK;
}
