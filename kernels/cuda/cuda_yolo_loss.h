/* cuda_yolo_loss.h: the device part of the YOLOv5 loss on CUDA
 * (kernels/cuda/yolo_loss.cu), callable from C, with kernels/yolo_loss.h's
 * argument struct and call order: for each head l, targets(A, l) then
 * objectness(A, l); items(A) last. A is a host struct whose pointers are device
 * memory (A->part and each layer's link are the device kernels' scratch);
 * stream: a cudaStream_t (NULL: the default stream). Every reduction is a fixed
 * tree (no float atomics), so a run repeats its bits. */
#ifndef OT_CUDA_YOLO_LOSS_H
#define OT_CUDA_YOLO_LOSS_H

#include "../yolo_loss.h"

#ifdef __cplusplus
extern "C" {
#endif

void ot_cuda_yolo_loss_targets(const ot_yolo_loss_args *A, int l, void *stream);
void ot_cuda_yolo_loss_objectness(const ot_yolo_loss_args *A, int l, void *stream);
void ot_cuda_yolo_loss_items(const ot_yolo_loss_args *A, void *stream);

#ifdef __cplusplus
}
#endif

#endif
