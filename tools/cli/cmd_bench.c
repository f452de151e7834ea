/* cmd_bench.c: `onnx-train bench <what>`: speed measurements. Each benchmark is
 * one row of the table below. */
#include "cli.h"
#include "train/dataset.h"
#include "train/loader.h"
#include <jansson.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_s(void) { /* this process, all threads */
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static void bench_data_usage(FILE *f) {
    fprintf(f, "usage: onnx-train bench data --data D.yaml [--img 640] [--workers N] [--batch-size 16]\n"
               "                             [--batches N] [--hyp H.yaml] [--cache ram|none] [--seed 0] [--json]\n\n"
               "Training samples per second of the data loader (mosaic, perspective, HSV,\n"
               "flips with the hyp given; default hyp.scratch-low) on the train split. The\n"
               "scan and one warm-up batch are not timed. Images: by default the loader's\n"
               "bounded cache (1 GiB, filled as images are first loaded, during the timed\n"
               "part); --cache ram caches every image and fills it in an untimed epoch\n"
               "first; --cache none decodes every image every time. --json prints one JSON\n"
               "object with keys samples_per_s, cpu_s and cache.\n\n"
               "example:\n  onnx-train bench data --data coco128.yaml --img 640 --workers 1 --json\n");
}

static int bench_data(int argc, char **argv) {
    const char *yaml = NULL, *hyp = NULL;
    long img = 640, workers = 1, bs = 16, batches = 16, seed = 0;
    bool json = false, cache = false, no_cache = false;
    for (int i = 1; i < argc; i++) {
        long *t = NULL;
        if (cli_is_help(argv[i])) { bench_data_usage(stdout); return 0; }
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) yaml = argv[++i];
        else if (strcmp(argv[i], "--hyp") == 0 && i + 1 < argc) hyp = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--cache") == 0 && i + 1 < argc && strcmp(argv[i + 1], "ram") == 0) { cache = true; no_cache = false; i++; }
        else if (strcmp(argv[i], "--cache") == 0 && i + 1 < argc && strcmp(argv[i + 1], "none") == 0) { no_cache = true; cache = false; i++; }
        else if (cli_int_arg(argc, argv, &i, "--img", 32, 8192, &img)) t = &img;
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &workers)) t = &workers;
        else if (cli_int_arg(argc, argv, &i, "--batch-size", 1, 1024, &bs)) t = &bs;
        else if (cli_int_arg(argc, argv, &i, "--batches", 1, 1000000, &batches)) t = &batches;
        else if (cli_int_arg(argc, argv, &i, "--seed", 0, LONG_MAX - 1, &seed)) t = &seed;
        else return cli_fail("bench data: unknown argument '%s' (see onnx-train bench data --help)", argv[i]);
        if (t && *t == LONG_MIN) return cli_fail("bench data: bad value for %s", argv[i - 1]);
    }
    if (!yaml) return cli_fail("bench data: --data D.yaml is required (see onnx-train bench data --help)");
    ot_loader_cfg lc;
    ot_loader_cfg_train(&lc);
    lc.img_size = (int)img;
    lc.batch_size = (int)bs;
    lc.workers = (int)workers;
    lc.seed = (uint64_t)seed;
    lc.cache_ram = cache;
    if (no_cache) lc.cache_mb = 0;
    const char *cache_mode = cache ? "ram" : no_cache ? "none" : "bounded";
    ot_error e;
    if (hyp && ot_hyp_load(hyp, &lc.hyp, &e)) return cli_error(&e);
    ot_data_cfg cfg;
    if (ot_data_cfg_load(yaml, &cfg, &e)) return cli_error(&e);
    ot_dataset *d = NULL;
    ot_loader *L = NULL;
    int rc = 0;
    if (ot_dataset_open_split(&cfg, OT_SPLIT_TRAIN, workers ? (int)workers : 1, true, &d, &e) ||
        ot_loader_create(d, &lc, &L, &e)) {
        rc = cli_error(&e);
        goto done;
    }
    const ot_batch *b;
    int64_t epoch = 0, done_batches = 0, samples = 0;
    double t0 = 0, c0 = 0;
    if (cache) { /* fill the cache: one untimed epoch */
        do {
            if (ot_loader_next(L, &b, &e)) { rc = cli_error(&e); goto done; }
        } while (b);
        if (ot_loader_start(L, ++epoch, &e)) { rc = cli_error(&e); goto done; }
    }
    for (long k = 0; k <= batches; k++) {
        if (ot_loader_next(L, &b, &e)) { rc = cli_error(&e); goto done; }
        if (!b) {
            if (ot_loader_start(L, ++epoch, &e) || ot_loader_next(L, &b, &e)) { rc = cli_error(&e); goto done; }
        }
        if (k == 0) { t0 = now_s(); c0 = cpu_s(); continue; } /* warm-up batch */
        samples += b->n;
        done_batches++;
    }
    double dt = now_s() - t0, dc = cpu_s() - c0, sps = (double)samples / dt;
    if (json) {
        json_t *o = json_pack("{s:f, s:I, s:I, s:i, s:i, s:i, s:f, s:f, s:b, s:s}", "samples_per_s", sps, "samples",
                              (json_int_t)samples, "batches", (json_int_t)done_batches, "batch_size", (int)bs, "workers",
                              (int)workers, "img", (int)img, "seconds", dt, "cpu_s", dc, "cache_ram", cache, "cache",
                              cache_mode);
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("bench data: %.1f samples/s (%lld samples in %lld batches of %ld at %ld px, %ld workers, cache %s, %.2f s, %.2f cpu s)\n",
               sps, (long long)samples, (long long)done_batches, bs, img, workers, cache_mode, dt, dc);
    }
done:
    ot_loader_destroy(L);
    ot_dataset_destroy(d);
    ot_data_cfg_free(&cfg);
    return rc;
}

static const struct { const char *name; cli_cmd_fn fn; const char *what; } benches[] = {
    {"data", bench_data, "training samples per second of the data loader"},
    {"train", bench_train, "images per second of a full training step (--device: GPU or CPU)"},
    {"kernels", bench_kernels, "the hand-written CUDA kernels against copy bandwidth (GPU, CUDA builds)"},
};

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !cli_is_help(argv[1]))
        for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
            if (strcmp(argv[1], benches[i].name) == 0) return benches[i].fn(argc - 1, argv + 1);
    FILE *f = argc >= 2 && cli_is_help(argv[1]) ? stdout : stderr;
    fprintf(f, "usage: onnx-train bench <what> [options]   (onnx-train bench <what> --help)\n\n");
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) fprintf(f, "  %-8s %s\n", benches[i].name, benches[i].what);
    fprintf(f, "\nexample:\n  onnx-train bench data --data coco128.yaml --img 640 --workers 1\n");
    if (f == stdout) return 0;
    return argc < 2 ? CLI_EXIT_BAD : cli_fail("bench: unknown benchmark '%s'", argv[1]);
}
