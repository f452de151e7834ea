/* coco.h: COCO instances JSON -> YOLO label files, as Ultralytics JSON2YOLO
 * (convert_coco_json with cls91to80) does: crowd boxes skipped, boxes of zero
 * width or height skipped, the 91 COCO category ids mapped to the 80 classes
 * (coco91_to_coco80_class), duplicate rows dropped, '%g' numbers, one
 * <image stem>.txt per annotated image. JSON through jansson. */
#ifndef OT_COCO_H
#define OT_COCO_H

#include "core/status.h"

/* 0-based class for a COCO category id (1..90); -1 when unused. */
int ot_coco91_to_80(int category_id);

typedef struct ot_coco_stats {
    int64_t images, annotations, files, boxes;
    int64_t crowd, empty_box, unmapped, duplicates, no_image;
} ot_coco_stats;

ot_status ot_coco_to_yolo(const char *json_path, const char *out_dir, ot_coco_stats *st, ot_error *err);

#endif
