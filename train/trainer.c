/* trainer.c: the training loop of Ultralytics YOLOv5 v7.0 train.py (train/trainer.h). */
#include "trainer.h"
#include "../core/config.h"
#include "../core/dist.h"
#include "../kernels/device_kernels.h"
#include "../kernels/ops.h"
#include "amp.h"
#include "autoanchor.h"
#include "builtin.h"
#include "checkpoint.h"
#include "dataset.h"
#include "detector.h"
#include "draw.h"
#include "loader.h"
#include "loss.h"
#include "plots.h"
#include "prepare.h"
#include "schedule.h"
#include "validate.h"
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ot_train_opts_default(ot_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 100;
    o->batch = 16;
    o->img = 640;
    o->workers = 8;
    o->patience = 100;
    o->project = "runs/train";
    o->name = "exp";
    o->optimizer = OT_OPT_SGD;
    o->label_smoothing = -1;
    o->device = ""; /* the default device (core/backend.c: the first GPU when there is one, else the CPU) */
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* increment_path: project/name, else project/name2, name3, ... */
static void increment_path(const char *project, const char *name, bool exist_ok, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", project, name);
    if (exist_ok || !exists(out)) return;
    for (int k = 2; k < 100000; k++) {
        snprintf(out, cap, "%s/%s%d", project, name, k);
        if (!exists(out)) return;
    }
}

/* get_latest_run: the newest PROJECT/ * /weights/last.ckpt */
static bool latest_ckpt(const char *project, char *out, size_t cap) {
    DIR *d = opendir(project);
    if (!d) return false;
    struct dirent *e;
    time_t best = 0;
    bool found = false;
    char p[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s/weights/last.ckpt", project, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && (!found || st.st_mtime > best)) {
            best = st.st_mtime;
            snprintf(out, cap, "%s", p);
            found = true;
        }
    }
    closedir(d);
    return found;
}

static double rss_gb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / 1e9;
}

/* ---- the run's state ---- */
typedef struct run {
    ot_train_opts o;
    ot_hyp hyp;
    char save_dir[1024], wdir[1100];
    ot_data_cfg cfg;
    int nc;
    char **names;
    ot_dataset *train_ds, *val_ds;
    ot_loader *train_ld, *val_ld;
    ot_graph *g;              /* training graph */
    json_t *source;           /* the model trained from (for export) */
    ot_backend *be;           /* --device: owns every buffer of the run */
    ot_autograd *ag;          /* full batches */
    ot_autograd *alt;         /* another batch shape (short last batch, rect), sharing ag's variables */
    ot_shape alt_shape;
    /* A device with memory of its own (CUDA): the next batch is uploaded on the copy stream into one of two
     * staging buffers while the current step runs, and copied into the plan's input on the compute stream after
     * an event (train_epoch). */
    float *stage[2];
    size_t stage_bytes;
    ot_event stage_ev[2];
    int stage_k;
    struct grad_buckets *gb;  /* ranks > 1 on a device with a collective (CUDA): the gradient buckets */
    const struct ot_allreduce_kernels *comm_k; /* and their communicator (also SyncBatchNorm's), made once */
    struct {                  /* CUDA graphs of the full-batch plan's steps (step_graphs_usable) */
        ot_be_graph *pass[2][2]; /* [bucketed][k]: staging buffer k copied into the plan's input, forward, loss,
                                  * backward (bucketed: with the gradient sums over the ranks) */
        ot_be_graph *step;    /* unscale, clip, optimizer step with the EMA, GradScaler update, gradients zeroed */
        bool warm[2], step_warm; /* a plain pass [bucketed] / a plain optimizer step has run (lazy allocations,
                                  * events and the collectives' first calls done) */
        bool failed, told;    /* a capture failed (plain launches from then on); the capture was announced */
        unsigned loss_gen;    /* the loss tables' generation the graphs were captured with */
    } gr;
    const ot_batch *cur;      /* the batch of the step being queued (step_pass) and its iteration */
    long cur_ni;
    ot_amp_mode amp;          /* --amp, resolved for the device */
    bool amp_from_ckpt;       /* --resume without --amp: the checkpoint's mode */
    ot_scaler *scaler;        /* fp16: GradScaler */
    struct ot_allreduce *comm;
    ot_yolo_loss *loss;
    ot_yolo_loss_cfg lcfg;
    ot_optimizer *opt;
    ot_ema *ema;
    ot_schedule sch;
    ot_detector *det;
    int start_epoch, best_epoch;
    double best_fitness;
    long last_opt_step;
    FILE *loss_log;
    bool tty;
    bool bar_open;            /* tty: the progress bar's line is unfinished (a message starts a new line) */
    int rank, world;          /* data-parallel ranks (core/dist.h); rank 0 logs, validates and saves */
    char *own[2];             /* option strings read from a checkpoint */
    ot_ckpt *ck;              /* the checkpoint resumed from; NULL for a fresh run */
    int batch_local;          /* images a rank takes per batch: --batch-size / world */
    int gs;                   /* grid size: the largest head stride, at least 32 */
    int64_t nb;               /* batches per epoch */
    double wd;                /* the optimizer's weight decay */
    unsigned char *frozen;    /* per variable: 1 when --freeze holds it */
    double t_start;           /* when the first epoch began */
    int epoch;                /* the epoch being trained; after the loop, one past the last one done */
    double mloss[3];          /* this epoch's mean box, obj, cls losses */
    double lr[3];             /* the groups' learning rates at the end of this epoch */
    double results[7];        /* the latest validation: P, R, mAP50, mAP50-95, val box, obj, cls */
    double fitness;           /* this epoch's fitness: 0.1 mAP50 + 0.9 mAP50-95 */
    bool best;                /* this epoch's fitness is the best so far */
    bool stop;                /* EarlyStopping: no more epochs */
    struct {                  /* the test hooks, read once at setup (test_hooks_read) */
        const char *loss_log; /* ONNXT_LOSS_LOG: the file the per-batch losses are appended to */
        int kill_epoch, kill_batch; /* ONNXT_TEST_KILL_AT "E:I"; -1 when unset */
        bool kill_any_rank;   /* ONNXT_TEST_KILL_RANK unset: every rank dies */
        int kill_rank;        /* ONNXT_TEST_KILL_RANK: only this rank dies */
        bool hang;            /* ONNXT_TEST_HANG: the rank hangs instead of dying */
        int kill_ckpt_epoch;  /* ONNXT_TEST_KILL_IN_CKPT: the epoch whose last.ckpt is left half written; -1 when unset */
        long amp_inf;         /* ONNXT_TEST_AMP_INF: the iteration whose step gets a planted +inf gradient; -1 unset */
    } test;
} run;

/* ---- test hooks: every switch the tests pull, read here and nowhere else ---- */
static void test_hooks_read(run *r) {
    const ot_config *c = ot_config_get(); /* core/config.h reads every switch, docs/ENVIRONMENT.md lists them */
    r->test.loss_log = c->loss_log;
    r->test.kill_epoch = c->test_kill_epoch;
    r->test.kill_batch = c->test_kill_iter;
    r->test.kill_any_rank = c->test_kill_rank < 0;
    r->test.kill_rank = c->test_kill_rank;
    r->test.hang = c->test_hang;
    r->test.kill_ckpt_epoch = c->test_kill_in_ckpt;
    r->test.amp_inf = c->test_amp_inf;
}

/* Before batch i of an epoch: the process dies (or hangs) where ONNXT_TEST_KILL_AT says. */
static void test_kill_point(const run *r, int epoch, int64_t i) {
    if (epoch != r->test.kill_epoch || i != r->test.kill_batch) return;
    if (!r->test.kill_any_rank && r->test.kill_rank != r->rank) return;
    if (r->test.hang) for (;;) pause();
    raise(SIGKILL);
}

static void grad_buckets_free(struct grad_buckets *gb);

/* The step's CUDA graphs freed (before the memory they address is). */
static void graphs_drop(run *r) {
    for (int k = 0; k < 4; k++) { ot_be_graph_free(r->be, r->gr.pass[k / 2][k % 2]); r->gr.pass[k / 2][k % 2] = NULL; }
    ot_be_graph_free(r->be, r->gr.step);
    r->gr.step = NULL;
}

static void run_free(run *r) {
    ot_detector_destroy(r->det);
    ot_ema_destroy(r->ema);
    ot_optimizer_destroy(r->opt);
    ot_yolo_loss_destroy(r->loss);
    ot_scaler_destroy(r->scaler);
    ot_autograd_destroy(r->alt);
    ot_autograd_destroy(r->ag);
    if (r->be) {
        ot_be_sync(r->be);
        graphs_drop(r);
        ot_be_free(r->be, r->stage[0]);
        ot_be_free(r->be, r->stage[1]);
    }
    grad_buckets_free(r->gb);
    if (r->comm) r->comm_k->destroy(r->comm);
    ot_graph_destroy(r->g);
    ot_loader_destroy(r->train_ld);
    ot_loader_destroy(r->val_ld);
    ot_dataset_destroy(r->train_ds);
    ot_dataset_destroy(r->val_ds);
    ot_ckpt_free(r->ck);
    free(r->frozen);
    if (r->names) {
        for (int i = 0; i < r->nc; i++) free(r->names[i]);
        free(r->names);
    }
    ot_data_cfg_free(&r->cfg);
    json_decref(r->source);
    if (r->loss_log) fclose(r->loss_log);
    free(r->own[0]);
    free(r->own[1]);
}

/* ---- arguments <-> JSON (the checkpoint keeps them for --resume) ---- */
static json_t *args_json(const run *r) {
    const ot_train_opts *o = &r->o;
    json_t *j = json_object(), *h = json_object();
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "data", json_string(o->data));
    json_object_set_new(j, "epochs", json_integer(o->epochs));
    json_object_set_new(j, "batch_size", json_integer(o->batch));
    json_object_set_new(j, "imgsz", json_integer(o->img));
    json_object_set_new(j, "workers", json_integer(o->workers));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "patience", json_integer(o->patience));
    json_object_set_new(j, "freeze", json_integer(o->freeze));
    json_object_set_new(j, "save_dir", json_string(r->save_dir));
    json_object_set_new(j, "cache_ram", json_boolean(o->cache_ram));
    json_object_set_new(j, "noval", json_boolean(o->noval));
    json_object_set_new(j, "nosave", json_boolean(o->nosave));
    json_object_set_new(j, "cos_lr", json_boolean(o->cos_lr));
    json_object_set_new(j, "rect", json_boolean(o->rect));
    json_object_set_new(j, "single_cls", json_boolean(o->single_cls));
    json_object_set_new(j, "noplots", json_boolean(o->noplots));
    json_object_set_new(j, "sync_bn", json_boolean(o->sync_bn));
    json_object_set_new(j, "amp", json_string(ot_amp_name(r->amp)));
    json_object_set_new(j, "optimizer", json_string(ot_opt_name(o->optimizer)));
    for (int i = 0; i < ot_hyp_count(); i++) json_object_set_new(h, ot_hyp_name(i), json_real(ot_hyp_get(&r->hyp, i)));
    json_object_set_new(j, "hyp", h);
    return j;
}


static ot_status args_from_json(run *r, const json_t *j, ot_error *err) {
    ot_train_opts *o = &r->o;
    if (!json_is_object(j)) return ot_fail(err, OT_ERR_PARSE, "checkpoint has no run arguments");
    o->model = r->own[0] = ot_strdup(json_string_value(json_object_get(j, "model")) ? json_string_value(json_object_get(j, "model")) : "");
    o->data = r->own[1] = json_string_value(json_object_get(j, "data")) ? ot_strdup(json_string_value(json_object_get(j, "data"))) : NULL;
    o->epochs = (int)json_integer_value(json_object_get(j, "epochs"));
    o->batch = (int)json_integer_value(json_object_get(j, "batch_size"));
    o->img = (int)json_integer_value(json_object_get(j, "imgsz"));
    o->seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
    o->patience = (int)json_integer_value(json_object_get(j, "patience"));
    o->freeze = (int)json_integer_value(json_object_get(j, "freeze"));
    o->cache_ram = json_is_true(json_object_get(j, "cache_ram"));
    o->noval = json_is_true(json_object_get(j, "noval"));
    o->nosave = json_is_true(json_object_get(j, "nosave"));
    o->cos_lr = json_is_true(json_object_get(j, "cos_lr"));
    o->rect = json_is_true(json_object_get(j, "rect"));
    o->single_cls = json_is_true(json_object_get(j, "single_cls"));
    o->noplots = json_is_true(json_object_get(j, "noplots"));
    o->sync_bn = json_is_true(json_object_get(j, "sync_bn"));
    ot_amp_mode am;
    if (!o->amp && ot_amp_parse(json_string_value(json_object_get(j, "amp")), &am)) { /* --amp wins */
        o->amp = ot_amp_name(am);
        r->amp_from_ckpt = true;
    }
    const char *opt = json_string_value(json_object_get(j, "optimizer"));
    o->optimizer = opt && strcmp(opt, "Adam") == 0 ? OT_OPT_ADAM : opt && strcmp(opt, "AdamW") == 0 ? OT_OPT_ADAMW : OT_OPT_SGD;
    const char *sd = json_string_value(json_object_get(j, "save_dir"));
    if (!o->data || !sd || o->epochs < 1 || o->batch < 1 || o->img < 32)
        return ot_fail(err, OT_ERR_PARSE, "checkpoint run arguments are incomplete");
    snprintf(r->save_dir, sizeof r->save_dir, "%s", sd);
    json_t *h = json_object_get(j, "hyp");
    ot_hyp_default(&r->hyp);
    for (int i = 0; i < ot_hyp_count(); i++) {
        json_t *v = json_object_get(h, ot_hyp_name(i));
        if (json_is_number(v)) ot_hyp_set(&r->hyp, i, json_number_value(v));
    }
    return OT_OK;
}

/* ---- model ---- */
static ot_status reset_head(run *r, ot_error *err) {
    ot_graph *g = r->g;
    ot_yolo_head *h = &g->head;
    int no = r->nc + 5;
    uint64_t s = r->o.seed * 0x9E3779B97F4A7C15ull + 12345;
    for (int l = 0; l < h->nl; l++) {
        int out = g->outputs[l];
        int pn = g->values[out].producer;
        if (pn < 0 || strcmp(g->nodes[pn].op_type, "Conv") != 0 || g->nodes[pn].n_in < 3)
            return ot_fail(err, OT_ERR_UNSUPPORTED, "--reset-head: head layer %d is not a Conv with a bias", l);
        ot_node *n = &g->nodes[pn];
        ot_value *wv = &g->values[n->in[1]], *bv = &g->values[n->in[2]];
        int64_t cin = wv->init.shape.d[1], m = (int64_t)h->na * no;
        float *w = malloc(sizeof(float) * (size_t)(m * cin)), *b = malloc(sizeof(float) * (size_t)m);
        if (!w || !b) { free(w); free(b); return ot_fail(err, OT_ERR_NOMEM, "out of memory"); }
        double bound = 1.0 / sqrt((double)cin);
        for (int64_t i = 0; i < m * cin + m; i++) {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27; /* xorshift64* */
            double u = (double)((s * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
            float v = (float)((2 * u - 1) * bound);
            if (i < m * cin) w[i] = v; else b[i - m * cin] = v;
        }
        /* Detect._initialize_biases */
        double st = (double)h->stride[l];
        for (int a = 0; a < h->na; a++) {
            b[a * no + 4] += (float)log(8.0 / ((640.0 / st) * (640.0 / st)));
            for (int c = 0; c < r->nc; c++) b[a * no + 5 + c] += (float)log(0.6 / ((double)r->nc - 0.99));
        }
        ot_const_free(&wv->init);
        ot_const_free(&bv->init);
        wv->init = (ot_const){OT_F32, {4, {m, cin, 1, 1}}, w, sizeof(float) * (size_t)(m * cin)};
        wv->shape = wv->init.shape;
        bv->init = (ot_const){OT_F32, {1, {m}}, b, sizeof(float) * (size_t)m};
        bv->shape = bv->init.shape;
        g->values[out].shape.rank = -1;
    }
    h->nc = r->nc;
    return OT_OK;
}

static ot_status load_model(run *r, const ot_ckpt *resume, ot_error *err) {
    const ot_train_opts *o = &r->o;
    if (resume) {
        OT_TRY(ot_ckpt_graph(resume, &r->g, err));
        r->source = json_incref(json_object_get(resume->header, "source"));
        return OT_OK;
    }
    size_t ml = strlen(o->model);
    if (ml > 5 && strcmp(o->model + ml - 5, ".ckpt") == 0) { /* fine-tune from a checkpoint's EMA weights */
        ot_ckpt *c;
        OT_TRY(ot_ckpt_load(o->model, &c, err));
        ot_status st = ot_ckpt_graph(c, &r->g, err);
        if (!st) st = ot_ckpt_apply_ema(c, r->g, err);
        if (!st) r->source = json_incref(json_object_get(c->header, "source"));
        ot_ckpt_free(c);
        if (st) return st;
    } else {
        ot_model *m = NULL;
        if (ot_builtin_known(o->model)) {
            uint8_t *buf;
            size_t len;
            OT_TRY(ot_builtin_onnx(o->model, r->nc, o->img, o->seed, (const char *const *)r->names, &buf, &len, err));
            ot_status st = ot_model_load_buffer(buf, len, ".", o->model, &m, err);
            free(buf);
            if (st) return st;
        } else {
            if (!exists(o->model) && !strchr(o->model, '/') && !strchr(o->model, '.'))
                return ot_fail(err, OT_ERR_IO, "--model %s: no such file, and not a built-in size (yolov5n, yolov5s, yolov5m, yolov5l, yolov5x)",
                               o->model);
            OT_TRY(ot_model_load(o->model, &m, err));
        }
        if (!m->head.found) {
            ot_model_destroy(m);
            return ot_fail(err, OT_ERR_INVALID, "%s: no YOLOv5 Detect head found (see onnx-train info)", o->model);
        }
        r->source = ot_source_json(m, o->img);
        ot_prepare_opts po = {.no_bn = o->no_bn};
        ot_status st = ot_prepare_training_graph(m, &po, &r->g, err);
        ot_model_destroy(m);
        if (st) return st;
    }
    if (r->g->head.nc != r->nc) {
        if (!o->reset_head)
            return ot_fail(err, OT_ERR_INVALID,
                           "%s has %d classes but %s has %d; train on matching data, or add --reset-head to start new "
                           "detection layers for %d classes",
                           o->model, r->g->head.nc, o->data, r->nc, r->nc);
        OT_TRY(reset_head(r, err));
    }
    return OT_OK;
}

/* ---- the trainer's direct reads and writes of the slabs ---- */
/* The head's outputs after a forward pass, their shapes, and the buffers their loss gradients go to. */
static void head_outputs(const run *r, ot_autograd *ag, const float **outs, ot_shape *shapes, float **douts) {
    for (int l = 0; l < r->g->n_outputs; l++) {
        outs[l] = ag->p->data[r->g->outputs[l]];
        shapes[l] = ag->p->shape[r->g->outputs[l]];
        douts[l] = ot_autograd_output_grad(ag, l);
    }
}

/* --freeze: the frozen variables' gradients set to zero. */
static void grads_freeze(run *r) {
    for (int k = 0; k < r->ag->n_vars; k++)
        if (r->frozen[k])
            ot_be_memset(r->be, r->ag->grad_slab + r->ag->var_off[k], 0, sizeof(float) * (size_t)ot_numel(&r->ag->p->shape[r->ag->var_vid[k]]));
}

/* ---- gradients over the ranks on a device with a collective (CUDA): buckets overlapped with the backward ----
 * The gradient slab is cut at variable boundaries into contiguous buckets of about ONNXT_BUCKET_MB (default 25,
 * DDP's bucket_cap_mb), from the slab's end: the slab follows the graph's order, so its last tensors are the
 * first the backward finishes. The autograd says when each variable's gradient is final
 * (ot_autograd_set_grad_ready); once every variable of bucket `next` is, an event on the compute stream and
 * that bucket's sum on the comm stream after it. Buckets go in index order, the same on every rank. After the
 * backward the compute stream waits for an event behind the last sum; the host waits (with the deadline) only
 * before it reads the step's loss items. The CPU devices keep one ot_dist_sum_f32_on after the backward. */
typedef struct grad_buckets {
    const ot_allreduce_kernels *k;
    ot_allreduce *c;         /* the run's communicator (run.comm), not owned */
    int n, next;             /* buckets; the next one to enqueue */
    size_t *off, *len;       /* per bucket: its floats in the gradient slab */
    int *vars, *left;        /* per bucket: its variables; those not final yet in this backward */
    int *of_var;             /* per variable: its bucket */
    ot_event ready, done;    /* compute stream -> a bucket's sum; the last sum -> compute stream */
    bool active, pending;    /* this backward enqueues sums (hooks set); sums not yet waited for by the host */
    bool bucketed;           /* this step's gradients were summed by buckets (until its optimizer step) */
    ot_status st;            /* the first sum that failed in this backward */
    ot_error err;
} grad_buckets;

static void grad_buckets_free(grad_buckets *gb) {
    if (!gb) return;
    free(gb->off); free(gb->len); free(gb->vars); free(gb->left); free(gb->of_var);
    free(gb);
}

/* Ranks > 1 on a device whose tables have an all-reduce. */
static const ot_allreduce_kernels *device_allreduce(const run *r) {
    if ((r->world <= 1 && !ot_config_get()->device_allreduce) || r->be->kind != OT_DEV_CUDA) return NULL;
    const ot_device_kernels *t = ot_device_kernels_get(r->be->kind);
    return t ? t->allreduce : NULL;
}

/* The run's device communicator (collective on first use: every rank reaches it at the same point). */
static ot_status device_comm(run *r, const ot_allreduce_kernels *k, ot_error *err) {
    if (r->comm) return OT_OK;
    OT_TRY(k->create(r->be, &r->comm, err));
    r->comm_k = k;
    return OT_OK;
}

/* SyncBatchNorm's statistics summed on the device, on the compute stream (core/plan.h bn_dev_sum). */
static ot_status bn_dev_sum(void *ctx, double *dev, int64_t n, ot_error *err) {
    run *r = ctx;
    return r->comm_k->sum_f64(r->comm, dev, n, OT_STREAM_COMPUTE, err);
}

/* The bucket plan over ag's slab (every autograd of the run shares its layout) and the communicator. */
static ot_status grad_buckets_make(run *r, const ot_allreduce_kernels *k, ot_error *err) {
    const ot_autograd *ag = r->ag;
    int nv = ag->n_vars;
    grad_buckets *gb = calloc(1, sizeof *gb);
    size_t m = (size_t)(nv ? nv : 1);
    if (gb) {
        gb->off = malloc(sizeof(size_t) * m); gb->len = malloc(sizeof(size_t) * m);
        gb->vars = calloc(m, sizeof(int)); gb->left = malloc(sizeof(int) * m); gb->of_var = malloc(sizeof(int) * m);
    }
    if (!gb || !gb->off || !gb->len || !gb->vars || !gb->left || !gb->of_var) {
        grad_buckets_free(gb);
        return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    }
    gb->k = k;
    double mb = ot_config_get()->bucket_mb; /* ONNXT_BUCKET_MB */
    size_t cap = (size_t)(mb * 1048576.0 / sizeof(float));
    if (cap < 1) cap = 1;
    size_t hi = ag->slab_floats;
    for (int v = nv - 1; v >= 0; v--) { /* var_off[0] == 0: the buckets cover the whole slab, gaps included */
        gb->of_var[v] = gb->n;
        gb->vars[gb->n]++;
        size_t lo = ag->var_off[v];
        if (hi - lo >= cap || v == 0) {
            gb->off[gb->n] = lo;
            gb->len[gb->n] = hi - lo;
            gb->n++;
            hi = lo;
        }
    }
    ot_status st = device_comm(r, k, err); /* collective: every rank reaches its first step together */
    if (st) { grad_buckets_free(gb); return st; }
    gb->c = r->comm;
    r->gb = gb;
    if (r->rank == 0 && !r->o.quiet)
        printf("DDP: %d rank%s, gradients all-reduced in %d bucket%s of <= %g MB overlapped with the backward on %s\n", r->world,
               r->world == 1 ? "" : "s", gb->n, gb->n == 1 ? "" : "s", mb, r->be->name);
    return OT_OK;
}

/* The backward has written the last of variable v's gradient: enqueue the buckets now complete, in order. */
static void grad_ready(void *ctx, int v) {
    run *r = ctx;
    grad_buckets *gb = r->gb;
    gb->left[gb->of_var[v]]--;
    while (gb->next < gb->n && gb->left[gb->next] == 0) {
        int b = gb->next++;
        ot_be_record(r->be, OT_STREAM_COMPUTE, &gb->ready);
        ot_be_wait(r->be, OT_STREAM_COMM, &gb->ready);
        ot_status st = gb->k->sum_f32(gb->c, r->ag->grad_slab + gb->off[b], (int64_t)gb->len[b], OT_STREAM_COMM,
                                      gb->st ? NULL : &gb->err);
        if (st && !gb->st) gb->st = st;
        gb->pending = true;
    }
}

/* Before a backward: when it ends with an optimizer step on a device with a collective, its gradients are
 * summed bucket by bucket as the backward finishes them. */
static ot_status grads_allreduce_begin(run *r, ot_autograd *ag, bool stepping, ot_error *err) {
    const ot_allreduce_kernels *k = stepping ? device_allreduce(r) : NULL;
    if (k && !r->gb) OT_TRY(grad_buckets_make(r, k, err));
    grad_buckets *gb = k ? r->gb : NULL;
    if (r->gb) r->gb->active = r->gb->bucketed = gb != NULL;
    if (!gb) { ot_autograd_set_grad_ready(ag, NULL, NULL); return OT_OK; }
    for (int b = 0; b < gb->n; b++) gb->left[b] = gb->vars[b];
    gb->next = 0;
    gb->st = OT_OK;
    ot_autograd_set_grad_ready(ag, grad_ready, r);
    return OT_OK;
}

/* The gradients summed over the ranks, in place (DDP: loss * world, gradients averaged), and the frozen ones
 * zeroed: bucketed, the pass already summed them (its compute stream waited for the last bucket); otherwise
 * zero, then one sum over the whole slab (through the host on a device without a collective). */
static void grads_allreduce(run *r) {
    grads_freeze(r);
    if (r->gb && r->gb->bucketed) { /* summed by the pass's buckets (grads_allreduce_join) */
        r->gb->bucketed = false;
        return;
    }
    ot_dist_sum_f32_on(r->be, r->ag->grad_slab, (int64_t)r->ag->slab_floats);
}

/* After a bucketed backward (in the pass, so that a captured pass ends with every stream joined): the compute
 * stream waits for the last bucket's sum. */
static ot_status grads_allreduce_join(run *r, ot_autograd *ag, ot_error *err) {
    grad_buckets *gb = r->gb;
    if (!gb || !gb->active) return OT_OK;
    ot_autograd_set_grad_ready(ag, NULL, NULL);
    gb->active = false;
    if (gb->st) { *err = gb->err; return gb->st; }
    if (gb->next != gb->n)
        return ot_fail(err, OT_ERR_INTERNAL, "gradient buckets: %d of %d enqueued after the backward", gb->next, gb->n);
    ot_be_record(r->be, OT_STREAM_COMM, &gb->done);
    ot_be_wait(r->be, OT_STREAM_COMPUTE, &gb->done);
    return OT_OK;
}

/* The host waits for the step's sums (the peers' errors and ONNXT_DIST_TIMEOUT polled) before it waits for the
 * step itself. The compute stream has waited for the sums (grads_allreduce_join), in a replayed graph too. */
static ot_status grads_allreduce_wait(run *r, ot_error *err) {
    if (!r->gb || !r->gb->pending) return OT_OK;
    r->gb->pending = false;
    return r->gb->k->wait(r->gb->c, OT_STREAM_COMPUTE, err);
}

/* Ranks > 1 with gradients pending (accumulated, not yet stepped): the checkpoint keeps their sum over the ranks.
 * grads_swap_summed puts a summed copy in the place of this rank's gradients and returns this rank's own in
 * *local (NULL when nothing was swapped); grads_swap_back puts them back and frees the copy. */
static ot_status grads_swap_summed(run *r, bool pending, float **local, ot_error *err) {
    *local = NULL;
    if (!pending || r->world <= 1) return OT_OK;
    float *sum = ot_be_alloc(r->be, sizeof(float) * r->ag->slab_floats);
    if (!sum) return ot_fail(err, OT_ERR_NOMEM, "out of memory on %s", r->be->name);
    ot_be_copy(r->be, sum, r->ag->grad_slab, sizeof(float) * r->ag->slab_floats);
    ot_dist_sum_f32_on(r->be, sum, (int64_t)r->ag->slab_floats);
    *local = r->ag->grad_slab;
    r->ag->grad_slab = sum;
    return OT_OK;
}

static void grads_swap_back(run *r, float *local) {
    if (!local) return;
    ot_be_free(r->be, r->ag->grad_slab);
    r->ag->grad_slab = local;
}

/* The detector reads the EMA's weights where they are, in the EMA slab. */
static void detector_bind_ema(run *r) {
    for (int i = 0; i < r->ag->n_vars; i++) ot_detector_set_var(r->det, r->ag->var_vid[i], r->ema->slab + r->ag->var_off[i]);
}

/* ---- the autograd for a batch's shape (full batches, or a short or rect one) ---- */
static ot_status get_autograd(run *r, const ot_batch *b, ot_autograd **out, ot_error *err) {
    ot_shape s = {4, {b->n, 3, b->h, b->w}};
    if (ot_shape_eq(&r->ag->p->shape[r->g->inputs[0]], &s)) { *out = r->ag; return OT_OK; }
    if (!r->alt || !ot_shape_eq(&r->alt_shape, &s)) {
        ot_autograd_destroy(r->alt);
        r->alt = NULL;
        OT_TRY(ot_autograd_create_on(r->be, r->g, &s, r->ag->kind, false, &r->alt, err));
        OT_TRY(ot_autograd_share_vars(r->alt, r->ag, err)); /* weights, gradients and the BatchNorm sync */
        r->alt_shape = s;
    }
    *out = r->alt;
    return OT_OK;
}

/* ---- validation of the EMA weights ---- */
typedef struct val_ctx {
    run *r;
    ot_confusion *cm;
    int pictures;             /* batches to draw */
    float *rows;              /* prediction rows for the batch being drawn */
    int64_t nrows, cap;
    int64_t batch;
} val_ctx;

static ot_status on_val_image(void *ctx, const ot_batch *b, int i, const ot_det *dets, int nd, const float *labels, int nl,
                              ot_error *err) {
    val_ctx *v = ctx;
    if (v->cm) {
        float *dd = malloc(sizeof(float) * 6 * (size_t)(nd ? nd : 1));
        if (!dd) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        for (int k = 0; k < nd; k++) {
            float *q = dd + 6 * k;
            q[0] = dets[k].x1; q[1] = dets[k].y1; q[2] = dets[k].x2; q[3] = dets[k].y2; q[4] = dets[k].conf; q[5] = (float)dets[k].cls;
        }
        ot_confusion_process_batch(v->cm, dd, nd, labels, nl);
        free(dd);
    }
    if (b->index >= v->pictures) return OT_OK;
    if (i == 0) { v->nrows = 0; v->batch = b->index; }
    /* predictions above 0.25 back on the letterboxed batch image (plot_images' conf threshold) */
    const ot_sample_shape *s = &b->shapes[i];
    double gain = (double)s->h / s->h0;
    for (int k = 0; k < nd; k++) {
        if (dets[k].conf <= 0.25f) continue;
        if (v->nrows == v->cap) {
            int64_t nc = v->cap ? 2 * v->cap : 256;
            float *q = realloc(v->rows, sizeof(float) * 6 * (size_t)nc);
            if (!q) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
            v->rows = q;
            v->cap = nc;
        }
        double x1 = dets[k].x1 * gain + s->dw, x2 = dets[k].x2 * gain + s->dw;
        double y1 = dets[k].y1 * gain + s->dh, y2 = dets[k].y2 * gain + s->dh;
        float *q = v->rows + 6 * v->nrows++;
        q[0] = (float)i; q[1] = (float)dets[k].cls;
        q[2] = (float)((x1 + x2) / 2 / b->w); q[3] = (float)((y1 + y2) / 2 / b->h);
        q[4] = (float)((x2 - x1) / b->w); q[5] = (float)((y2 - y1) / b->h);
    }
    if (i == b->n - 1) {
        char p[1300];
        snprintf(p, sizeof p, "%s/val_batch%lld_labels.jpg", v->r->save_dir, (long long)b->index);
        OT_TRY(ot_draw_batch(b->images, b->n, b->h, b->w, b->targets, b->n_targets, v->r->names, v->r->nc, 1920, p, err));
        snprintf(p, sizeof p, "%s/val_batch%lld_pred.jpg", v->r->save_dir, (long long)b->index);
        OT_TRY(ot_draw_batch(b->images, b->n, b->h, b->w, v->rows, v->nrows, v->r->names, v->r->nc, 1920, p, err));
    }
    return OT_OK;
}

static ot_status validate_ema(run *r, bool plots, double iou, ot_val_out *out, ot_error *err) {
    if (!r->det) {
        unsigned char *var = malloc((size_t)r->g->n_values);
        if (!var) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
        for (int v = 0; v < r->g->n_values; v++) var[v] = r->ag->kind[v] != OT_VAR_CONST;
        ot_status st = ot_detector_create_on(r->be, r->g, &r->g->head, var, &r->det, err);
        free(var);
        if (st) return st;
        detector_bind_ema(r);
    }
    ot_val_cfg c;
    ot_val_cfg_default(&c);
    c.nms.iou_thres = iou;
    c.loss_cfg = &r->lcfg;
    c.progress = !r->o.quiet;
    val_ctx v = {.r = r, .pictures = plots ? 3 : 0};
    ot_confusion cm;
    bool have_cm = false;
    if (plots) {
        OT_TRY(ot_confusion_init(&cm, r->nc, err));
        have_cm = true;
        v.cm = &cm;
    }
    c.on_image = on_val_image;
    c.ctx = &v;
    ot_status st = ot_validate(r->det, r->val_ld, &c, out, err);
    if (!st && plots) {
        char p[1300];
        snprintf(p, sizeof p, "%s/confusion_matrix.png", r->save_dir);
        st = ot_plot_confusion(&cm, r->names, p, err);
        ot_pr_curves pc;
        if (!st && !(st = ot_pr_curves_compute(&out->stats, &pc, err))) {
            snprintf(p, sizeof p, "%s/PR_curve.png", r->save_dir);
            st = ot_plot_pr_curve(&pc, r->names, p, err);
            static const char *cn[3] = {"F1_curve.png", "P_curve.png", "R_curve.png"};
            for (int k = 0; k < 3 && !st; k++) {
                snprintf(p, sizeof p, "%s/%s", r->save_dir, cn[k]);
                st = ot_plot_mc_curve(&pc, r->names, (ot_curve_kind)k, p, err);
            }
            ot_pr_curves_free(&pc);
        }
    }
    if (have_cm) ot_confusion_free(&cm);
    free(v.rows);
    return st;
}

/* ---- checkpoints ---- */
static ot_status save_ckpt(run *r, const char *path, int epoch, double fitness, bool pending_grads, ot_error *err) {
    json_t *h = json_object();
    json_object_set_new(h, "epoch", json_integer(epoch));
    json_object_set_new(h, "best_fitness", json_real(r->best_fitness));
    json_object_set_new(h, "best_epoch", json_integer(r->best_epoch));
    json_object_set_new(h, "fitness", json_real(fitness));
    json_object_set_new(h, "last_opt_step", json_integer(r->last_opt_step));
    if (r->scaler) { /* GradScaler's state (after the last step, read by step_finish), so --resume continues it */
        json_object_set_new(h, "amp_scale", json_real(r->scaler->host.scale));
        json_object_set_new(h, "amp_tracker", json_integer(r->scaler->host.tracker));
    }
    json_object_set_new(h, "args", args_json(r));
    json_object_set_new(h, "source", json_incref(r->source));
    json_t *nm = json_array();
    for (int i = 0; i < r->nc; i++) json_array_append_new(nm, json_string(r->names[i]));
    json_object_set_new(h, "names", nm);
    json_object_set_new(h, "date", json_integer((json_int_t)time(NULL)));
    if (epoch == r->test.kill_ckpt_epoch && strstr(path, "last")) { /* tests: die in the middle of writing this checkpoint */
        char tmp[1400];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) { fputs("OTCKPT01 partial", f); fflush(f); }
        raise(SIGKILL);
    }
    ot_status st = ot_ckpt_save(path, h, r->g, &r->g->head, r->ag, r->ema, r->opt, pending_grads, err);
    json_decref(h);
    return st;
}

/* ---- output ---- */
static const char *csv_keys[] = {"train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
                                 "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
                                 "x/lr0", "x/lr1", "x/lr2"};
#define NCSV 13

static ot_status csv_row(run *r, int epoch, const double *v, ot_error *err) {
    char p[1300];
    snprintf(p, sizeof p, "%s/results.csv", r->save_dir);
    bool fresh = !exists(p);
    FILE *f = fopen(p, "a");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot write (%s)", p, strerror(errno));
    if (fresh) {
        fprintf(f, "%20s", "epoch");
        for (int k = 0; k < NCSV; k++) fprintf(f, ",%20s", csv_keys[k]);
        fputc('\n', f);
    }
    fprintf(f, "%20d", epoch);
    for (int k = 0; k < NCSV; k++) fprintf(f, ",%20.5g", v[k]);
    fputc('\n', f);
    bool bad = ferror(f);
    if (fclose(f) != 0 || bad) return ot_fail(err, OT_ERR_IO, "%s: write failed", p);
    return OT_OK;
}

/* On resume: keep the header and the rows of epochs up to `last` (rows of an epoch that was interrupted go). */
static void csv_truncate(run *r, int last) {
    char p[1300], tmp[1400];
    snprintf(p, sizeof p, "%s/results.csv", r->save_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    FILE *f = fopen(p, "r"), *g = f ? fopen(tmp, "w") : NULL;
    if (!f || !g) { if (f) fclose(f); return; }
    char line[4096];
    bool first = true;
    while (fgets(line, sizeof line, f)) {
        if (first || atoi(line) <= last) fputs(line, g);
        first = false;
    }
    fclose(f);
    if (fclose(g) == 0) rename(tmp, p);
}

static void fmt_time(double s, char *b, size_t n) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(b, n, "%02ld:%02ld", t / 60, t % 60);
}

/* Before a message in the middle of an epoch: off the progress bar's line. */
static void end_bar(run *r) {
    if (r->bar_open) putchar('\n');
    r->bar_open = false;
}

static void progress(run *r, int epoch, int64_t i, int64_t nb, const double *mloss, int64_t inst, int size, double t0, bool last) {
    if (r->o.quiet) return;
    char head[200];
    char ep[32], mem[32];
    snprintf(ep, sizeof ep, "%d/%d", epoch, r->o.epochs - 1);
    snprintf(mem, sizeof mem, "%.3gG", rss_gb());
    snprintf(head, sizeof head, "%11s%11s%11.4g%11.4g%11.4g%11lld%11d", ep, mem, mloss[0], mloss[1], mloss[2], (long long)inst, size);
    double el = now_s() - t0, rate = el > 0 ? (double)(i + 1) / el : 0;
    double eta = rate > 0 ? (double)(nb - i - 1) / rate : 0;
    char e1[32], e2[32], sp[32];
    fmt_time(el, e1, sizeof e1);
    fmt_time(eta, e2, sizeof e2);
    if (rate >= 1) snprintf(sp, sizeof sp, "%.2fit/s", rate);
    else snprintf(sp, sizeof sp, "%.2fs/it", rate > 0 ? 1 / rate : 0);
    int pct = (int)(100 * (i + 1) / nb);
    if (r->tty) {
        char bar[64] = {0};
        int w = 10, full = (int)((i + 1) * w / nb);
        int p = 0;
        for (int k = 0; k < w; k++) p += snprintf(bar + p, sizeof bar - (size_t)p, "%s", k < full ? "\u2588" : " ");
        printf("\r%s: %3d%%|%s| %lld/%lld [%s<%s, %s]", head, pct, bar, (long long)(i + 1), (long long)nb, e1, e2, sp);
        if (last) putchar('\n');
        r->bar_open = !last;
        fflush(stdout);
    } else {
        int64_t every = nb / 10 > 0 ? nb / 10 : 1;
        if (last || (i + 1) % every == 0) {
            printf("%s: %3d%% %lld/%lld [%s<%s, %s]\n", head, pct, (long long)(i + 1), (long long)nb, e1, e2, sp);
            fflush(stdout);
        }
    }
}


/* ---- the phases of a run: setup (its steps first), resume, the epochs (step, epoch, validate, checkpoint), finish ---- */

/* --resume: the checkpoint (the one named, else the newest last.ckpt under --project) and the run arguments it keeps. */
static ot_status setup_resume_args(run *r, ot_error *err) {
    char path[4096];
    if (!*r->o.resume) {
        if (!latest_ckpt(r->o.project, path, sizeof path))
            return ot_fail(err, OT_ERR_IO, "--resume: no %s/*/weights/last.ckpt to resume from", r->o.project);
    } else snprintf(path, sizeof path, "%s", r->o.resume);
    OT_TRY(ot_ckpt_load(path, &r->ck, err));
    int workers = r->o.workers;
    bool quiet = r->o.quiet, sync_bn = r->o.sync_bn;
    OT_TRY(args_from_json(r, json_object_get(r->ck->header, "args"), err));
    r->o.workers = workers;
    r->o.quiet = quiet;
    r->o.sync_bn = r->o.sync_bn || sync_bn;
    r->start_epoch = (int)json_integer_value(json_object_get(r->ck->header, "epoch")) + 1;
    r->best_fitness = json_number_value(json_object_get(r->ck->header, "best_fitness"));
    r->best_epoch = (int)json_integer_value(json_object_get(r->ck->header, "best_epoch"));
    r->last_opt_step = (long)json_integer_value(json_object_get(r->ck->header, "last_opt_step"));
    if (r->start_epoch >= r->o.epochs)
        return ot_fail(err, OT_ERR_INVALID, "%s: training to %d epochs is finished, nothing to resume", path, r->o.epochs);
    if (!r->o.quiet) printf("Resuming training from %s from epoch %d to %d total epochs\n", path, r->start_epoch, r->o.epochs);
    return OT_OK;
}

/* A fresh run: the hyperparameters and the save directory. */
static ot_status setup_fresh_args(run *r, ot_error *err) {
    ot_hyp_default(&r->hyp);
    if (r->o.hyp_path) OT_TRY(ot_hyp_load(r->o.hyp_path, &r->hyp, err));
    /* train.py: hyp['label_smoothing'] = opt.label_smoothing (default 0.0), whatever the hyp file says */
    if (r->o.label_smoothing < 0 && r->hyp.label_smoothing != 0)
        ot_warn("label_smoothing %g from %s is replaced by --label-smoothing (default 0.0), as train.py does",
                r->hyp.label_smoothing, r->o.hyp_path);
    r->hyp.label_smoothing = r->o.label_smoothing >= 0 ? r->o.label_smoothing : 0.0;
    increment_path(r->o.project, r->o.name, r->o.exist_ok, r->save_dir, sizeof r->save_dir);
    r->last_opt_step = -1;
    return OT_OK;
}

/* Data-parallel ranks: --batch-size is the total, split over the ranks (train.py: batch_size // WORLD_SIZE). */
static ot_status setup_ranks(run *r, ot_error *err) {
    if (r->world > 1 && r->o.batch % r->world)
        return ot_fail(err, OT_ERR_INVALID, "--batch-size %d must be a multiple of the %d ranks", r->o.batch, r->world);
    r->batch_local = r->o.batch / r->world;
    if (r->world > 1 && !r->o.quiet)
        printf("data parallel: %d ranks, batch %d each%s\n", r->world, r->batch_local, r->o.sync_bn ? ", synchronised BatchNorm" : "");
    return OT_OK;
}

/* The class names and the train and val datasets (--single-cls: every label class 0). */
static ot_status setup_data(run *r, ot_error *err) {
    OT_TRY(ot_data_cfg_load(r->o.data, &r->cfg, err));
    r->nc = r->o.single_cls ? 1 : r->cfg.nc;
    r->names = calloc((size_t)r->nc, sizeof *r->names);
    if (!r->names) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->nc; i++) r->names[i] = ot_strdup(r->o.single_cls ? "item" : r->cfg.names[i]);
    int threads = r->o.workers > 0 ? r->o.workers : 1;
    OT_TRY(ot_dataset_open_split(&r->cfg, OT_SPLIT_TRAIN, threads, r->o.quiet, &r->train_ds, err));
    OT_TRY(ot_dataset_open_split(&r->cfg, OT_SPLIT_VAL, threads, r->o.quiet, &r->val_ds, err));
    if (r->o.single_cls)
        for (ot_dataset *d = r->train_ds; d; d = d == r->train_ds ? r->val_ds : NULL) {
            for (int64_t i = 0; i < d->n; i++)
                for (int k = 0; k < d->n_labels[i]; k++) d->labels[i][5 * k] = 0;
            d->nc = 1;
        }
    return OT_OK;
}

/* The model, the weights directory, --img fitted to the grid, AutoAnchor (fresh runs), the autograd and the loss. */
static ot_status setup_model(run *r, ot_error *err) {
    OT_TRY(load_model(r, r->ck, err));
    snprintf(r->wdir, sizeof r->wdir, "%s/weights", r->save_dir); /* created once data and model are good */
    if (r->rank == 0 && mkdirs(r->wdir) != 0) return ot_fail(err, OT_ERR_IO, "%s: cannot create (%s)", r->wdir, strerror(errno));
    ot_yolo_head *head = &r->g->head;
    r->gs = 32;
    for (int l = 0; l < head->nl; l++) if (head->stride[l] > r->gs) r->gs = (int)head->stride[l];
    if (r->o.img % r->gs) {
        int ni = (r->o.img + r->gs - 1) / r->gs * r->gs;
        ot_warn("--img %d must be a multiple of max stride %d, updating to %d", r->o.img, r->gs, ni);
        r->o.img = ni;
    }
    if (!r->ck && !r->o.noautoanchor) {
        float anchors[OT_MAX_HEADS * 16 * 2];
        for (int l = 0; l < head->nl; l++)
            for (int a = 0; a < head->na; a++) {
                anchors[(l * head->na + a) * 2] = head->anchors[l][a][0];
                anchors[(l * head->na + a) * 2 + 1] = head->anchors[l][a][1];
            }
        bool changed = false;
        ot_anchor_fit before, after;
        OT_TRY(ot_autoanchor(r->train_ds, r->o.img, anchors, head->nl, head->na, r->hyp.anchor_t, r->o.seed,
                             r->o.quiet ? NULL : stdout, &changed, &before, &after, err));
        if (changed)
            for (int l = 0; l < head->nl; l++)
                for (int a = 0; a < head->na; a++) {
                    head->anchors[l][a][0] = anchors[(l * head->na + a) * 2];
                    head->anchors[l][a][1] = anchors[(l * head->na + a) * 2 + 1];
                }
    }
    ot_shape in = {4, {r->batch_local, 3, r->o.img, r->o.img}};
    OT_TRY(ot_autograd_create_on(r->be, r->g, &in, NULL, false, &r->ag, err));
    ot_autograd_set_bn_sync(r->ag, r->world > 1 && r->o.sync_bn ? ot_dist_sum_f64 : NULL); /* SyncBatchNorm; alt plans share it */
    const ot_allreduce_kernels *k = device_allreduce(r);
    if (r->world > 1 && r->o.sync_bn && k && k->sum_f64) { /* on the device's communicator (NCCL on GPUs) */
        OT_TRY(device_comm(r, k, err));
        ot_autograd_set_bn_sync_device(r->ag, bn_dev_sum, r);
    }
    if (!(r->loss = ot_yolo_loss_create_on(r->be))) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    ot_yolo_loss_cfg_init(&r->lcfg, head, &r->hyp, r->o.img);
    return OT_OK;
}

/* The train loader (this rank's share of each batch) and the val loader (batches twice as large). */
static ot_status setup_loaders(run *r, ot_error *err) {
    ot_loader_cfg lc;
    ot_loader_cfg_train(&lc);
    lc.img_size = r->o.img;
    lc.batch_size = r->batch_local;
    lc.rank = r->rank;
    lc.world = r->world;
    lc.workers = r->o.workers;
    lc.seed = r->o.seed;
    lc.stride = r->gs;
    lc.cache_ram = r->o.cache_ram;
    lc.hyp = r->hyp;
    lc.be = r->be;
    if (r->o.rect) { lc.rect = true; lc.shuffle = false; lc.pad = 0.0; }
    OT_TRY(ot_loader_create(r->train_ds, &lc, &r->train_ld, err));
    ot_loader_cfg vc;
    ot_loader_cfg_val(&vc);
    vc.img_size = r->o.img;
    vc.batch_size = r->batch_local * 2;
    vc.workers = r->o.workers;
    vc.seed = r->o.seed;
    vc.stride = r->gs;
    vc.cache_ram = r->o.cache_ram;
    vc.hyp = r->hyp;
    vc.be = r->be;
    return ot_loader_create(r->val_ds, &vc, &r->val_ld, err);
}

/* The schedule, the optimizer (--freeze: layers below it frozen) and the EMA. */
static ot_status setup_optimizer(run *r, ot_error *err) {
    r->nb = ot_loader_num_batches(r->train_ld);
    ot_schedule_init(&r->sch, &r->hyp, r->o.epochs, (int)r->nb, r->o.batch, r->o.cos_lr);
    r->wd = ot_schedule_weight_decay(&r->sch, &r->hyp);
    OT_TRY(ot_optimizer_create(r->ag, r->o.optimizer, r->hyp.lr0, r->hyp.momentum, r->wd, &r->opt, err));
    r->frozen = calloc((size_t)r->ag->n_vars + 1, 1);
    if (!r->frozen) return ot_fail(err, OT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->ag->n_vars && r->o.freeze > 0; i++) {
        const char *nm = r->g->values[r->ag->var_vid[i]].name;
        int layer;
        if (sscanf(nm, "model.%d.", &layer) == 1 && layer < r->o.freeze) {
            r->frozen[i] = 1;
            ot_optimizer_freeze(r->opt, i);
        }
    }
    return ot_ema_create(r->ag, &r->ema, err);
}

/* --amp for the device, before any plan is made (the CUDA convolutions read it when planned): train.py's
 * default, AMP on a GPU; FP32 on the CPU devices (an explicit --amp there is an error) and on the executor's
 * CUDA device unless asked for (its runs stay comparable with the CPU's bit for bit). */
static ot_status setup_amp(run *r, ot_error *err) {
    bool gpu = r->be->kind == OT_DEV_CUDA;
    if (!r->o.amp) r->amp = gpu && ot_backend_gpu_is_real() ? OT_AMP_FP16 : OT_AMP_OFF;
    else if (!ot_amp_parse(r->o.amp, &r->amp))
        return ot_fail(err, OT_ERR_INVALID, "--amp %s: expected fp16, bf16 or off", r->o.amp);
    if (r->amp != OT_AMP_OFF && !gpu && r->amp_from_ckpt) { /* resumed on another device: FP32 there */
        ot_warn("the checkpoint trained with --amp %s; %s trains in FP32", ot_amp_name(r->amp), r->be->name);
        r->amp = OT_AMP_OFF;
    }
    if (r->amp != OT_AMP_OFF && !gpu)
        return ot_fail(err, OT_ERR_UNSUPPORTED, "--amp %s needs a CUDA device; %s trains in FP32 (--amp off)", ot_amp_name(r->amp),
                       r->be->name);
    const bool cl = ot_config_get()->channels_last;
    if (cl && r->amp == OT_AMP_OFF) /* NHWC is a layout of the half copies only: in FP32 it would do nothing */
        return ot_fail(err, OT_ERR_UNSUPPORTED,
                       "--channels-last (or ONNXT_CHANNELS_LAST=1) lays out the half-precision convolutions of --amp fp16|bf16 "
                       "on a CUDA device; this run trains in FP32 on %s",
                       r->be->name);
    ot_config_set_amp((int)r->amp);
    if (!r->o.quiet && r->amp != OT_AMP_OFF)
        printf("AMP: %s convolutions%s (FP32 master weights, optimizer, EMA and loss)%s\n", ot_amp_name(r->amp),
               cl ? " on channels-last (NHWC) copies" : "",
               r->amp == OT_AMP_FP16 ? ", dynamic loss scaling from 65536 (torch.cuda.amp.GradScaler)" : "");
    return OT_OK;
}

/* fp16: GradScaler, its state from the checkpoint on --resume; the optimizer skips on its found_inf. */
static ot_status setup_scaler(run *r, ot_error *err) {
    if (r->amp != OT_AMP_FP16) return OT_OK;
    float scale = OT_AMP_INIT_SCALE;
    int tracker = 0;
    if (r->ck && json_is_number(json_object_get(r->ck->header, "amp_scale"))) {
        scale = (float)json_number_value(json_object_get(r->ck->header, "amp_scale"));
        tracker = (int)json_integer_value(json_object_get(r->ck->header, "amp_tracker"));
    }
    OT_TRY(ot_scaler_create(r->be, scale, tracker, &r->scaler, err));
    ot_optimizer_set_amp(r->opt, r->scaler->dev);
    return OT_OK;
}

/* Options, hyperparameters, ranks, save directory, datasets, model, AutoAnchor, loaders, autograd, optimizer, EMA. */
static ot_status train_setup(run *r, const ot_train_opts *opts, ot_error *err) {
    r->o = *opts;
    test_hooks_read(r);
    r->tty = isatty(1);
    r->rank = ot_dist_rank();
    r->world = ot_dist_world();
    if (r->rank != 0) r->o.quiet = true;
    OT_TRY(ot_backend_get(r->o.device, &r->be, err));
    OT_TRY(r->o.resume ? setup_resume_args(r, err) : setup_fresh_args(r, err));
    if (r->test.loss_log && !(r->loss_log = fopen(r->test.loss_log, "a"))) return ot_fail(err, OT_ERR_IO, "%s: cannot write", r->test.loss_log);
    if (!r->o.quiet) {
        printf("hyperparameters: ");
        for (int i = 0; i < ot_hyp_count(); i++) printf("%s%s=%g", i ? ", " : "", ot_hyp_name(i), ot_hyp_get(&r->hyp, i));
        printf("\n");
    }
    OT_TRY(setup_amp(r, err));
    OT_TRY(setup_ranks(r, err));
    OT_TRY(setup_data(r, err));
    OT_TRY(setup_model(r, err));
    OT_TRY(setup_loaders(r, err));
    OT_TRY(setup_optimizer(r, err));
    return setup_scaler(r, err);
}

/* --resume: the checkpoint's weights, EMA, optimizer state and pending gradients; results.csv cut back to its epoch. */
static ot_status train_resume(run *r, ot_error *err) {
    if (!r->ck) return OT_OK;
    OT_TRY(ot_ckpt_restore(r->ck, r->ag, r->ema, r->opt, err));
    if (r->rank != 0) ot_autograd_zero_grad(r->ag); /* pending gradients were saved summed over ranks: rank 0 carries them */
    csv_truncate(r, r->start_epoch - 1);
    return OT_OK;
}

/* The optimizer and the run's sizes, before the first epoch. */
static void print_start(const run *r) {
    if (r->o.quiet) return;
    printf("optimizer: %s(lr=%g) with parameter groups biases, weights (decay %g), BN weights\n", ot_opt_name(r->o.optimizer),
           r->hyp.lr0, r->wd);
    printf("Image sizes %d train, %d val\nUsing %d dataloader workers\nLogging results to %s\n"
           "Starting training for %d epochs...\n",
           r->o.img, r->o.img, r->o.workers, r->save_dir, r->o.epochs);
}

/* A device with memory of its own stages batches (run.stage); the CPU devices read the loader's batch directly. */
static bool staged_input(const run *r) { return r->be->kind == OT_DEV_CUDA; }

/* Queue the upload of batch b on the copy stream into the next staging buffer. */
static ot_status stage_batch(run *r, const ot_batch *b, ot_error *err) {
    if (!staged_input(r)) return OT_OK;
    size_t bytes = sizeof(float) * (size_t)b->n * 3 * (size_t)b->h * (size_t)b->w;
    if (bytes > r->stage_bytes) { /* the first batch, or a larger rect shape: never inside a step */
        ot_be_sync(r->be);
        graphs_drop(r); /* they read the old buffers */
        for (int k = 0; k < 2; k++) {
            ot_be_free(r->be, r->stage[k]);
            r->stage[k] = ot_be_alloc(r->be, bytes);
        }
        r->stage_bytes = r->stage[0] && r->stage[1] ? bytes : 0;
        if (!r->stage_bytes) return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory for the batch staging buffers (2 x %zu bytes)",
                                            r->be->name, bytes);
    }
    r->stage_k ^= 1;
    ot_be_upload_on(r->be, OT_STREAM_COPY, r->stage[r->stage_k], b->images, bytes);
    ot_be_record(r->be, OT_STREAM_COPY, &r->stage_ev[r->stage_k]);
    return OT_OK;
}

/* The loader may now reuse the staged batch's host memory: its upload is done. */
static void stage_release(run *r) {
    if (staged_input(r)) ot_be_wait_host(r->be, &r->stage_ev[r->stage_k]);
}

/* ---- CUDA graphs (issue 16) ----
 * The whole step of the full-batch plan as two graphs, captured once warm and replayed from then on: the pass
 * (staging buffer k copied into the plan's input, forward, loss, GradScaler's scale, backward; one graph per
 * staging buffer) and the optimizer step (unscale, clip_grad_norm, the fused optimizer step with the EMA,
 * GradScaler's update, the gradients zeroed; only on the batches that step). Before a replay the host does
 * what changes per batch and cannot be a kernel argument: build_targets into the loss's page-locked tables
 * (ot_yolo_loss_stage; the graph uploads them and its kernels read the counts from device memory) and the
 * optimizer's per-step values (ot_optimizer_step_ema_host: learning rates, momentum, bias corrections, the EMA
 * decay; uploaded by the graph the same way). The launch overhead of a step's hundreds of small kernels
 * becomes two graph launches. With data-parallel ranks the pass holds the bucketed gradient sums (on the comm
 * stream, joined back before the pass ends) and SyncBatchNorm's sums (NCCL calls are captured; the executor
 * records its MPI sums), with its own graphs for the passes that end in a step (DDP's no_sync passes have
 * none). Plain launches for other shapes (the last short batch, --rect: the alternate plan), on the step of a
 * planted overflow (ONNXT_TEST_AMP_INF), on devices without graphs, with ONNXT_CUDA_GRAPH=0, and after a
 * capture failed; captured again when the loss tables or staging buffers move. Replays equal plain launches
 * bit for bit (tests/test_cudaemu_graph.c; with ranks tests/test_cudaemu_dist.c and test_cudaemu_syncbn.c,
 * whose executor ranks match CPU ranks bit for bit). */
static bool step_graphs_usable(const run *r, const ot_autograd *ag, long ni) {
    return ot_config_get()->cuda_graph && staged_input(r) && ag == r->ag && !r->gr.failed && r->be->v->graph_begin &&
           ni != r->test.amp_inf;
}

/* fn(ag) run plain (warm false: capture not yet), replayed from *slot (replay_host first: the host half of a
 * replayed step), or captured into *slot and then replayed. */
static ot_status graph_run(run *r, ot_autograd *ag, ot_be_graph **slot, bool usable, bool warm,
                           ot_status (*fn)(run *, ot_autograd *, ot_error *), void (*replay_host)(run *), ot_error *err) {
    if (usable && *slot) {
        if (replay_host) replay_host(r);
        ot_be_graph_launch(r->be, *slot);
        return OT_OK;
    }
    bool cap = usable && warm && ot_be_graph_begin(r->be);
    ot_status st = fn(r, ag, err);
    if (!cap) return st;
    ot_be_graph *g = ot_be_graph_end(r->be);
    if (st) { ot_be_graph_free(r->be, g); return st; }
    if (!g) { /* nothing ran: run it plain, and stay plain */
        r->gr.failed = true;
        graphs_drop(r);
        return fn(r, ag, err);
    }
    *slot = g;
    ot_be_graph_launch(r->be, g);
    return OT_OK;
}

/* The pass: the staged batch into the plan's input, forward, the loss (its tables staged by the host), the
 * loss gradient times GradScaler's scale, backward. */
static ot_status step_pass(run *r, ot_autograd *ag, ot_error *err) {
    if (staged_input(r)) {
        const ot_shape *in = &ag->p->shape[r->g->inputs[0]];
        ot_be_copy(r->be, ot_autograd_data(ag, r->g->inputs[0]), r->stage[r->stage_k], sizeof(float) * (size_t)ot_numel(in));
        OT_TRY(ot_autograd_forward(ag, NULL, err));
    } else {
        const float *in = r->cur->images;
        OT_TRY(ot_autograd_forward(ag, &in, err));
    }
    const float *outs[OT_MAX_HEADS];
    float *douts[OT_MAX_HEADS];
    ot_shape shapes[OT_MAX_HEADS];
    head_outputs(r, ag, outs, shapes, douts);
    OT_TRY(ot_yolo_loss_run(r->loss, &r->lcfg, outs, shapes, douts, err));
    if (r->scaler) { /* scaler.scale(loss).backward(): the loss gradient times the scale */
        int64_t n[OT_MAX_HEADS];
        for (int l = 0; l < r->g->n_outputs; l++) n[l] = ot_numel(&shapes[l]);
        ot_scaler_scale(r->scaler, douts, n, r->g->n_outputs);
    }
    OT_TRY(ot_autograd_backward(ag, err));
    return grads_allreduce_join(r, ag, err);
}
/* A replayed pass: its bucketed sums are queued (the host waits for them before the loss items). */
static void step_pass_host(run *r) {
    if (r->gb && r->gb->active) {
        r->gb->active = false;
        r->gb->pending = true;
    }
}

/* The optimizer step after the gradients are complete: summed over the ranks, GradScaler's unscale (tests may
 * plant an overflow first), clip_grad_norm_ to 10, the step with the EMA, GradScaler's update, zero_grad. */
static ot_status step_optimizer(run *r, ot_autograd *ag, ot_error *err) {
    grads_allreduce(r);
    if (r->scaler) { /* scaler.unscale_(optimizer) before clipping */
        if (r->cur_ni == r->test.amp_inf) {
            const float inf = INFINITY;
            ot_be_upload(r->be, r->ag->grad_slab + r->ag->var_off[r->ag->n_vars - 1], &inf, sizeof inf);
        }
        ot_scaler_unscale(r->scaler, r->ag->grad_slab, (int64_t)r->ag->slab_floats);
    }
    ot_optimizer_clip_grad_norm(r->opt, 10.0);
    ot_optimizer_step_ema(r->opt, r->ema); /* one pass over the weights on a device with fused kernels */
    if (r->scaler) ot_scaler_update(r->scaler);
    ot_autograd_zero_grad(r->ag);
    return OT_OK;
}
static void step_optimizer_host(run *r) { ot_optimizer_step_ema_host(r->opt, r->ema); }

/* One batch (iteration ni of the run), queued without a host synchronisation: warmup, the pass; once the
 * batches to accumulate have gathered since the last step, the optimizer step. The loss items stay on the
 * device until step_finish. */
static ot_status train_step(run *r, const ot_batch *b, long ni, ot_error *err) {
    int acc = ot_schedule_iteration(&r->sch, r->opt, ni, r->epoch);
    ot_autograd *ag;
    OT_TRY(get_autograd(r, b, &ag, err));
    const bool graphs = step_graphs_usable(r, ag, ni);
    const bool stepping = ni - r->last_opt_step >= acc;
    r->cur = b;
    r->cur_ni = ni;
    ot_shape shapes[OT_MAX_HEADS];
    for (int l = 0; l < r->g->n_outputs; l++) shapes[l] = ag->p->shape[r->g->outputs[l]];
    OT_TRY(ot_yolo_loss_stage(r->loss, &r->lcfg, shapes, b->targets, (int)b->n_targets, err)); /* build_targets */
    if (graphs) {
        if (ot_yolo_loss_generation(r->loss) != r->gr.loss_gen) { /* the tables moved: captured again */
            graphs_drop(r);
            r->gr.loss_gen = ot_yolo_loss_generation(r->loss);
        }
        OT_TRY(ot_optimizer_use_graphs(r->opt, err));
    }
    if (staged_input(r)) ot_be_wait(r->be, OT_STREAM_COMPUTE, &r->stage_ev[r->stage_k]); /* outside any graph: the event is this step's */
    OT_TRY(grads_allreduce_begin(r, ag, stepping, err));
    const int bucketed = r->gb && r->gb->active;
    OT_TRY(graph_run(r, ag, &r->gr.pass[bucketed][r->stage_k], graphs, r->gr.warm[bucketed], step_pass, step_pass_host, err));
    if (graphs) r->gr.warm[bucketed] = true;
    if (stepping) {
        OT_TRY(graph_run(r, ag, &r->gr.step, graphs, r->gr.step_warm, step_optimizer, step_optimizer_host, err));
        if (graphs) r->gr.step_warm = true;
        r->last_opt_step = ni;
    }
    if (graphs && !r->gr.told && r->gr.step && r->gr.pass[bucketed][r->stage_k] && !r->o.quiet) {
        end_bar(r);
        printf("CUDA graphs: the whole step (forward, loss, backward, optimizer, EMA) captured on %s, replayed from the "
               "next step\n", r->be->name);
        r->gr.told = true;
    }
    return OT_OK;
}

/* The step's loss items (the one wait for the device per batch), logged and checked. */
static ot_status step_finish(run *r, int64_t i, ot_loss_items *it, ot_error *err) {
    OT_TRY(grads_allreduce_wait(r, err));
    ot_yolo_loss_items(r->loss, it);
    if (r->scaler && r->last_opt_step == (long)(i + r->nb * r->epoch)) { /* this batch stepped: was it skipped? */
        float before = r->scaler->host.scale;
        if (ot_scaler_read(r->scaler)) {
            ot_optimizer_unstep(r->opt);
            if (!r->o.quiet) {
                end_bar(r);
                printf("AMP: epoch %d batch %lld: gradients not finite, optimizer step skipped, loss scale %g -> %g\n", r->epoch,
                       (long long)i, (double)before, (double)r->scaler->host.scale);
            }
            if (!isfinite(it->loss)) return OT_OK; /* an overflow in half precision: the scaler handled it */
        }
    }
    if (r->loss_log && r->rank == 0)
        fprintf(r->loss_log, "%d %lld %.9g %.9g %.9g\n", r->epoch, (long long)i, it->lbox, it->lobj, it->lcls);
    if (!isfinite(it->loss))
        return ot_fail(err, OT_ERR_INVALID, "epoch %d batch %lld: the loss is not finite (%g); lower lr0 in the hyp file",
                       r->epoch, (long long)i, it->loss);
    return OT_OK;
}

/* One epoch: the batch loop, the mean losses and the progress lines (and train_batch0..2.jpg on a fresh run).
 * While the device runs a step the host loads the next batch and queues its upload (stage_batch). */
static ot_status train_epoch(run *r, ot_error *err) {
    ot_schedule_epoch(&r->sch, r->opt, r->epoch);
    OT_TRY(ot_loader_start(r->train_ld, r->epoch, err));
    double *mloss = r->mloss;
    mloss[0] = mloss[1] = mloss[2] = 0;
    if (!r->o.quiet)
        printf("\n%11s%11s%11s%11s%11s%11s%11s\n", "Epoch", "RAM", "box_loss", "obj_loss", "cls_loss", "Instances", "Size");
    double t0 = now_s();
    const ot_batch *b;
    OT_TRY(ot_loader_next(r->train_ld, &b, err));
    if (b) OT_TRY(stage_batch(r, b, err));
    for (int64_t i = 0; b; i++) {
        test_kill_point(r, r->epoch, i);
        long ni = (long)(i + r->nb * r->epoch);
        OT_TRY(train_step(r, b, ni, err));
        int64_t n_targets = b->n_targets;
        int width = b->w;
        if (ni < 3 && !r->o.noplots && !r->ck && r->rank == 0) {
            char p[1300];
            snprintf(p, sizeof p, "%s/train_batch%ld.jpg", r->save_dir, ni);
            OT_TRY(ot_draw_batch(b->images, b->n, b->h, b->w, b->targets, b->n_targets, r->names, r->nc, 1920, p, err));
        }
        stage_release(r); /* b is invalid after the next call */
        OT_TRY(ot_loader_next(r->train_ld, &b, err));
        if (b) OT_TRY(stage_batch(r, b, err));
        ot_loss_items it;
        OT_TRY(step_finish(r, i, &it, err));
        double li[3] = {it.lbox, it.lobj, it.lcls};
        if (isfinite(it.loss)) /* a half-precision overflow that the scaler skipped leaves the means as they were */
            for (int k = 0; k < 3; k++) mloss[k] = (mloss[k] * (double)i + li[k]) / (double)(i + 1);
        progress(r, r->epoch, i, r->nb, mloss, n_targets, width, t0, i == r->nb - 1);
    }
    if (r->loss_log) fflush(r->loss_log);
    for (int k = 0; k < 3; k++) r->lr[k] = r->opt->lr[k];
    return OT_OK;
}

/* After an epoch: rank 0 validates the EMA weights (unless --noval, and always after the last epoch);
 * the fitness, the best so far, and EarlyStopping. */
static ot_status train_validate(run *r, ot_error *err) {
    bool final_epoch = r->epoch + 1 == r->o.epochs;
    if (r->rank == 0 && (!r->o.noval || final_epoch)) {
        ot_val_out vo;
        OT_TRY(validate_ema(r, false, 0.6, &vo, err)); /* train.py: val.run's default IoU each epoch */
        r->results[0] = vo.ap.mp; r->results[1] = vo.ap.mr; r->results[2] = vo.ap.map50; r->results[3] = vo.ap.map;
        for (int k = 0; k < 3; k++) r->results[4 + k] = vo.loss[k];
        if (!r->o.quiet) ot_val_print_table(stdout, &vo.ap, r->names, 1);
        ot_val_out_free(&vo);
    }
    double fi = 0.1 * r->results[2] + 0.9 * r->results[3];
    /* EarlyStopping */
    if (fi >= r->best_fitness) r->best_epoch = r->epoch;
    r->stop = r->o.patience > 0 && r->epoch - r->best_epoch >= r->o.patience;
    r->best = fi >= r->best_fitness; /* train.py: best_fitness == fi after the update */
    if (fi > r->best_fitness) r->best_fitness = fi;
    r->fitness = fi;
    return OT_OK;
}

/* Rank 0 appends the epoch to results.csv and writes last.ckpt (and best.ckpt when best) while the other ranks
 * wait; then every rank takes rank 0's EarlyStopping decision. */
static ot_status train_checkpoint(run *r, ot_error *err) {
    bool final_epoch = r->epoch + 1 == r->o.epochs;
    double row[NCSV] = {r->mloss[0], r->mloss[1], r->mloss[2], r->results[0], r->results[1], r->results[2], r->results[3],
                        r->results[4], r->results[5], r->results[6], r->lr[0], r->lr[1], r->lr[2]};
    bool pending = r->last_opt_step != (long)(r->nb * (r->epoch + 1) - 1);
    float *local_grads;
    OT_TRY(grads_swap_summed(r, pending, &local_grads, err));
    ot_status st = OT_OK;
    if (r->rank == 0) { /* before the other ranks go on: a rank dying next epoch leaves this checkpoint whole */
        st = csv_row(r, r->epoch, row, err);
        if (!st && (!r->o.nosave || final_epoch || r->stop)) {
            char p[1300];
            snprintf(p, sizeof p, "%s/last.ckpt", r->wdir);
            st = save_ckpt(r, p, r->epoch, r->fitness, pending, err);
            if (!st && r->best) {
                snprintf(p, sizeof p, "%s/best.ckpt", r->wdir);
                st = save_ckpt(r, p, r->epoch, r->fitness, pending, err);
            }
        }
        if (!st && r->stop && !r->o.quiet)
            printf("Stopping training early as no improvement observed in last %d epochs. Best results observed at epoch %d, "
                   "best model saved as best.ckpt.\n",
                   r->o.patience, r->best_epoch);
    }
    grads_swap_back(r, local_grads);
    if (st) return st;
    int32_t stop_flag = r->stop; /* rank 0 decides */
    ot_dist_bcast_i32(&stop_flag, 1, 0);
    r->stop = stop_flag != 0;
    return OT_OK;
}

/* Rank 0, after the last epoch: the best checkpoint (else the last) validated with plots, results.png, and the
 * result (the CLI exports best.onnx: tools/cli/cmd_train.c). */
static ot_status train_finish(run *r, ot_train_result *res, ot_error *err) {
    if (!r->o.quiet) printf("\n%d epochs completed in %.3f hours.\n", r->epoch - r->start_epoch, (now_s() - r->t_start) / 3600);
    char best[1300];
    snprintf(best, sizeof best, "%s/best.ckpt", r->wdir);
    if (!exists(best)) snprintf(best, sizeof best, "%s/last.ckpt", r->wdir);
    ot_ckpt *bc = NULL;
    OT_TRY(ot_ckpt_load(best, &bc, err));
    ot_status st = ot_ckpt_restore(bc, r->ag, r->ema, NULL, err);
    ot_ckpt_free(bc);
    if (st) return st;
    if (!r->o.quiet) printf("\nValidating %s...\n", best);
    ot_val_out vo;
    OT_TRY(validate_ema(r, !r->o.noplots, ot_data_is_coco(&r->cfg) ? 0.65 : 0.6, &vo, err));
    if (!r->o.quiet) ot_val_print_table(stdout, &vo.ap, r->names, r->nc);
    res->map50 = vo.ap.map50;
    res->map = vo.ap.map;
    ot_val_out_free(&vo);
    if (!r->o.noplots) {
        char csv[1300], png[1300];
        snprintf(csv, sizeof csv, "%s/results.csv", r->save_dir);
        snprintf(png, sizeof png, "%s/results.png", r->save_dir);
        OT_TRY(ot_plot_results(csv, png, err));
    }
    snprintf(res->best_ckpt, sizeof res->best_ckpt, "%s", best);
    snprintf(res->weights_dir, sizeof res->weights_dir, "%s", r->wdir);
    res->best_fitness = r->best_fitness;
    snprintf(res->save_dir, sizeof res->save_dir, "%s", r->save_dir);
    return OT_OK;
}

/* ---- the run ---- */
ot_status ot_train(const ot_train_opts *opts, ot_train_result *res, ot_error *err) {
    run R;
    memset(&R, 0, sizeof R);
    run *r = &R;
    memset(res, 0, sizeof *res);
    ot_status st = train_setup(r, opts, err);
    if (!st) st = train_resume(r, err);
    if (!st) {
        print_start(r);
        r->t_start = now_s();
        for (r->epoch = r->start_epoch; r->epoch < r->o.epochs && !r->stop; r->epoch++) {
            if ((st = train_epoch(r, err)) || (st = train_validate(r, err)) || (st = train_checkpoint(r, err))) break;
            res->epochs_done = r->epoch + 1;
        }
    }
    if (!st && r->rank == 0) st = train_finish(r, res, err); /* rank 0 validates and plots */
    run_free(r);
    return st;
}
