/* dataset.h: datasets as Ultralytics YOLOv5 defines them (utils/dataloaders.py,
 * utils/general.py check_dataset, v7.0).
 *
 *   D.yaml:  path: ../datasets/coco128     # root; relative to the YAML's folder; default: that folder
 *            train: images/train2017        # a folder, a .txt list of image paths, or a list of those
 *            val: images/train2017
 *            names: {0: person, 1: bicycle} # or a list; nc optional (must agree)
 *
 * Labels are found by the images -> labels rule ('/images/' -> '/labels/', the
 * extension -> '.txt'); a label line is `class cx cy w h`, normalised, or a
 * polygon `class x1 y1 x2 y2 ...` converted to its box. Bad data never stops a
 * scan: a corrupt image or a label file with a bad line skips that image with
 * one warning, duplicate rows are removed, and everything is counted in the
 * summary. A `download:` key is never run. */
#ifndef OT_DATASET_H
#define OT_DATASET_H

#include "core/status.h"
#include <stdbool.h>

/* ---- dataset YAML ---- */
typedef struct ot_data_cfg {
    char *yaml;          /* the file read */
    char *root;          /* resolved `path` */
    char **split[3];     /* train, val, test: resolved sources (NULL-free arrays) */
    int n_split[3];
    int nc;
    char **names;        /* nc names */
    bool has_download;   /* the YAML has a download: key (never run) */
} ot_data_cfg;

enum { OT_SPLIT_TRAIN = 0, OT_SPLIT_VAL = 1, OT_SPLIT_TEST = 2 };

ot_status ot_data_cfg_load(const char *yaml_path, ot_data_cfg *cfg, ot_error *err);
void ot_data_cfg_free(ot_data_cfg *cfg);
/* "train", "val", "test" -> OT_SPLIT_*; -1 when unknown */
int ot_split_index(const char *name);
/* val.py's is_coco: the val entry is one path ending in coco/val2017.txt. */
bool ot_data_is_coco(const ot_data_cfg *cfg);

/* ---- path rules ---- */
/* Ultralytics img2label_paths: the last '/images/' becomes '/labels/', the
 * extension becomes '.txt'. Returns a malloc'd string. */
char *ot_img2label_path(const char *img);
/* Extension (without dot) is one of Ultralytics IMG_FORMATS (case-insensitive). */
bool ot_is_image_path(const char *path);
/* Image files of sources (folders searched recursively, .txt lists, or image
 * files), sorted as Python sorts strings. A missing source is an error naming
 * where it was looked for. */
ot_status ot_list_images(char *const *sources, int n_sources, char ***files, int64_t *n, ot_error *err);

/* ---- labels ---- */
/* Tolerance for normalised coordinates outside 0..1 (clipped when within). */
#define OT_LABEL_TOL 1e-3f

typedef struct ot_label_result {
    float *rows;        /* (n, 5) class cx cy w h; malloc'd, NULL when n == 0 */
    int n;
    int duplicates;     /* duplicate rows removed */
    int polygons;       /* lines that were polygons */
    int bad_line;       /* 1-based line of the first bad line; 0 when all good */
    char why[160];      /* what was wrong with it */
} ot_label_result;
/* Parse a label file's text. Returns OT_OK even for bad lines (see bad_line);
 * errors only for out-of-memory. */
ot_status ot_labels_parse(const char *text, size_t len, int nc, ot_label_result *r, ot_error *err);

/* ---- dataset ---- */
typedef struct ot_data_summary {
    int64_t listed;          /* image files found */
    int64_t images;          /* usable images */
    int64_t labelled;        /* label file found with boxes */
    int64_t missing;         /* no label file (background) */
    int64_t empty;           /* empty label file (background) */
    int64_t corrupt;         /* unreadable, corrupt, truncated or too small image: skipped */
    int64_t bad_labels;      /* label file with a bad line: image skipped */
    int64_t duplicates;      /* duplicate label rows removed */
    int64_t polygons;        /* polygon lines converted to boxes */
    int64_t boxes;           /* boxes in usable images */
    int64_t *per_class;      /* (nc) boxes per class */
} ot_data_summary;

typedef struct ot_dataset {
    int64_t n;               /* usable images */
    int nc;
    char **im_files, **lb_files;  /* (n) */
    int32_t *w0, *h0;        /* (n) original size after EXIF orientation */
    int32_t *n_labels;       /* (n) */
    float **labels;          /* (n) -> (n_labels, 5) class cx cy w h, normalised */
    ot_data_summary sum;
} ot_dataset;

/* Scan the images of sources with `threads` threads (>= 1): verify every image
 * and label, print one warning per skipped image (unless quiet), and fill the
 * summary. No usable image at all is an error. */
ot_status ot_dataset_open(char *const *sources, int n_sources, int nc, int threads, bool quiet, ot_dataset **out,
                          ot_error *err);
/* The split of a dataset YAML (OT_SPLIT_*); a split that is not set is an error. */
ot_status ot_dataset_open_split(const ot_data_cfg *cfg, int split, int threads, bool quiet, ot_dataset **out,
                                ot_error *err);
void ot_dataset_destroy(ot_dataset *d);

#endif
