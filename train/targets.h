/* targets.h: batch targets as ComputeLoss takes them: rows (image, class, cx, cy, w, h). */
#ifndef OT_TARGETS_H
#define OT_TARGETS_H

#include "../core/status.h"

/* Reads a text file with one box a line, `image_index class cx cy w h`
 * (normalised; '#' starts a comment). Checks each line against the batch size
 * and class count; an error names the file and line. *rows is malloc'ed (nt*6). */
ot_status ot_targets_read(const char *path, int batch, int nc, float **rows, int *nt, ot_error *err);

#endif
