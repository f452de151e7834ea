/* tensor.c: dtype sizes, shape arithmetic, half floats, the shared test pattern. */
#include "tensor.h"
#include <string.h>

size_t ot_dtype_size(ot_dtype t) {
    switch (t) {
    case OT_F32: case OT_I32: return 4;
    case OT_I64: case OT_F64: return 8;
    case OT_F16: case OT_BF16: return 2;
    case OT_U8: case OT_I8: case OT_BOOL: return 1;
    default: return 0;
    }
}

const char *ot_dtype_name(ot_dtype t) {
    static _Thread_local char buf[24];
    switch (t) {
    case OT_F32: return "float32";
    case OT_I32: return "int32";
    case OT_I64: return "int64";
    case OT_F64: return "float64";
    case OT_F16: return "float16";
    case OT_BF16: return "bfloat16";
    case OT_U8: return "uint8";
    case OT_I8: return "int8";
    case OT_BOOL: return "bool";
    case OT_UNDEF: return "undefined";
    }
    static const char *other[] = {[3] = "int8", [4] = "uint16", [5] = "int16", [8] = "string", [12] = "uint32",
                                  [13] = "uint64", [14] = "complex64", [15] = "complex128", [16] = "bfloat16"};
    if ((int)t >= 0 && (size_t)t < sizeof other / sizeof other[0] && other[t]) return other[t];
    snprintf(buf, sizeof buf, "dtype#%d", (int)t);
    return buf;
}

bool ot_shape_numel(const ot_shape *s, int64_t *numel) {
    int64_t n = 1;
    if (s->rank < 0 || s->rank > OT_MAX_RANK) return false;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 0) return false;
        if (!ot_mul_ok(n, s->d[i], &n)) return false;
    }
    if (n > OT_MAX_NUMEL) return false;
    *numel = n;
    return true;
}

bool ot_shape_known(const ot_shape *s) {
    if (s->rank < 0) return false;
    for (int i = 0; i < s->rank; i++)
        if (s->d[i] < 0) return false;
    return true;
}

bool ot_shape_eq(const ot_shape *a, const ot_shape *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

ot_shape ot_shape_make(int rank, const int64_t *d) {
    ot_shape s;
    memset(&s, 0, sizeof s);
    s.rank = rank;
    for (int i = 0; i < rank && i < OT_MAX_RANK; i++) s.d[i] = d[i];
    return s;
}

char *ot_shape_str(const ot_shape *s, char *buf, size_t n) {
    size_t k = 0;
    if (s->rank < 0) { snprintf(buf, n, "[?]"); return buf; }
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < s->rank && k < n; i++) {
        if (s->d[i] < 0) k += (size_t)snprintf(buf + k, n - k, "%s?", i ? "," : "");
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)s->d[i]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

bool ot_shape_broadcast(const ot_shape *a, const ot_shape *b, ot_shape *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    ot_shape o;
    memset(&o, 0, sizeof o);
    o.rank = r;
    for (int i = 0; i < r; i++) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1) o.d[i] = da;
        else if (da == 1) o.d[i] = db;
        else return false;
    }
    *out = o;
    return true;
}

float ot_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ot_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)h;
}

static inline uint32_t lowbias32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}

void ot_fill_pattern(float *x, int64_t n, uint32_t seed) {
    uint32_t s = lowbias32(seed ^ 0x9e3779b9u);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(lowbias32((uint32_t)i ^ s) & 0xff) / 255.0f;
}
