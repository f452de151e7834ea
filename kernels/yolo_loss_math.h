/* yolo_loss_math.h: the per-element math of the YOLOv5 v7.0 loss (utils/loss.py
 * ComputeLoss, utils/metrics.py bbox_iou), forward and analytic backward, for
 * the loss kernels of every device (kernels/yolo_loss.c on the CPU;
 * kernels/cuda/yolo_loss.cu includes this header as is). Plain C over doubles: math.h only, no other libc
 * call, no allocation, no state.
 *
 * The expressions are the reference for the loss's bits: tests compare runs of
 * the same binary bit for bit (resume), so change an operation's order here
 * only on purpose. */
#ifndef OT_YOLO_LOSS_MATH_H
#define OT_YOLO_LOSS_MATH_H

#include <math.h>

#if defined(__CUDACC__)
#define OT_YL_FN static inline __host__ __device__
#else
#define OT_YL_FN static inline
#endif

#define OT_YL_PI 3.14159265358979323846 /* M_PI, which C11's math.h need not define */

OT_YL_FN double ot_yl_sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* BCE-with-logits (pos_weight pw) of logit x against target t, FocalLoss
 * (alpha 0.25) when gamma > 0: returns the loss, *dx = d loss / d x. */
OT_YL_FN double ot_yl_bce(double x, double t, double pw, double gamma, double *dx) {
    double lw = (pw - 1.0) * t + 1.0;
    double sp = log1p(exp(-fabs(x))) + fmax(-x, 0.0); /* -log sigmoid(x) */
    double l = (1.0 - t) * x + lw * sp, s = ot_yl_sigm(x), d = (1.0 - t) - lw * (1.0 - s);
    if (gamma > 0) {
        double pt = t * s + (1.0 - t) * (1.0 - s), af = t * 0.25 + (1.0 - t) * 0.75, q = 1.0 - pt;
        double mf = pow(q, gamma), dmf = -gamma * pow(q, gamma - 1.0) * (2.0 * t - 1.0) * s * (1.0 - s);
        *dx = d * af * mf + l * af * dmf;
        return l * af * mf;
    }
    *dx = d;
    return l;
}

/* d min(a, b) / d a, d max(a, b) / d a (ties split in halves, like PyTorch) */
OT_YL_FN double ot_yl_dmin_a(double a, double b) { return a < b ? 1.0 : a == b ? 0.5 : 0.0; }
OT_YL_FN double ot_yl_dmax_a(double a, double b) { return a > b ? 1.0 : a == b ? 0.5 : 0.0; }

/* CIoU of b1 (predicted, xywh) with b2 (target), eps 1e-7, alpha detached.
 * When d1 is not NULL: d1 += g * d ciou / d b1 (g = d loss / d ciou). The
 * returned value does not depend on g or d1. */
OT_YL_FN double ot_yl_ciou(const double b1[4], const double b2[4], double g, double d1[4]) {
    const double eps = 1e-7, k = 4.0 / (OT_YL_PI * OT_YL_PI);
    double x1 = b1[0], y1 = b1[1], w1 = b1[2], h1 = b1[3], x2 = b2[0], y2 = b2[1], w2 = b2[2], h2 = b2[3];
    double a_x1 = x1 - w1 / 2, a_x2 = x1 + w1 / 2, a_y1 = y1 - h1 / 2, a_y2 = y1 + h1 / 2;
    double b_x1 = x2 - w2 / 2, b_x2 = x2 + w2 / 2, b_y1 = y2 - h2 / 2, b_y2 = y2 + h2 / 2;
    double iw_raw = fmin(a_x2, b_x2) - fmax(a_x1, b_x1), ih_raw = fmin(a_y2, b_y2) - fmax(a_y1, b_y1);
    double iw = fmax(iw_raw, 0.0), ih = fmax(ih_raw, 0.0), inter = iw * ih;
    double uni = w1 * h1 + w2 * h2 - inter + eps, iou = inter / uni;
    double cw = fmax(a_x2, b_x2) - fmin(a_x1, b_x1), ch = fmax(a_y2, b_y2) - fmin(a_y1, b_y1);
    double c2 = cw * cw + ch * ch + eps;
    double dxc = b_x1 + b_x2 - a_x1 - a_x2, dyc = b_y1 + b_y2 - a_y1 - a_y2, rho2 = (dxc * dxc + dyc * dyc) / 4;
    double da = atan(w2 / h2) - atan(w1 / h1), v = k * da * da, alpha = v / (v - iou + (1 + eps));
    double out = iou - (rho2 / c2 + v * alpha);
    if (!d1) return out;
    /* backward */
    double d_iou = g, d_rho2 = -g / c2, d_c2 = g * rho2 / (c2 * c2), d_v = -g * alpha;
    double d_inter = d_iou / uni, d_uni = -d_iou * inter / (uni * uni);
    double d_w1 = d_uni * h1, d_h1 = d_uni * w1;
    d_inter -= d_uni;
    double d_iw = d_inter * ih, d_ih = d_inter * iw;
    double d_iwr = iw_raw >= 0 ? d_iw : 0, d_ihr = ih_raw >= 0 ? d_ih : 0;
    double d_ax1 = 0, d_ax2 = 0, d_ay1 = 0, d_ay2 = 0;
    d_ax2 += d_iwr * ot_yl_dmin_a(a_x2, b_x2);
    d_ax1 -= d_iwr * ot_yl_dmax_a(a_x1, b_x1);
    d_ay2 += d_ihr * ot_yl_dmin_a(a_y2, b_y2);
    d_ay1 -= d_ihr * ot_yl_dmax_a(a_y1, b_y1);
    double d_cw = d_c2 * 2 * cw, d_ch = d_c2 * 2 * ch;
    d_ax2 += d_cw * ot_yl_dmax_a(a_x2, b_x2);
    d_ax1 -= d_cw * ot_yl_dmin_a(a_x1, b_x1);
    d_ay2 += d_ch * ot_yl_dmax_a(a_y2, b_y2);
    d_ay1 -= d_ch * ot_yl_dmin_a(a_y1, b_y1);
    d_ax1 -= d_rho2 * dxc / 2;
    d_ax2 -= d_rho2 * dxc / 2;
    d_ay1 -= d_rho2 * dyc / 2;
    d_ay2 -= d_rho2 * dyc / 2;
    double d_a1 = d_v * k * 2 * da * -1.0, r = w1 / h1, q = 1.0 / (1.0 + r * r); /* d atan(w1/h1) */
    d_w1 += d_a1 * q / h1;
    d_h1 += d_a1 * q * (-w1 / (h1 * h1));
    d1[0] += d_ax1 + d_ax2;
    d1[1] += d_ay1 + d_ay2;
    d1[2] += d_w1 + (d_ax2 - d_ax1) / 2;
    d1[3] += d_h1 + (d_ay2 - d_ay1) / 2;
    return out;
}

/* The predicted box of one cell as Ultralytics decodes it for the loss:
 * xy = sigmoid * 2 - 0.5, wh = (sigmoid * 2)^2 * anchor. s[4] receives the
 * four sigmoids (for ot_yl_box_grad). */
OT_YL_FN void ot_yl_pbox(float px, float py, float pw, float ph, double aw, double ah, double s[4], double pb[4]) {
    s[0] = ot_yl_sigm(px);
    s[1] = ot_yl_sigm(py);
    s[2] = ot_yl_sigm(pw);
    s[3] = ot_yl_sigm(ph);
    pb[0] = s[0] * 2 - 0.5;
    pb[1] = s[1] * 2 - 0.5;
    pb[2] = (s[2] * 2) * (s[2] * 2) * aw;
    pb[3] = (s[3] * 2) * (s[3] * 2) * ah;
}

/* d loss / d logit of the four box channels from d loss / d pbox (float32, as
 * the gradient buffers are). */
OT_YL_FN void ot_yl_box_grad(const double d[4], const double s[4], double aw, double ah, float g[4]) {
    g[0] = (float)(d[0] * 2 * s[0] * (1 - s[0]));
    g[1] = (float)(d[1] * 2 * s[1] * (1 - s[1]));
    g[2] = (float)(d[2] * 8 * s[2] * s[2] * (1 - s[2]) * aw);
    g[3] = (float)(d[3] * 8 * s[3] * s[3] * (1 - s[3]) * ah);
}

#endif
