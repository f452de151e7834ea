/* cmd_data.c: `onnx-train data check|show` and `onnx-train coco2yolo`. */
#include "cli.h"
#include "cmd_synth.h"
#include "train/coco.h"
#include "train/dataset.h"
#include "train/draw.h"
#include "train/loader.h"
#include <string.h>
#include <unistd.h>

static void data_usage(FILE *f) {
    fprintf(f, "usage: onnx-train data check --data D.yaml [--split train|val|test|all] [--workers N]\n"
               "       onnx-train data show --data D.yaml --out batch.jpg [--img 640] [--batch-size 16]\n"
               "                            [--seed 0] [--hyp H.yaml] [--epoch 0] [--val] [--workers N]\n"
               "       onnx-train data synth --out DIR [--train 320] [--val 64] [--img 256] [--nc 3] [--seed 0]\n\n"
               "check: scans a dataset as training would (every image decoded, every label\n"
               "line checked) and prints counts: images, label files, boxes per class,\n"
               "background images (no or empty label file), skipped corrupt images and label\n"
               "files with a bad line, duplicate rows removed. One warning per skipped file.\n"
               "show: writes the first batch of an epoch (training augmentation: mosaic,\n"
               "perspective, HSV, flips; --val: validation letterbox) as a grid of images with\n"
               "boxes and class names: what the model is fed.\n"
               "synth: writes a synthetic detection dataset (shapes on textured backgrounds,\n"
               "JPEG images, YOLO labels, data.yaml); see onnx-train data synth --help.\n\n"
               "example:\n  onnx-train data check --data coco128.yaml\n"
               "  onnx-train data show --data coco128.yaml --out batch.jpg --seed 1\n");
}

bool cli_int_arg(int argc, char **argv, int *i, const char *name, long lo, long hi, long *out) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc) { *out = LONG_MIN; return true; }
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    *out = (*end || v < lo || v > hi) ? LONG_MIN : v;
    return true;
}

static void print_summary(const char *split, const ot_dataset *d, const ot_data_cfg *c) {
    const ot_data_summary *s = &d->sum;
    printf("%s: %lld images found, %lld usable\n", split, (long long)s->listed, (long long)s->images);
    printf("  labels:      %lld images with boxes, %lld boxes%s\n", (long long)s->labelled, (long long)s->boxes,
           s->polygons ? " (polygons converted to boxes included)" : "");
    printf("  background:  %lld (%lld without a label file, %lld with an empty one)\n", (long long)(s->missing + s->empty),
           (long long)s->missing, (long long)s->empty);
    printf("  skipped:     %lld corrupt images, %lld label files with a bad line\n", (long long)s->corrupt, (long long)s->bad_labels);
    printf("  duplicates:  %lld label rows removed\n", (long long)s->duplicates);
    printf("  boxes per class:\n");
    for (int k = 0; k < d->nc; k++)
        if (s->per_class[k]) printf("    %3d %-20s %lld\n", k, c->names[k], (long long)s->per_class[k]);
}

static int data_check(int argc, char **argv) {
    const char *yaml = NULL, *split = "all";
    long workers = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { data_usage(stdout); return 0; }
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) yaml = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &workers)) { if (workers == LONG_MIN) return cli_fail("data check: --workers needs 0..256"); }
        else return cli_fail("data check: unknown argument '%s' (see onnx-train data --help)", argv[i]);
    }
    if (!yaml) return cli_fail("data check: --data D.yaml is required (see onnx-train data --help)");
    if (strcmp(split, "all") != 0 && ot_split_index(split) < 0) return cli_fail("data check: --split must be train, val, test or all");
    ot_data_cfg cfg;
    ot_error e;
    if (ot_data_cfg_load(yaml, &cfg, &e)) return cli_error(&e);
    int threads = workers ? (int)workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    printf("%s: %d classes, root %s\n", yaml, cfg.nc, cfg.root);
    int rc = 0;
    for (int s = 0; s < 3 && rc == 0; s++) {
        static const char *const nm[3] = {"train", "val", "test"};
        if (strcmp(split, "all") != 0 && strcmp(split, nm[s]) != 0) continue;
        if (!cfg.n_split[s]) { if (strcmp(split, "all") != 0) rc = cli_fail("data check: %s has no %s split", yaml, nm[s]); continue; }
        ot_dataset *d;
        if (ot_dataset_open_split(&cfg, s, threads, false, &d, &e)) { rc = cli_error(&e); break; }
        print_summary(nm[s], d, &cfg);
        ot_dataset_destroy(d);
    }
    ot_data_cfg_free(&cfg);
    return rc;
}

static int data_show(int argc, char **argv) {
    const char *yaml = NULL, *out = NULL, *hyp = NULL;
    long img = 640, bs = 16, seed = 0, epoch = 0, workers = 2;
    bool val = false;
    for (int i = 1; i < argc; i++) {
        long *t = NULL;
        if (cli_is_help(argv[i])) { data_usage(stdout); return 0; }
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) yaml = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--hyp") == 0 && i + 1 < argc) hyp = argv[++i];
        else if (strcmp(argv[i], "--val") == 0) val = true;
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &img)) t = &img;
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 1024, &bs)) t = &bs;
        else if (cli_int_arg(argc, argv, &i, "--seed", 0, LONG_MAX - 1, &seed)) t = &seed;
        else if (cli_int_arg(argc, argv, &i, "--epoch", 0, LONG_MAX - 1, &epoch)) t = &epoch;
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &workers)) t = &workers;
        else return cli_fail("data show: unknown argument '%s' (see onnx-train data --help)", argv[i]);
        if (t && *t == LONG_MIN) return cli_fail("data show: bad value for %s", argv[i - 1 < 1 ? 1 : i - 1]);
    }
    if (!yaml || !out) return cli_fail("data show: --data D.yaml and --out FILE.jpg are required (see onnx-train data --help)");
    ot_loader_cfg lc;
    if (val) ot_loader_cfg_val(&lc); else ot_loader_cfg_train(&lc);
    lc.img_size = (int)img;
    lc.batch_size = (int)bs;
    lc.seed = (uint64_t)seed;
    lc.workers = (int)workers;
    ot_error e;
    if (hyp && ot_hyp_load(hyp, &lc.hyp, &e)) return cli_error(&e);
    ot_data_cfg cfg;
    if (ot_data_cfg_load(yaml, &cfg, &e)) return cli_error(&e);
    ot_dataset *d = NULL;
    ot_loader *L = NULL;
    int rc = 0;
    const ot_batch *b = NULL;
    if (ot_dataset_open_split(&cfg, val ? OT_SPLIT_VAL : OT_SPLIT_TRAIN, workers ? (int)workers : 1, false, &d, &e) ||
        ot_loader_create(d, &lc, &L, &e) || ot_loader_start(L, epoch, &e) || ot_loader_next(L, &b, &e) ||
        ot_draw_batch(b->images, b->n, b->h, b->w, b->targets, b->n_targets, cfg.names, cfg.nc, 1920, out, &e))
        rc = cli_error(&e);
    else
        printf("%s: batch 0 of epoch %ld: %d images of %dx%d, %lld boxes\n", out, epoch, b->n, b->w, b->h, (long long)b->n_targets);
    ot_loader_destroy(L);
    ot_dataset_destroy(d);
    ot_data_cfg_free(&cfg);
    return rc;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) { data_usage(argc < 2 ? stderr : stdout); return argc < 2 ? CLI_EXIT_BAD : 0; }
    if (strcmp(argv[1], "check") == 0) return data_check(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0) return data_show(argc - 1, argv + 1);
    if (strcmp(argv[1], "synth") == 0) return cmd_data_synth(argc - 1, argv + 1);
    return cli_fail("data: unknown subcommand '%s' (check, show or synth; see onnx-train data --help)", argv[1]);
}

int cmd_coco2yolo(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: onnx-train coco2yolo instances.json --out DIR\n\n"
                   "Writes one YOLO label file DIR/<image stem>.txt per annotated image\n"
                   "(class cx cy w h, normalised), as Ultralytics JSON2YOLO does: crowd boxes\n"
                   "skipped, COCO's 91 category ids mapped to the 80 classes.\n\n"
                   "example:\n  onnx-train coco2yolo annotations/instances_val2017.json --out coco/labels/val2017\n");
            return 0;
        }
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("coco2yolo: unknown option '%s'", argv[i]);
        else if (!in) in = argv[i];
        else return cli_fail("coco2yolo: more than one JSON file given");
    }
    if (!in || !out) return cli_fail("coco2yolo: usage: onnx-train coco2yolo instances.json --out DIR");
    if (cli_mkdirs(out) != 0) return cli_fail("coco2yolo: cannot create %s", out);
    ot_coco_stats s;
    ot_error e;
    if (ot_coco_to_yolo(in, out, &s, &e)) return cli_error(&e);
    printf("%s: %lld images, %lld annotations -> %lld label files with %lld boxes in %s\n", in, (long long)s.images,
           (long long)s.annotations, (long long)s.files, (long long)s.boxes, out);
    printf("  skipped: %lld crowd, %lld zero-size, %lld unmapped category, %lld duplicate, %lld without image\n",
           (long long)s.crowd, (long long)s.empty_box, (long long)s.unmapped, (long long)s.duplicates, (long long)s.no_image);
    return 0;
}
