/* synth.h: a synthetic detection dataset (filled shapes on textured
 * backgrounds) that needs no download, for the demo and for tests.
 *
 *   out_dir/images/train/000000.jpg ...   JPEG, quality 90
 *   out_dir/labels/train/000000.txt ...   `class cx cy w h`, normalised, %.6f
 *   out_dir/images/val, out_dir/labels/val
 *   out_dir/data.yaml                     path (absolute), train, val, nc, names
 *
 * Classes: circle, square (axis-aligned rectangles, aspect 0.7..1.4),
 * triangle (random orientation), and with nc > 3 cross, ring, diamond.
 * Objects are filled in random saturated colours (a slight shading) with a
 * darker outline drawn inside the shape, anti-aliased; the box of an object
 * is the exact extent of its shape (every pixel the shape touches lies in
 * it, the shape reaches every side) and the whole shape lies in the image.
 * Sizes: the long side of the box is 12%..45% of the image's short side.
 * An object whose box has IoU > 0.3 with an earlier one, or whose box and an
 * earlier one's intersect in more than half of the smaller, or which would
 * leave less than 60% of an earlier object's pixels in sight, is placed
 * again; one that finds no place after 50 tries is left out. Backgrounds: a
 * colour gradient in a random direction, value noise (two octaves, on a
 * turned lattice), soft blotches and thin lines, different in every image.
 *
 * Image i of a split depends only on (seed, split, i): the output is the same
 * bytes for a seed whatever the thread count. */
#ifndef OT_SYNTH_H
#define OT_SYNTH_H

#include "core/status.h"
#include "train/image_io.h"

#define OT_SYNTH_MAX_NC 6
#define OT_SYNTH_MAX_OBJ 32

typedef struct ot_synth_cfg {
    const char *out_dir;   /* created (with parents) */
    int n_train, n_val;    /* images per split, >= 1; default 320 / 64 */
    int img;               /* image side in pixels, default 256 */
    int img_w, img_h;      /* 0: img (non-square images otherwise); each 64..8192 */
    int nc;                /* classes 1..6, default 3 */
    int min_obj, max_obj;  /* objects per image, 0 <= min <= max <= 32; default 1..4 */
    uint64_t seed;         /* default 0 */
    int threads;           /* 0: one per online CPU (at most 16); the output does not depend on it */
} ot_synth_cfg;

void ot_synth_cfg_default(ot_synth_cfg *c);
/* Class k's name (0..OT_SYNTH_MAX_NC-1): circle, square, triangle, cross, ring, diamond. */
const char *ot_synth_class_name(int k);

/* Write the dataset (see above). Files of an earlier run in the four split
 * folders (names: digits + .jpg / .txt) are removed first, so a smaller run
 * leaves no stale images; other files are left alone. Prints nothing.
 * n_boxes (may be NULL): boxes written over both splits. */
ot_status ot_synth_make(const ot_synth_cfg *c, int64_t *n_boxes, ot_error *err);

/* ---- one image in memory (what ot_synth_make encodes; tests) ---- */
typedef struct ot_synth_box {
    int cls;
    double x1, y1, x2, y2; /* pixels, continuous: pixel (x, y) covers [x, x+1) x [y, y+1) */
} ot_synth_box;

/* Check a configuration (the message names the bad field). */
ot_status ot_synth_cfg_check(const ot_synth_cfg *c, ot_error *err);
/* Render image `index` of split (0 train, 1 val) into im (allocated here,
 * free with ot_image_free). bg (may be NULL): the same image without its
 * objects; every pixel no object touches is equal in both. boxes: room for
 * max_obj boxes; *n_boxes: how many were placed. */
ot_status ot_synth_render(const ot_synth_cfg *c, int split, int64_t index, ot_image *im, ot_image *bg,
                          ot_synth_box *boxes, int *n_boxes, ot_error *err);

#endif
