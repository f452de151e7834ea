/* onnx_import.c: ONNX ModelProto (protobuf-c, generated at build time from
 * the distribution's onnx.proto) -> graph IR (core/graph.h).
 *
 * Follows the ONNX IR spec (docs/IR.md): initializers in raw_data, typed
 * fields or external files; Constant nodes; opsets 7-18 of the default domain;
 * metadata_props. The protobuf message is freed before returning: nothing
 * downstream sees a protobuf type. Every check names the file, the node and
 * op or the initializer, and what was expected. */
#include "import.h"
#include "../kernels/ops.h"
#include "onnx/onnx.pb-c.h"
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#define OT_MIN_OPSET 7
#define OT_MAX_OPSET 18

typedef struct imp {
    ot_graph *g;
    const char *path;   /* for messages */
    const char *dir;    /* external data folder; NULL: refuse external data */
    ot_error *err;
} imp;

/* ---- small helpers ---- */
static char *bin_str(const ProtobufCBinaryData *b) { return ot_strndup((const char *)b->data, b->len); }

static ot_status read_file(const char *path, unsigned char **buf, size_t *len, ot_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ot_fail(err, OT_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) { fclose(f); return ot_fail(err, OT_ERR_PARSE, "%s: the file is empty, expected an ONNX model", path); }
    if ((uint64_t)st.st_size > ((uint64_t)1 << 31)) {
        fclose(f);
        return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: %lld bytes exceeds the 2 GiB protobuf limit (use external data)", path, (long long)st.st_size);
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len);
    if (!*buf) { fclose(f); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, *len); }
    size_t got = fread(*buf, 1, *len, f);
    fclose(f);
    if (got != *len) { free(*buf); return ot_fail(err, OT_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, *len); }
    return OT_OK;
}

/* ---- external data: resolve inside the model's folder only ---- */
/* Checks location, size and bounds first; only then allocates *dst (nbytes). */
static ot_status read_external(imp *I, const Onnx__TensorProto *t, const char *what, unsigned char **dst, size_t nbytes) {
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t k = 0; k < t->n_external_data; k++) {
        const char *key = t->external_data[k]->key, *val = t->external_data[k]->value;
        if (!key || !val) continue;
        char *end;
        if (strcmp(key, "location") == 0) loc = val;
        else if (strcmp(key, "offset") == 0 || strcmp(key, "length") == 0) {
            errno = 0;
            long long x = strtoll(val, &end, 10);
            if (errno || *end || x < 0)
                return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data %s '%s' is not a non-negative integer", I->path, what, key, val);
            if (key[0] == 'o') offset = x; else length = x;
        }
    }
    if (!loc || !loc[0]) return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data without a location", I->path, what);
    if (!I->dir) return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data '%s' needs the model's folder", I->path, what, loc);
    if (loc[0] == '/' || strstr(loc, "..") || strchr(loc, '\\'))
        return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data location '%s' escapes the model's folder (only relative paths inside it are allowed)", I->path, what, loc);
    char full[PATH_MAX], rdir[PATH_MAX], rfile[PATH_MAX];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", I->dir, loc) >= sizeof full)
        return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data path too long", I->path, what);
    if (!realpath(I->dir, rdir) || !realpath(full, rfile))
        return ot_fail(I->err, OT_ERR_IO, "%s: %s: external data file '%s' not found: %s", I->path, what, full, strerror(errno));
    size_t dl = strlen(rdir);
    if (strncmp(rfile, rdir, dl) != 0 || rfile[dl] != '/')
        return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data '%s' resolves outside the model's folder", I->path, what, loc);
    FILE *f = fopen(rfile, "rb");
    if (!f) return ot_fail(I->err, OT_ERR_IO, "%s: %s: cannot open external data '%s': %s", I->path, what, full, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) { fclose(f); return ot_fail(I->err, OT_ERR_IO, "%s: %s: external data '%s' is not a regular file", I->path, what, full); }
    int64_t size = (int64_t)st.st_size;
    if (length < 0) length = size - offset;
    if (offset > size || length > size - offset) {
        fclose(f);
        return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data '%s' has %lld bytes, offset %lld + length %lld is past its end",
                       I->path, what, loc, (long long)size, (long long)offset, (long long)length);
    }
    if ((uint64_t)length != nbytes) {
        fclose(f);
        return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: external data length %lld bytes, its dims need %zu", I->path, what, (long long)length, nbytes);
    }
    *dst = malloc(nbytes ? nbytes : 1);
    if (!*dst) { fclose(f); return ot_fail(I->err, OT_ERR_NOMEM, "%s: %s: out of memory (%zu bytes)", I->path, what, nbytes); }
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(*dst, 1, nbytes, f) != nbytes) {
        free(*dst);
        *dst = NULL;
        fclose(f);
        return ot_fail(I->err, OT_ERR_IO, "%s: %s: short read of external data '%s'", I->path, what, full);
    }
    fclose(f);
    return OT_OK;
}

/* ---- tensors: float32, float16 (widened to float32), int64, int32 (widened to int64) ---- */
static ot_status read_tensor(imp *I, const Onnx__TensorProto *t, const char *what, ot_const *out, ot_dtype *file_dtype) {
    memset(out, 0, sizeof *out);
    if (t->n_dims > OT_MAX_RANK)
        return ot_fail(I->err, OT_ERR_UNSUPPORTED, "%s: %s: rank %zu exceeds %d", I->path, what, t->n_dims, OT_MAX_RANK);
    out->shape.rank = (int)t->n_dims;
    int64_t numel = 1;
    for (size_t k = 0; k < t->n_dims; k++) {
        if (t->dims[k] < 0)
            return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: negative dimension %lld", I->path, what, (long long)t->dims[k]);
        out->shape.d[k] = t->dims[k];
        if (!ot_mul_ok(numel, t->dims[k], &numel) || numel > OT_MAX_NUMEL)
            return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: dims describe more than %lld elements", I->path, what, (long long)OT_MAX_NUMEL);
    }
    ot_dtype ft = (ot_dtype)t->data_type, dt;
    switch (ft) {
    case OT_F32: case OT_F16: dt = OT_F32; break;
    case OT_I64: case OT_I32: dt = OT_I64; break;
    default:
        return ot_fail(I->err, OT_ERR_UNSUPPORTED, "%s: %s: data type %s is not supported (float32, float16, int64, int32)",
                       I->path, what, ot_dtype_name(ft));
    }
    *file_dtype = ft;
    size_t fsz = ot_dtype_size(ft), nbytes = (size_t)numel * fsz;
    /* where the data is, checked before anything is allocated (absurd dims with little data) */
    const unsigned char *raw = NULL;
    unsigned char *ext_buf = NULL;
    bool ext = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (ext) {
        OT_TRY(read_external(I, t, what, &ext_buf, nbytes));
        raw = ext_buf;
    } else if (t->has_raw_data) {
        if (t->raw_data.len != nbytes)
            return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: raw_data has %zu bytes, dims %s of %s need %zu", I->path, what,
                           t->raw_data.len, ot_shape_str(&out->shape, (char[96]){0}, 96), ot_dtype_name(ft), nbytes);
        raw = t->raw_data.data;
    } else {
        size_t have;
        const char *field;
        switch (ft) {
        case OT_F32: have = t->n_float_data; field = "float_data"; break;
        case OT_F16: case OT_I32: have = t->n_int32_data; field = "int32_data"; break;
        default: have = t->n_int64_data; field = "int64_data"; break;
        }
        if (have != (size_t)numel)
            return ot_fail(I->err, OT_ERR_INVALID, "%s: %s: %s has %zu values, dims %s need %lld", I->path, what, field, have,
                           ot_shape_str(&out->shape, (char[96]){0}, 96), (long long)numel);
    }
    out->dtype = dt;
    out->nbytes = (size_t)numel * ot_dtype_size(dt);
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) { free(ext_buf); return ot_fail(I->err, OT_ERR_NOMEM, "%s: %s: out of memory", I->path, what); }
    float *of = out->data;
    int64_t *oi = out->data;
    for (int64_t i = 0; i < numel; i++) {
        switch (ft) {
        case OT_F32: if (raw) memcpy(&of[i], raw + 4 * i, 4); else of[i] = t->float_data[i]; break;
        case OT_F16: {
            uint16_t h;
            if (raw) memcpy(&h, raw + 2 * i, 2); else h = (uint16_t)t->int32_data[i];
            of[i] = ot_half_to_float(h);
            break;
        }
        case OT_I32: {
            int32_t v;
            if (raw) memcpy(&v, raw + 4 * i, 4); else v = t->int32_data[i];
            oi[i] = v;
            break;
        }
        default: if (raw) memcpy(&oi[i], raw + 8 * i, 8); else oi[i] = t->int64_data[i]; break;
        }
    }
    free(ext_buf);
    return OT_OK;
}

/* ---- attributes ---- */
static ot_status read_attr(imp *I, const Onnx__AttributeProto *a, ot_attr *o, const char *where) {
    memset(o, 0, sizeof *o);
    o->name = ot_strdup(a->name ? a->name : "");
    if (!o->name) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
    ot_attr_type ty = a->has_type ? (ot_attr_type)a->type : OT_ATTR_UNDEF;
    if (ty == OT_ATTR_UNDEF) { /* IR < 3: infer from the filled field */
        if (a->n_ints) ty = OT_ATTR_INTS; else if (a->n_floats) ty = OT_ATTR_FLOATS;
        else if (a->n_strings) ty = OT_ATTR_STRINGS; else if (a->t) ty = OT_ATTR_TENSOR;
        else if (a->g) ty = OT_ATTR_GRAPH; else if (a->has_s) ty = OT_ATTR_STRING;
        else if (a->has_f) ty = OT_ATTR_FLOAT; else ty = OT_ATTR_INT;
    }
    o->type = ty;
    switch (ty) {
    case OT_ATTR_FLOAT: o->f = a->f; break;
    case OT_ATTR_INT: o->i = a->i; break;
    case OT_ATTR_STRING:
        o->s = bin_str(&a->s);
        if (!o->s) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        break;
    case OT_ATTR_INTS:
        o->n = (int64_t)a->n_ints;
        o->ints = ot_calloc(a->n_ints, sizeof(int64_t));
        if (!o->ints) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        if (a->n_ints) memcpy(o->ints, a->ints, a->n_ints * sizeof(int64_t));
        break;
    case OT_ATTR_FLOATS:
        o->n = (int64_t)a->n_floats;
        o->floats = ot_calloc(a->n_floats, sizeof(float));
        if (!o->floats) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        if (a->n_floats) memcpy(o->floats, a->floats, a->n_floats * sizeof(float));
        break;
    case OT_ATTR_STRINGS:
        o->n = (int64_t)a->n_strings;
        o->strings = ot_calloc(a->n_strings, sizeof(char *));
        if (!o->strings) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < a->n_strings; k++)
            if (!(o->strings[k] = bin_str(&a->strings[k]))) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        break;
    case OT_ATTR_TENSOR: {
        if (!a->t) return ot_fail(I->err, OT_ERR_INVALID, "%s: %sattribute '%s' has no tensor", I->path, where, o->name);
        o->t = calloc(1, sizeof *o->t);
        if (!o->t) return ot_fail(I->err, OT_ERR_NOMEM, "out of memory");
        char what[600];
        snprintf(what, sizeof what, "%sattribute '%s'", where, o->name);
        ot_dtype fd;
        return read_tensor(I, a->t, what, o->t, &fd);
    }
    default:
        return ot_fail(I->err, OT_ERR_UNSUPPORTED, "%s: %sattribute '%s' of type %d (graphs, sparse tensors, type protos) is not supported",
                       I->path, where, o->name, (int)ty);
    }
    return OT_OK;
}

/* ---- value info: dtype and shape of inputs/outputs ---- */
static ot_status read_value_info(imp *I, const Onnx__ValueInfoProto *vi, ot_value *v, bool required) {
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        if (!required) return OT_OK;
        return ot_fail(I->err, OT_ERR_UNSUPPORTED, "%s: graph input '%s' is not a tensor", I->path, v->name);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->dtype = v->file_dtype = tt->has_elem_type ? (ot_dtype)tt->elem_type : OT_UNDEF;
    if (!tt->shape) { v->shape.rank = -1; return OT_OK; }
    if (tt->shape->n_dim > OT_MAX_RANK)
        return ot_fail(I->err, OT_ERR_UNSUPPORTED, "%s: '%s' has rank %zu, more than %d", I->path, v->name, tt->shape->n_dim, OT_MAX_RANK);
    v->shape.rank = (int)tt->shape->n_dim;
    for (size_t k = 0; k < tt->shape->n_dim; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        v->shape.d[k] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0 || d->dim_value > OT_MAX_NUMEL)
                return ot_fail(I->err, OT_ERR_INVALID, "%s: '%s' has dimension %lld at axis %zu (expected 0..%lld)", I->path,
                               v->name, (long long)d->dim_value, k, (long long)OT_MAX_NUMEL);
            v->shape.d[k] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param) {
            free(v->dim_param[k]);
            v->dim_param[k] = ot_strdup(d->dim_param);
        }
    }
    return OT_OK;
}

static ot_status import_graph(imp *I, const Onnx__ModelProto *mp) {
    ot_graph *g = I->g;
    ot_error *err = I->err;
    const Onnx__GraphProto *gp = mp->graph;
    if (!gp) return ot_fail(err, OT_ERR_PARSE, "%s: no graph in the model (is this an ONNX file?)", I->path);

    g->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    g->opset = -1;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const char *d = mp->opset_import[k]->domain;
        if (!d || !d[0] || strcmp(d, "ai.onnx") == 0) g->opset = mp->opset_import[k]->version;
    }
    if (g->opset < 0 && mp->n_opset_import == 0 && g->ir_version > 0 && g->ir_version < 3) g->opset = 1;
    if (g->opset < OT_MIN_OPSET || g->opset > OT_MAX_OPSET)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: opset %lld of the default domain is not supported (expected %d to %d)",
                       I->path, (long long)g->opset, OT_MIN_OPSET, OT_MAX_OPSET);
    g->producer_name = ot_strdup(mp->producer_name ? mp->producer_name : "");
    g->producer_version = ot_strdup(mp->producer_version ? mp->producer_version : "");
    g->graph_name = ot_strdup(gp->name ? gp->name : "");

    for (size_t k = 0; k < mp->n_metadata_props; k++) {
        const Onnx__StringStringEntryProto *e = mp->metadata_props[k];
        ot_meta *nm = realloc(g->meta, sizeof *nm * (size_t)(g->n_meta + 1));
        if (!nm) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        g->meta = nm;
        nm[g->n_meta].key = ot_strdup(e->key ? e->key : "");
        nm[g->n_meta].value = ot_strdup(e->value ? e->value : "");
        g->n_meta++;
    }

    /* initializers */
    for (size_t k = 0; k < gp->n_initializer; k++) {
        const Onnx__TensorProto *t = gp->initializer[k];
        if (!t->name || !t->name[0]) return ot_fail(err, OT_ERR_INVALID, "%s: initializer #%zu has no name", I->path, k);
        int id = ot_graph_value(g, t->name);
        if (id < 0) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        ot_value *v = &g->values[id];
        if (v->flags & OT_V_INIT) return ot_fail(err, OT_ERR_INVALID, "%s: initializer '%s' appears twice", I->path, t->name);
        char what[600];
        snprintf(what, sizeof what, "initializer '%s'", t->name);
        ot_dtype fd;
        OT_TRY(read_tensor(I, t, what, &v->init, &fd));
        v->flags |= OT_V_INIT;
        v->dtype = v->init.dtype;
        v->file_dtype = fd;
        v->shape = v->init.shape;
    }

    /* inputs (IR < 4 lists initializers as inputs too: those keep their data) */
    g->inputs = ot_calloc(gp->n_input, sizeof(int));
    g->outputs = ot_calloc(gp->n_output, sizeof(int));
    if (!g->inputs || !g->outputs) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < gp->n_input; k++) {
        const Onnx__ValueInfoProto *vi = gp->input[k];
        if (!vi->name || !vi->name[0]) return ot_fail(err, OT_ERR_INVALID, "%s: graph input #%zu has no name", I->path, k);
        int id = ot_graph_value(g, vi->name);
        if (id < 0) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        if (g->values[id].flags & OT_V_INIT) continue;
        if (g->values[id].flags & OT_V_INPUT) return ot_fail(err, OT_ERR_INVALID, "%s: graph input '%s' is listed twice", I->path, vi->name);
        OT_TRY(read_value_info(I, vi, &g->values[id], true));
        ot_value *v = &g->values[id];
        if (v->dtype != OT_F32)
            return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: graph input '%s' has element type %s; onnx-train runs float32 inputs",
                           I->path, vi->name, ot_dtype_name(v->dtype));
        v->flags |= OT_V_INPUT;
        g->inputs[g->n_inputs++] = id;
    }
    if (g->n_inputs == 0) return ot_fail(err, OT_ERR_INVALID, "%s: the graph has no inputs", I->path);
    for (size_t k = 0; k < gp->n_output; k++) {
        const Onnx__ValueInfoProto *vi = gp->output[k];
        if (!vi->name || !vi->name[0]) return ot_fail(err, OT_ERR_INVALID, "%s: graph output #%zu has no name", I->path, k);
        int id = ot_graph_value(g, vi->name);
        if (id < 0) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        ot_value *v = &g->values[id];
        if (!(v->flags & (OT_V_INIT | OT_V_INPUT))) {
            ot_value tmp = *v;
            memset(tmp.dim_param, 0, sizeof tmp.dim_param);
            ot_status s = read_value_info(I, vi, &tmp, false);
            memcpy(&v->shape, &tmp.shape, sizeof v->shape);
            v->file_dtype = tmp.file_dtype;
            for (int d = 0; d < OT_MAX_RANK; d++) { free(v->dim_param[d]); v->dim_param[d] = tmp.dim_param[d]; }
            if (s) return s;
        }
        v->flags |= OT_V_OUTPUT;
        g->outputs[g->n_outputs++] = id;
    }
    if (g->n_outputs == 0) return ot_fail(err, OT_ERR_INVALID, "%s: the graph has no outputs", I->path);

    /* nodes */
    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *np = gp->node[k];
        ot_node *n = ot_graph_add_node(g);
        if (!n) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        const char *op = np->op_type ? np->op_type : "";
        char nm[64];
        snprintf(nm, sizeof nm, "%s_%zu", op[0] ? op : "node", k);
        n->name = ot_strdup(np->name && np->name[0] ? np->name : nm);
        n->op_type = ot_strdup(op);
        n->domain = ot_strdup(np->domain ? np->domain : "");
        n->n_in = (int)np->n_input;
        n->n_out = (int)np->n_output;
        n->in = ot_calloc(np->n_input, sizeof(int));
        n->out = ot_calloc(np->n_output, sizeof(int));
        n->attr = ot_calloc(np->n_attribute, sizeof(ot_attr));
        if (!n->name || !n->op_type || !n->domain || !n->in || !n->out || !n->attr)
            return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        char where[512];
        snprintf(where, sizeof where, "node '%s' (%s): ", n->name, n->op_type);
        n->op = ot_op_lookup(n->op_type, n->domain);
        if (n->op < 0) {
            if (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
                return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: %sop domain '%s' is not supported (only the default ONNX domain)",
                               I->path, where, n->domain);
            return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: %sop %s is not supported (see `onnx-train info --ops`)", I->path, where, n->op_type);
        }
        const ot_op_def *def = ot_op_get(n->op);
        if (n->n_in < def->min_in || (def->max_in >= 0 && n->n_in > def->max_in) || n->n_out < def->min_out ||
            (def->max_out >= 0 && n->n_out > def->max_out))
            return ot_fail(err, OT_ERR_INVALID, "%s: %s%d inputs and %d outputs; %s takes %d..%d inputs and %d..%d outputs",
                           I->path, where, n->n_in, n->n_out, def->name, def->min_in, def->max_in, def->min_out, def->max_out);
        for (size_t i = 0; i < np->n_input; i++) {
            const char *in = np->input[i];
            if (!(in && in[0]) && (int)i < def->min_in)
                return ot_fail(err, OT_ERR_INVALID, "%s: %sinput %zu is required but empty", I->path, where, i);
            n->in[i] = (in && in[0]) ? ot_graph_value(g, in) : -1;
            if (in && in[0] && n->in[i] < 0) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < np->n_output; i++) {
            const char *out = np->output[i];
            /* only BatchNormalization's statistics outputs are optional */
            if (!(out && out[0]) && (i == 0 || strcmp(n->op_type, "BatchNormalization") != 0))
                return ot_fail(err, OT_ERR_INVALID, "%s: %soutput %zu has no name", I->path, where, i);
            n->out[i] = (out && out[0]) ? ot_graph_value(g, out) : -1;
            if (out && out[0] && n->out[i] < 0) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < np->n_attribute; i++) {
            n->n_attr++;
            OT_TRY(read_attr(I, np->attribute[i], &n->attr[i], where));
        }
    }
    return ot_graph_finalize(g, err);
}

/* Validate shapes when the inputs are static, warn about ignored attributes. */
static ot_status validate(ot_graph *g, ot_error *err) {
    for (int i = 0; i < g->n_inputs; i++)
        if (!ot_shape_known(&g->values[g->inputs[i]].shape)) return OT_OK; /* planned per input shape later */
    ot_plan *p = NULL;
    OT_TRY(ot_plan_create_ex(g, NULL, OT_PLAN_NO_MEMORY, &p, err));
    ot_plan_destroy(p);
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_attr; k++)
            if (!g->nodes[i].attr[k].used && strcmp(g->nodes[i].attr[k].name, "training_mode") != 0)
                ot_warn("%s: node '%s' (%s): attribute '%s' ignored", g->path, g->nodes[i].name, g->nodes[i].op_type,
                        g->nodes[i].attr[k].name);
    return OT_OK;
}

ot_status ot_model_load_buffer(const void *buf, size_t len, const char *dir, const char *display_name, ot_model **out,
                               ot_error *err) {
    *out = NULL;
    const char *name = display_name ? display_name : "model";
    if (len == 0) return ot_fail(err, OT_ERR_PARSE, "%s: the file is empty, expected an ONNX model", name);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) return ot_fail(err, OT_ERR_PARSE, "%s: not a valid ONNX model (the protobuf does not parse: truncated or not ONNX)", name);
    ot_graph *g = ot_graph_create();
    if (!g) { onnx__model_proto__free_unpacked(mp, NULL); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    g->path = ot_strdup(name);
    g->dir = dir ? ot_strdup(dir) : NULL;
    imp I = {g, name, dir, err};
    ot_status s = import_graph(&I, mp);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (!s) s = validate(g, err);
    if (!s) s = ot_yolo_discover(g, err);
    if (s) { ot_graph_destroy(g); return s; }
    *out = g;
    return OT_OK;
}

ot_status ot_model_load(const char *path, ot_model **out, ot_error *err) {
    unsigned char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    OT_TRY(read_file(path, &buf, &len, err));
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else snprintf(dir, sizeof dir, ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    ot_status s = ot_model_load_buffer(buf, len, dir, path, out, err);
    free(buf);
    return s;
}

void ot_model_destroy(ot_model *m) { ot_graph_destroy(m); }
int ot_model_num_inputs(const ot_model *m) { return m->n_inputs; }
int ot_model_num_outputs(const ot_model *m) { return m->n_outputs; }
const char *ot_model_input_name(const ot_model *m, int i) { return m->values[m->inputs[i]].name; }
const char *ot_model_output_name(const ot_model *m, int i) { return m->values[m->outputs[i]].name; }
ot_shape ot_model_input_shape(const ot_model *m, int i) { return m->values[m->inputs[i]].shape; }
const ot_yolo_head *ot_model_head(const ot_model *m) { return &m->head; }
