/* cmd_synth.c: `onnx-train data synth`: write the synthetic shapes dataset
 * (train/synth.h). */
#include "cmd_synth.h"
#include "cli.h"
#include "train/synth.h"
#include <string.h>
#include <time.h>

static void synth_usage(FILE *f) {
    fprintf(f, "usage: onnx-train data synth --out DIR [--train 320] [--val 64] [--img 256] [--img-h H]\n"
               "                             [--nc 3] [--min-obj 1] [--max-obj 4] [--seed 0] [--workers N]\n\n"
               "Writes a synthetic detection dataset that needs no download: filled shapes\n"
               "(circle, square, triangle; with --nc up to 6 also cross, ring, diamond) in\n"
               "random saturated colours with a darker outline, on textured backgrounds\n"
               "(colour gradient, value noise, blotches, thin lines). Box sides are 12%%..45%%\n"
               "of the image's short side and exactly tight around each shape.\n"
               "DIR gets images/{train,val}/NNNNNN.jpg (JPEG quality 90), labels/{train,val}/NNNNNN.txt\n"
               "(class cx cy w h, normalised) and data.yaml. Images of an earlier run in DIR\n"
               "(digit-named files) are replaced. The same seed gives the same files for any\n"
               "--workers; --img-h makes images --img wide and H high.\n\n"
               "example:\n  onnx-train data synth --out shapes --seed 1\n"
               "  onnx-train data check --data shapes/data.yaml\n");
}

int cmd_data_synth(int argc, char **argv) {
    ot_synth_cfg c;
    ot_synth_cfg_default(&c);
    long n_train = c.n_train, n_val = c.n_val, img = c.img, img_h = 0, nc = c.nc, min_obj = c.min_obj, max_obj = c.max_obj,
         seed = 0, workers = 0;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        long *t = NULL;
        const char *range = NULL;
        int at = i; /* the option; i moves to its value */
        if (cli_is_help(argv[i])) { synth_usage(stdout); return 0; }
        if (strcmp(argv[i], "--out") == 0) {
            if (i + 1 >= argc) return cli_fail("data synth: --out needs a folder");
            out = argv[++i];
        }
        else if (cli_int_arg(argc, argv, &i, "--train", 1, 10000000, &n_train)) { t = &n_train; range = "1..10000000"; }
        else if (cli_int_arg(argc, argv, &i, "--val", 1, 10000000, &n_val)) { t = &n_val; range = "1..10000000"; }
        else if (cli_int_arg(argc, argv, &i, "--img", 64, 8192, &img)) { t = &img; range = "64..8192 pixels"; }
        else if (cli_int_arg(argc, argv, &i, "--img-h", 64, 8192, &img_h)) { t = &img_h; range = "64..8192 pixels"; }
        else if (cli_int_arg(argc, argv, &i, "--nc", 1, OT_SYNTH_MAX_NC, &nc)) { t = &nc; range = "1..6"; }
        else if (cli_int_arg(argc, argv, &i, "--min-obj", 0, OT_SYNTH_MAX_OBJ, &min_obj)) { t = &min_obj; range = "0..32"; }
        else if (cli_int_arg(argc, argv, &i, "--max-obj", 0, OT_SYNTH_MAX_OBJ, &max_obj)) { t = &max_obj; range = "0..32"; }
        else if (cli_int_arg(argc, argv, &i, "--seed", 0, LONG_MAX - 1, &seed)) { t = &seed; range = "a non-negative integer"; }
        else if (cli_int_arg(argc, argv, &i, "--workers", 0, 256, &workers)) { t = &workers; range = "0..256 (0: one per CPU)"; }
        else return cli_fail("data synth: unknown argument '%s' (see onnx-train data synth --help)", argv[i]);
        if (t && *t == LONG_MIN) {
            if (i == at) return cli_fail("data synth: %s needs a value: %s", argv[at], range);
            return cli_fail("data synth: %s needs %s, got '%s'", argv[at], range, argv[i]);
        }
    }
    if (!out) return cli_fail("data synth: --out DIR is required (see onnx-train data synth --help)");
    if (min_obj > max_obj) return cli_fail("data synth: --min-obj %ld is larger than --max-obj %ld", min_obj, max_obj);
    c.out_dir = out;
    c.n_train = (int)n_train;
    c.n_val = (int)n_val;
    c.img = (int)img;
    c.img_h = (int)img_h;
    c.nc = (int)nc;
    c.min_obj = (int)min_obj;
    c.max_obj = (int)max_obj;
    c.seed = (uint64_t)seed;
    c.threads = (int)workers;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t boxes;
    ot_error e;
    if (ot_synth_make(&c, &boxes, &e)) return cli_error(&e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s/data.yaml: %d train + %d val images of %dx%d, %lld boxes, %d classes, seed %ld (%.1f s)\n", out, c.n_train,
           c.n_val, c.img, c.img_h ? c.img_h : c.img, (long long)boxes, c.nc, seed, s);
    return 0;
}
