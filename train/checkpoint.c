/* checkpoint.c: save and load training checkpoints (train/checkpoint.h). */
#include "checkpoint.h"
#include "../import/onnx_write.h"
#include <errno.h>
#include <string.h>

#define CK_MAGIC "OTCKPT01"
#define CK_END "OTCKEND\n"
enum { CP_EMA, CP_M1, CP_M2, CP_GRAD, CP_N };
static const char *copy_name[CP_N] = {"ema", "m1", "m2", "grad"};

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

json_t *ot_head_to_json(const ot_yolo_head *h) {
    json_t *j = json_object(), *st = json_array(), *an = json_array();
    for (int l = 0; l < h->nl; l++) {
        json_array_append_new(st, json_integer(h->stride[l]));
        json_t *la = json_array();
        for (int a = 0; a < h->na; a++) {
            json_array_append_new(la, json_real(h->anchors[l][a][0]));
            json_array_append_new(la, json_real(h->anchors[l][a][1]));
        }
        json_array_append_new(an, la);
    }
    json_object_set_new(j, "nl", json_integer(h->nl));
    json_object_set_new(j, "na", json_integer(h->na));
    json_object_set_new(j, "nc", json_integer(h->nc));
    json_object_set_new(j, "stride", st);
    json_object_set_new(j, "anchors", an);
    return j;
}

ot_status ot_head_from_json(const json_t *j, ot_yolo_head *h, ot_error *err) {
    memset(h, 0, sizeof *h);
    json_t *st = json_object_get(j, "stride"), *an = json_object_get(j, "anchors");
    h->nl = (int)json_integer_value(json_object_get(j, "nl"));
    h->na = (int)json_integer_value(json_object_get(j, "na"));
    h->nc = (int)json_integer_value(json_object_get(j, "nc"));
    if (h->nl < 1 || h->nl > OT_MAX_HEADS || h->na < 1 || h->na > 16 || h->nc < 1 || !json_is_array(st) ||
        !json_is_array(an) || (int)json_array_size(st) != h->nl || (int)json_array_size(an) != h->nl)
        return ot_fail(err, OT_ERR_PARSE, "checkpoint: bad head description");
    for (int l = 0; l < h->nl; l++) {
        h->stride[l] = json_integer_value(json_array_get(st, (size_t)l));
        json_t *la = json_array_get(an, (size_t)l);
        if (h->stride[l] < 1 || !json_is_array(la) || (int)json_array_size(la) != 2 * h->na)
            return ot_fail(err, OT_ERR_PARSE, "checkpoint: bad head layer %d", l);
        for (int a = 0; a < h->na; a++) {
            h->anchors[l][a][0] = (float)json_number_value(json_array_get(la, (size_t)(2 * a)));
            h->anchors[l][a][1] = (float)json_number_value(json_array_get(la, (size_t)(2 * a + 1)));
        }
    }
    h->found = 1;
    h->form = OT_FORM_RAW_BN;
    h->anchor_source = "checkpoint";
    return OT_OK;
}

/* ---- save ---- */
typedef struct wbuf { uint8_t *p; size_t n, cap; bool oom; } wbuf;
static void put(wbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }

static const float *copy_src(int cp, const ot_autograd *ag, const ot_ema *ema, const ot_optimizer *o) {
    switch (cp) {
    case CP_EMA: return ema ? ema->slab : NULL;
    case CP_M1: return o ? o->m1 : NULL;
    case CP_M2: return o ? o->m2 : NULL;
    default: return ag->grad_slab;
    }
}

ot_status ot_ckpt_save(const char *path, json_t *header, ot_graph *g, const ot_yolo_head *head, const ot_autograd *ag,
                       const ot_ema *ema, const ot_optimizer *o, bool grads, ot_error *err) {
    /* the graph carries the current model variables */
    for (int i = 0; i < ag->n_vars; i++) {
        ot_value *v = &g->values[ag->var_vid[i]];
        if (v->init.dtype != OT_F32 || !v->init.data) return ot_fail(err, OT_ERR_INTERNAL, "checkpoint: variable '%s' is not float32", v->name);
        ot_be_download(ag->be, v->init.data, ag->slab + ag->var_off[i], v->init.nbytes);
    }
    uint8_t *onnx = NULL;
    size_t onnx_len = 0;
    ot_onnx_write_opts wo = {0};
    OT_TRY(ot_onnx_serialize(g, &wo, &onnx, &onnx_len, err));

    json_t *h = json_deep_copy(header), *tl = json_array(), *copies = json_array();
    json_object_set_new(h, "format", json_integer(1));
    json_object_set_new(h, "head", ot_head_to_json(head));
    for (int i = 0; i < ag->n_vars; i++) {
        const ot_value *v = &g->values[ag->var_vid[i]];
        json_t *t = json_object();
        json_object_set_new(t, "name", json_string(v->name));
        json_object_set_new(t, "numel", json_integer((json_int_t)(v->init.nbytes / sizeof(float))));
        json_array_append_new(tl, t);
    }
    json_object_set_new(h, "tensors", tl);
    bool have[CP_N];
    for (int cp = 0; cp < CP_N; cp++) {
        have[cp] = cp == CP_GRAD ? grads : copy_src(cp, ag, ema, o) != NULL;
        if (have[cp]) json_array_append_new(copies, json_string(copy_name[cp]));
    }
    json_object_set_new(h, "copies", copies);
    if (ema) json_object_set_new(h, "ema_updates", json_integer(ema->updates));
    if (o) {
        json_t *oj = json_object(), *lr = json_array(), *ilr = json_array(), *mom = json_array(), *wd = json_array();
        for (int k = 0; k < OT_NGROUPS; k++) {
            json_array_append_new(lr, json_real(o->lr[k]));
            json_array_append_new(ilr, json_real(o->initial_lr[k]));
            json_array_append_new(mom, json_real(o->momentum[k]));
            json_array_append_new(wd, json_real(o->weight_decay[k]));
        }
        json_object_set_new(oj, "kind", json_string(ot_opt_name(o->kind)));
        json_object_set_new(oj, "steps", json_integer(o->steps));
        json_object_set_new(oj, "lr", lr);
        json_object_set_new(oj, "initial_lr", ilr);
        json_object_set_new(oj, "momentum", mom);
        json_object_set_new(oj, "weight_decay", wd);
        json_object_set_new(h, "optimizer", oj);
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(h);
    if (!hs) { free(onnx); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }

    wbuf b = {0};
    put(&b, CK_MAGIC, 8);
    put_u64(&b, strlen(hs));
    put(&b, hs, strlen(hs));
    put_u64(&b, onnx_len);
    put(&b, onnx, onnx_len);
    free(hs);
    free(onnx);
    float *host = malloc(sizeof(float) * (ag->slab_floats + 1)); /* each backend slab copied once */
    if (!host) b.oom = true;
    for (int cp = 0; cp < CP_N && host; cp++) {
        if (!have[cp]) continue;
        ot_be_download(ag->be, host, copy_src(cp, ag, ema, o), sizeof(float) * ag->slab_floats);
        for (int i = 0; i < ag->n_vars; i++)
            put(&b, host + ag->var_off[i], g->values[ag->var_vid[i]].init.nbytes);
    }
    free(host);
    if (!b.oom) put_u64(&b, fnv1a(b.p, b.n));
    put(&b, CK_END, 8);
    ot_status st = b.oom ? ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path) : ot_file_write_atomic(path, b.p, b.n, err);
    free(b.p);
    return st;
}

/* ---- load ---- */
void ot_ckpt_free(ot_ckpt *c) {
    if (!c) return;
    json_decref(c->header);
    free(c->model);
    free(c->file);
    free(c->path);
    free(c);
}

static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

ot_status ot_ckpt_load(const char *path, ot_ckpt **out, ot_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open checkpoint (%s)", path, strerror(errno));
    ot_ckpt *c = calloc(1, sizeof *c);
    if (!c) { fclose(f); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
    c->path = ot_strdup(path);
    size_t n = 0;
    ot_status st = OT_OK;
    if (fseeko(f, 0, SEEK_END) != 0 || (n = (size_t)ftello(f), fseeko(f, 0, SEEK_SET) != 0))
        st = ot_fail(err, OT_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    if (!st && !(c->file = malloc(n ? n : 1))) st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path);
    if (!st && fread(c->file, 1, n, f) != n) st = ot_fail(err, OT_ERR_IO, "%s: short read", path);
    fclose(f);
    const uint8_t *p = c->file;
    if (!st && (n < 40 || memcmp(p, CK_MAGIC, 8) != 0))
        st = ot_fail(err, OT_ERR_PARSE, "%s: not an onnx-train checkpoint (expected the OTCKPT01 header)", path);
    if (!st && memcmp(p + n - 8, CK_END, 8) != 0)
        st = ot_fail(err, OT_ERR_PARSE, "%s: truncated checkpoint (no end marker; was the write interrupted?)", path);
    if (!st && get_u64(p + n - 16) != fnv1a(p, n - 16))
        st = ot_fail(err, OT_ERR_PARSE, "%s: checkpoint checksum mismatch (the file is damaged)", path);
    size_t off = 8, hl = 0, ml = 0;
    if (!st) {
        hl = (size_t)get_u64(p + off);
        off += 8;
        if (hl > n - 16 - off) st = ot_fail(err, OT_ERR_PARSE, "%s: bad header length", path);
    }
    if (!st) {
        json_error_t je;
        c->header = json_loadb((const char *)p + off, hl, 0, &je);
        if (!c->header || !json_is_object(c->header)) st = ot_fail(err, OT_ERR_PARSE, "%s: bad header JSON (%s)", path, je.text);
        off += hl;
    }
    if (!st) {
        ml = (size_t)get_u64(p + off);
        off += 8;
        if (ml > n - 16 - off) st = ot_fail(err, OT_ERR_PARSE, "%s: bad model length", path);
    }
    if (!st && !(c->model = malloc(ml ? ml : 1))) st = ot_fail(err, OT_ERR_NOMEM, "out of memory");
    if (!st) {
        memcpy(c->model, p + off, ml);
        c->model_len = ml;
        off += ml;
        c->tensors = p + off;
        c->tensors_len = n - 16 - off;
        json_t *tl = json_object_get(c->header, "tensors"), *cps = json_object_get(c->header, "copies");
        size_t need = 0;
        for (size_t i = 0; json_is_array(tl) && i < json_array_size(tl); i++)
            need += (size_t)json_integer_value(json_object_get(json_array_get(tl, i), "numel")) * sizeof(float);
        if (!json_is_array(tl) || !json_is_array(cps) || need * json_array_size(cps) != c->tensors_len)
            st = ot_fail(err, OT_ERR_PARSE, "%s: tensor section does not match the header", path);
    }
    if (st) { ot_ckpt_free(c); return st; }
    *out = c;
    return OT_OK;
}

ot_status ot_ckpt_graph(const ot_ckpt *c, ot_graph **g, ot_error *err) {
    ot_model *m;
    OT_TRY(ot_model_load_buffer(c->model, c->model_len, ".", c->path, &m, err));
    ot_status st = ot_head_from_json(json_object_get(c->header, "head"), &m->head, err);
    if (!st && m->head.nl != m->n_outputs)
        st = ot_fail(err, OT_ERR_PARSE, "%s: the model has %d outputs but the head %d layers", c->path, m->n_outputs, m->head.nl);
    if (st) { ot_model_destroy(m); return st; }
    *g = m;
    return OT_OK;
}

/* Find the stored copy `which` of tensor `name`: pointer and element count. */
static const uint8_t *find_copy(const ot_ckpt *c, const char *which, const char *name, int64_t *numel) {
    json_t *tl = json_object_get(c->header, "tensors"), *cps = json_object_get(c->header, "copies");
    size_t per = 0;
    for (size_t i = 0; i < json_array_size(tl); i++)
        per += (size_t)json_integer_value(json_object_get(json_array_get(tl, i), "numel")) * sizeof(float);
    for (size_t k = 0; k < json_array_size(cps); k++) {
        if (strcmp(json_string_value(json_array_get(cps, k)) ? json_string_value(json_array_get(cps, k)) : "", which) != 0) continue;
        size_t off = k * per;
        for (size_t i = 0; i < json_array_size(tl); i++) {
            json_t *t = json_array_get(tl, i);
            int64_t ne = json_integer_value(json_object_get(t, "numel"));
            const char *nm = json_string_value(json_object_get(t, "name"));
            if (nm && strcmp(nm, name) == 0) {
                *numel = ne;
                return c->tensors + off; /* possibly unaligned: read with memcpy */
            }
            off += (size_t)ne * sizeof(float);
        }
    }
    return NULL;
}

static ot_status restore_copy(const ot_ckpt *c, const char *which, const ot_autograd *ag, float *dst, bool required,
                              ot_error *err) {
    for (int i = 0; i < ag->n_vars; i++) {
        const ot_value *v = &ag->g->values[ag->var_vid[i]];
        int64_t ne = 0;
        const uint8_t *src = find_copy(c, which, v->name, &ne);
        if (!src) {
            if (!required) return OT_OK;
            return ot_fail(err, OT_ERR_INVALID, "%s: no '%s' copy of tensor '%s'", c->path, which, v->name);
        }
        if (ne != ot_numel(&ag->p->shape[ag->var_vid[i]]))
            return ot_fail(err, OT_ERR_SHAPE, "%s: tensor '%s' has %lld elements, the model wants %lld", c->path, v->name,
                           (long long)ne, (long long)ot_numel(&ag->p->shape[ag->var_vid[i]]));
        ot_be_upload(ag->be, dst + ag->var_off[i], src, (size_t)ne * sizeof(float));
    }
    return OT_OK;
}

static bool has_copy(const ot_ckpt *c, const char *which) {
    json_t *cps = json_object_get(c->header, "copies");
    for (size_t k = 0; k < json_array_size(cps); k++)
        if (json_string_value(json_array_get(cps, k)) && strcmp(json_string_value(json_array_get(cps, k)), which) == 0) return true;
    return false;
}

ot_status ot_ckpt_restore(const ot_ckpt *c, ot_autograd *ag, ot_ema *ema, ot_optimizer *o, ot_error *err) {
    /* model variables: the graph's initializers were loaded into ag->slab by ot_autograd_create */
    if (ema) {
        if (!has_copy(c, "ema")) return ot_fail(err, OT_ERR_INVALID, "%s: checkpoint has no EMA", c->path);
        OT_TRY(restore_copy(c, "ema", ag, ema->slab, true, err));
        ema->updates = (long)json_integer_value(json_object_get(c->header, "ema_updates"));
    }
    if (o) {
        json_t *oj = json_object_get(c->header, "optimizer");
        const char *kind = json_string_value(json_object_get(oj, "kind"));
        if (!oj || !kind || strcmp(kind, ot_opt_name(o->kind)) != 0)
            return ot_fail(err, OT_ERR_INVALID, "%s: checkpoint optimizer is %s, the run uses %s", c->path, kind ? kind : "none",
                           ot_opt_name(o->kind));
        o->steps = (long)json_integer_value(json_object_get(oj, "steps"));
        for (int k = 0; k < OT_NGROUPS; k++) {
            o->lr[k] = json_number_value(json_array_get(json_object_get(oj, "lr"), (size_t)k));
            o->initial_lr[k] = json_number_value(json_array_get(json_object_get(oj, "initial_lr"), (size_t)k));
            o->momentum[k] = json_number_value(json_array_get(json_object_get(oj, "momentum"), (size_t)k));
            o->weight_decay[k] = json_number_value(json_array_get(json_object_get(oj, "weight_decay"), (size_t)k));
        }
        if (has_copy(c, "m1")) OT_TRY(restore_copy(c, "m1", ag, o->m1, true, err));
        if (o->m2 && has_copy(c, "m2")) OT_TRY(restore_copy(c, "m2", ag, o->m2, true, err));
    }
    ot_autograd_zero_grad(ag);
    if (has_copy(c, "grad")) OT_TRY(restore_copy(c, "grad", ag, ag->grad_slab, true, err));
    return OT_OK;
}

ot_status ot_ckpt_apply_ema(const ot_ckpt *c, ot_graph *g, ot_error *err) {
    if (!has_copy(c, "ema")) return ot_fail(err, OT_ERR_INVALID, "%s: checkpoint has no EMA weights", c->path);
    json_t *tl = json_object_get(c->header, "tensors");
    for (size_t i = 0; i < json_array_size(tl); i++) {
        const char *nm = json_string_value(json_object_get(json_array_get(tl, i), "name"));
        int v = nm ? ot_graph_find(g, nm) : -1;
        int64_t ne = 0;
        const uint8_t *src = nm ? find_copy(c, "ema", nm, &ne) : NULL;
        if (v < 0 || !src || !(g->values[v].flags & OT_V_INIT) || g->values[v].init.dtype != OT_F32 ||
            g->values[v].init.nbytes != (size_t)ne * sizeof(float))
            return ot_fail(err, OT_ERR_INVALID, "%s: EMA tensor '%s' does not match the model", c->path, nm ? nm : "?");
        memcpy(g->values[v].init.data, src, (size_t)ne * sizeof(float));
    }
    return OT_OK;
}

json_t *ot_source_json(const ot_graph *src, int train_img) {
    json_t *j = json_object(), *outs = json_array(), *meta = json_object();
    const ot_yolo_head *h = &src->head;
    ot_form f = h->form == OT_FORM_UNKNOWN ? OT_FORM_INFERENCE : h->form;
    json_object_set_new(j, "form", json_string(ot_form_name(f)));
    const ot_value *in = &src->values[src->inputs[0]];
    json_object_set_new(j, "input", json_string(in->name));
    int64_t b = in->shape.rank == 4 && in->shape.d[0] > 0 ? in->shape.d[0] : 1;
    int64_t ih = in->shape.rank == 4 && in->shape.d[2] > 0 ? in->shape.d[2] : train_img;
    int64_t iw = in->shape.rank == 4 && in->shape.d[3] > 0 ? in->shape.d[3] : train_img;
    json_object_set_new(j, "batch", json_integer(b));
    json_object_set_new(j, "img_h", json_integer(ih));
    json_object_set_new(j, "img_w", json_integer(iw));
    json_object_set_new(j, "opset", json_integer(src->opset));
    for (int k = 0; k < src->n_outputs; k++) json_array_append_new(outs, json_string(src->values[src->outputs[k]].name));
    json_object_set_new(j, "outputs", outs);
    for (int k = 0; k < src->n_meta; k++) json_object_set_new(meta, src->meta[k].key, json_string(src->meta[k].value));
    json_object_set_new(j, "meta", meta);
    return j;
}
