/* draw.h: boxes and class names drawn on 8-bit BGR images, and a batch drawn
 * as a grid of its images (as Ultralytics utils/plots.py plot_images does), so
 * a user can see what the model is fed. Text through FreeType, the font found
 * by fontconfig (DejaVu Sans); without a font, boxes are drawn and names are not. */
#ifndef OT_DRAW_H
#define OT_DRAW_H

#include "train/image_io.h"

/* Ultralytics' 20-colour palette, as BGR. */
const uint8_t *ot_class_color(int cls);
/* Rectangle outline [x1, x2] x [y1, y2] (inclusive), clipped to the image. */
void ot_draw_rect(ot_image *im, int x1, int y1, int x2, int y2, const uint8_t bgr[3], int thickness);
void ot_draw_fill(ot_image *im, int x1, int y1, int x2, int y2, const uint8_t bgr[3]);

typedef struct ot_font ot_font;
/* A font at px pixels; NULL when no font is available. */
ot_font *ot_font_open(int px);
void ot_font_close(ot_font *f);
int ot_text_width(ot_font *f, const char *utf8);
/* Text with its top-left at (x, y); returns the width drawn. */
int ot_draw_text(ot_image *im, ot_font *f, int x, int y, const char *utf8, const uint8_t bgr[3]);

/* images: (n, 3, h, w) RGB 0..1; targets (nt, 6): image, class, cx, cy, w, h.
 * Writes a JPEG grid of at most max_side pixels per side. */
ot_status ot_draw_batch(const float *images, int n, int h, int w, const float *targets, int64_t nt,
                        char *const *names, int nc, int max_side, const char *path, ot_error *err);

#endif
