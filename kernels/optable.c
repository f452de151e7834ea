/* optable.c: the op table, the only list of ops. Each op's definition row and
 * its CPU implementation row are defined next to its kernels
 * (kernels/<family>.c); the two tables below list them in the same order. */
#include "ops.h"
#include "device_kernels.h"
#include <stdio.h>
#include <string.h>

#define OPS(X)                                                                                                        \
    X(conv) X(batchnormalization)                                                                                     \
    X(sigmoid) X(add) X(sub) X(mul) X(div) X(pow)                                                                     \
    X(concat) X(maxpool) X(resize) X(upsample)                                                                        \
    X(reshape) X(flatten) X(identity) X(squeeze) X(unsqueeze)                                                         \
    X(transpose) X(split) X(slice)                                                                                    \
    X(constant) X(shape) X(gather) X(cast) X(constantofshape)

#define DECLARE(op) extern const ot_op_def ot_op_##op; extern const ot_op_impl ot_cpu_##op;
OPS(DECLARE)
#undef DECLARE

#define DEF_ROW(op) &ot_op_##op,
#define CPU_ROW(op) &ot_cpu_##op,
static const ot_op_def *const defs[] = {OPS(DEF_ROW)};
static const ot_op_impl *const cpu_impls[] = {OPS(CPU_ROW)};
#undef DEF_ROW
#undef CPU_ROW
_Static_assert(sizeof defs / sizeof defs[0] == sizeof cpu_impls / sizeof cpu_impls[0], "one CPU row per definition");

int ot_op_count(void) { return (int)(sizeof defs / sizeof defs[0]); }

const ot_op_def *ot_op_get(int index) { return index >= 0 && index < ot_op_count() ? defs[index] : NULL; }

/* Registered device tables (kernels/device_kernels.h): one per kind, with the
 * rows resolved to op indices at registration. Registration happens once at
 * start-up, before any plan (ot_cuda_kernels_install). */
static struct {
    const ot_device_kernels *t;
    const ot_op_impl *impl[sizeof defs / sizeof defs[0]];
} reg[OT_DEV_KINDS];

bool ot_device_kernels_register(ot_device_kind k, const ot_device_kernels *t) {
    if (k == OT_DEV_CPU || k == OT_DEV_CPU_GUARD || (int)k < 0 || k >= OT_DEV_KINDS) return false;
    const ot_op_impl *impl[sizeof defs / sizeof defs[0]] = {0};
    for (int r = 0; t && r < t->n_ops; r++) {
        int i = ot_op_lookup(t->ops[r].op, "");
        if (i < 0) {
            fprintf(stderr, "onnx-train: kernel table '%s' lists op '%s', which the op table does not have\n", t->name, t->ops[r].op);
            return false;
        }
        impl[i] = t->ops[r].impl;
    }
    memcpy(reg[k].impl, impl, sizeof impl);
    reg[k].t = t;
    return true;
}

const ot_device_kernels *ot_device_kernels_get(ot_device_kind k) {
    return (int)k >= 0 && k < OT_DEV_KINDS ? reg[k].t : NULL;
}

const ot_op_impl *ot_op_impl_get(int index, ot_device_kind dev) {
    if (index < 0 || index >= ot_op_count()) return NULL;
    switch (dev) {
    case OT_DEV_CPU:
    case OT_DEV_CPU_GUARD: return cpu_impls[index]; /* the guard runs the CPU kernels over guarded memory */
    default: return (int)dev >= 0 && dev < OT_DEV_KINDS ? reg[dev].impl[index] : NULL; /* registered tables */
    }
}

int ot_op_lookup(const char *op_type, const char *domain) {
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return -1;
    for (int i = 0; i < ot_op_count(); i++)
        if (strcmp(defs[i]->name, op_type) == 0) return i;
    return -1;
}
