/* image_io.h: image files in and out. JPEG through libjpeg-turbo's TurboJPEG API
 * (with DCT-domain downscaling when the image is much larger than needed), PNG
 * through libpng, EXIF orientation honoured (as cv2.imread and PIL's
 * exif_transpose do). Pixels are 8-bit BGR, HWC, rows packed (OpenCV's layout). */
#ifndef OT_IMAGE_IO_H
#define OT_IMAGE_IO_H

#include "core/status.h"
#include <stdbool.h>

typedef struct ot_image {
    int w, h;
    uint8_t *px; /* (h, w, 3) BGR */
} ot_image;

/* Allocate an image (pixels uninitialised); false on failure. */
bool ot_image_alloc(ot_image *im, int w, int h);
void ot_image_free(ot_image *im); /* NULL and empty images are fine */

/* Read a whole file into memory (max 1 GiB). */
ot_status ot_file_read(const char *path, uint8_t **buf, size_t *len, ot_error *err);

/* Decode a JPEG or PNG file. need_long: the long side the caller will resize
 * to (0 = full size); a JPEG at least twice as large is decoded at the
 * smallest DCT scale (1/2, 1/4, 1/8, ...) whose long side is still >= need_long.
 * w0, h0 (may be NULL): the full-size dimensions after EXIF orientation.
 * Any libjpeg warning (truncated or corrupt data) is an error. */
ot_status ot_image_decode(const uint8_t *buf, size_t len, const char *name, int need_long,
                          ot_image *out, int *w0, int *h0, ot_error *err);
ot_status ot_image_load(const char *path, int need_long, ot_image *out, int *w0, int *h0, ot_error *err);

/* Memory kept from one load to the next (the data loader's workers: no
 * allocation, page faults or zeroing per image): the file bytes and the
 * decoded image, each grown when too small. Zero-initialise; free with
 * ot_image_scratch_free. */
typedef struct ot_image_scratch {
    uint8_t *file;
    size_t file_cap;
    ot_image im;      /* the last image decoded; im.px holds cap bytes */
    size_t cap;
} ot_image_scratch;
/* ot_image_load into s->im (valid until the next load; on failure s->im is
 * unspecified). row1 > 0: only rows [row0, row1) are needed; a JPEG without
 * EXIF rotation or DCT scaling is then decoded only there (the other rows are
 * left undefined). */
ot_status ot_image_load_reuse(const char *path, int need_long, int row0, int row1, ot_image_scratch *s, int *w0,
                              int *h0, ot_error *err);
void ot_image_scratch_free(ot_image_scratch *s);

/* Check that a file is a complete, decodable JPEG or PNG (JPEGs are decoded at
 * 1/8 scale, which still reads every coefficient) and return its oriented size. */
ot_status ot_image_verify(const char *path, int *w0, int *h0, ot_error *err);

/* EXIF orientation (1..8) of a JPEG buffer; 1 when absent or unreadable. */
int ot_jpeg_exif_orientation(const uint8_t *buf, size_t len);
/* Apply an EXIF orientation in place (as PIL's exif_transpose). */
bool ot_image_orient(ot_image *im, int orientation);

/* Write a baseline JPEG (4:2:0, quality 1..100). */
ot_status ot_image_write_jpeg(const char *path, const ot_image *im, int quality, ot_error *err);

#endif
