/* loader.h: the multi-threaded YOLOv5 data loader. Worker threads (pthreads)
 * build samples (Ultralytics LoadImagesAndLabels.__getitem__: mosaic or
 * letterbox, random_perspective, mixup, HSV, flips) straight into prefetched
 * batch buffers: images (B, 3, H, W) float32 RGB in 0..1 and targets rows
 * (image index in batch, class, cx, cy, w, h) normalised, which is what
 * Ultralytics' collate_fn yields. Each sample's random numbers come from
 * (seed, epoch, dataset index), so a batch is the same whatever the number of
 * workers. Batch images are the backend's host staging memory (c.be: page-locked
 * for a GPU), uploaded by the step into the plan's fixed input slot. */
#ifndef OT_LOADER_H
#define OT_LOADER_H

#include "train/augment.h"
#include "train/dataset.h"
#include "train/hyp.h"

typedef struct ot_loader_cfg {
    int img_size;     /* 640; a multiple of stride */
    int batch_size;   /* 16 */
    int workers;      /* worker threads; 0 builds batches in the caller */
    int prefetch;     /* batches in flight (>= 2) */
    uint64_t seed;
    bool augment;     /* training augmentation */
    bool shuffle;     /* a new order each epoch (training) */
    bool rect;        /* rectangular batches sorted by aspect ratio (validation) */
    double pad;       /* rect padding in strides: 0.5 for validation */
    int stride;       /* 32 */
    bool cache_ram;   /* keep every decoded, resized image in memory (Ultralytics --cache ram) */
    int64_t cache_mb; /* else keep them up to this many MiB, first loaded first kept (0: none);
                       * default 1024. Cached or not, a sample is the same. */
    int rank, world;  /* data parallel: this rank iterates positions rank, rank + world, ...
                       * of each epoch's order padded to a multiple of world (torch
                       * DistributedSampler); world 0 or 1: the whole dataset */
    ot_hyp hyp;
    struct ot_backend *be; /* the device the batches go to (its host staging memory); NULL: the CPU */
} ot_loader_cfg;

/* Training defaults: 640, batch 16, 4 workers, augment, shuffle, hyp.scratch-low. */
void ot_loader_cfg_train(ot_loader_cfg *c);
/* Validation defaults: rect batches, pad 0.5, no augmentation, no shuffle. */
void ot_loader_cfg_val(ot_loader_cfg *c);

/* What validation needs to map boxes back (Ultralytics `shapes`). */
typedef struct ot_sample_shape {
    int h0, w0;       /* original */
    int h, w;         /* after load_image */
    double ratio;     /* letterbox r (1 for mosaic) */
    double dw, dh;    /* letterbox padding per side */
} ot_sample_shape;

typedef struct ot_batch {
    int64_t index;        /* batch number in the epoch */
    int n;                /* images in this batch (the last may be short) */
    int h, w;
    float *images;        /* (n, 3, h, w) */
    int64_t n_targets;
    float *targets;       /* (n_targets, 6) */
    int64_t *sample;      /* (n) dataset index of each image */
    ot_sample_shape *shapes; /* (n) */
} ot_batch;

typedef struct ot_loader ot_loader;

ot_status ot_loader_create(const ot_dataset *d, const ot_loader_cfg *c, ot_loader **out, ot_error *err);
void ot_loader_destroy(ot_loader *l);
int64_t ot_loader_num_batches(const ot_loader *l);
/* Start an epoch (stops an unfinished one). */
ot_status ot_loader_start(ot_loader *l, int64_t epoch, ot_error *err);
/* The next batch, valid until the next call; *b = NULL at the end of the epoch. */
ot_status ot_loader_next(ot_loader *l, const ot_batch **b, ot_error *err);
/* Images that failed to decode during loading (replaced by grey), so far. */
int64_t ot_loader_load_errors(const ot_loader *l);

/* Build one sample in the caller (tests, `data show`): hwc (out_h, out_w, 3) BGR
 * before the flips and CHW conversion, rows (n, 5) class cx cy w h normalised
 * after them. Buffers: hwc of img_size^2*3 (or the rect shape), rows of cap rows. */
typedef struct ot_sample_out {
    uint8_t *hwc;         /* final pixels, BGR HWC, flips applied */
    int w, h;
    float *rows;          /* (n, 5) */
    int n, cap;
} ot_sample_out;
ot_status ot_loader_sample(ot_loader *l, int64_t epoch, int64_t pos, ot_sample_out *o, ot_error *err);

#endif
