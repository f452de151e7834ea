/* image_io.c: JPEG (TurboJPEG) and PNG (libpng simplified API) decoding, EXIF
 * orientation, JPEG writing. See image_io.h. */
#include "train/image_io.h"
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <turbojpeg.h>
#include <jpeglib.h>

bool ot_image_alloc(ot_image *im, int w, int h) {
    im->w = w;
    im->h = h;
    im->px = w > 0 && h > 0 ? malloc((size_t)w * (size_t)h * 3) : NULL;
    return im->px != NULL;
}

void ot_image_free(ot_image *im) {
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

ot_status ot_file_read(const char *path, uint8_t **buf, size_t *len, ot_error *err) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) { fclose(f); return ot_fail(err, OT_ERR_IO, "%s: cannot seek", path); }
    off_t n = ftello(f);
    if (n < 0 || n > ((off_t)1 << 30)) { fclose(f); return ot_fail(err, OT_ERR_IO, "%s: unreadable or larger than 1 GiB", path); }
    rewind(f);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (!b) { fclose(f); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); }
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) { free(b); return ot_fail(err, OT_ERR_IO, "%s: short read", path); }
    *buf = b;
    *len = (size_t)n;
    return OT_OK;
}

/* ---- EXIF ---- */

static unsigned rd16(const uint8_t *p, bool le) { return le ? (unsigned)(p[0] | p[1] << 8) : (unsigned)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p, bool le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation tag 0x0112 in IFD0 of a TIFF block. */
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    bool le;
    if (t[0] == 'I' && t[1] == 'I') le = true;
    else if (t[0] == 'M' && t[1] == 'M') le = false;
    else return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned cnt = rd16(t + ifd, le);
    for (unsigned i = 0; i < cnt; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) == 0x0112 && rd16(t + e + 2, le) == 3) {
            unsigned v = rd16(t + e + 8, le);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int ot_jpeg_exif_orientation(const uint8_t *b, size_t n) {
    if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return 1;
    size_t i = 2;
    while (i + 4 <= n) {
        if (b[i] != 0xFF) return 1;
        unsigned m = b[i + 1];
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0xFF) { i += m == 0xFF ? 1 : 2; continue; }
        if (m == 0xDA || m == 0xD9) return 1; /* start of scan: no EXIF before it */
        size_t seg = (size_t)(b[i + 2] << 8 | b[i + 3]);
        if (seg < 2 || i + 2 + seg > n) return 1;
        if (m == 0xE1 && seg >= 16 && memcmp(b + i + 4, "Exif\0\0", 6) == 0)
            return tiff_orientation(b + i + 10, seg - 8);
        i += 2 + seg;
    }
    return 1;
}

bool ot_image_orient(ot_image *im, int o) {
    if (o <= 1 || o > 8) return true;
    int w = im->w, h = im->h;
    bool swap = o >= 5;
    ot_image out;
    if (!ot_image_alloc(&out, swap ? h : w, swap ? w : h)) return false;
    for (int y = 0; y < out.h; y++)
        for (int x = 0; x < out.w; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;
            case 4: sx = x; sy = h - 1 - y; break;
            case 5: sx = y; sy = x; break;                  /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;          /* rotate 90 clockwise */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;  /* transverse */
            default: sx = w - 1 - y; sy = x; break;         /* 8: rotate 90 counter-clockwise */
            }
            memcpy(out.px + ((size_t)y * out.w + x) * 3, im->px + ((size_t)sy * w + sx) * 3, 3);
        }
    free(im->px);
    *im = out;
    return true;
}

/* ---- JPEG ---- */

/* out->px of *cap bytes is reused when large enough (cap NULL: always allocated) */
static bool image_alloc_reuse(ot_image *im, int w, int h, size_t *cap) {
    size_t need = (size_t)w * (size_t)h * 3;
    if (!cap) return ot_image_alloc(im, w, h);
    if (!im->px || *cap < need) {
        free(im->px);
        im->px = malloc(need ? need : 1);
        *cap = im->px ? need : 0;
    }
    im->w = w;
    im->h = h;
    return im->px != NULL;
}

static ot_status decode_jpeg(const uint8_t *buf, size_t len, const char *name, int need_long, bool verify_only,
                             ot_image *out, size_t *cap, int *w0, int *h0, ot_error *err) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return ot_fail(err, OT_ERR_NOMEM, "%s: cannot create a JPEG decoder", name);
    int w, h, ss, cs;
    ot_status st = OT_OK;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &ss, &cs) != 0) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: corrupt JPEG: %s", name, tjGetErrorStr2(tj));
        goto done;
    }
    if (w < 1 || h < 1 || (int64_t)w * h > ((int64_t)1 << 28)) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: JPEG of absurd size %dx%d", name, w, h);
        goto done;
    }
    int orient = ot_jpeg_exif_orientation(buf, len);
    bool swap = orient >= 5;
    if (w0) *w0 = swap ? h : w;
    if (h0) *h0 = swap ? w : h;
    int nsf = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&nsf);
    int long0 = w > h ? w : h, sw = w, sh = h;
    if (verify_only) need_long = 1;
    if (need_long > 0 && long0 >= 2 * need_long) {
        for (int i = 0; i < nsf; i++) {
            if (sf[i].num > sf[i].denom) continue;
            int tw = TJSCALED(w, sf[i]), th = TJSCALED(h, sf[i]);
            int tl = tw > th ? tw : th;
            if (tl >= need_long && (int64_t)tw * th < (int64_t)sw * sh) { sw = tw; sh = th; }
        }
    }
    if (!image_alloc_reuse(out, sw, sh, cap)) { st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory (%dx%d)", name, sw, sh); goto done; }
    if (tjDecompress2(tj, buf, (unsigned long)len, out->px, sw, sw * 3, sh, TJPF_BGR, 0) != 0) {
        st = ot_fail(err, OT_ERR_PARSE, "%s: corrupt or truncated JPEG: %s", name, tjGetErrorStr2(tj));
        if (!cap) ot_image_free(out);
        goto done;
    }
    if (!verify_only && orient > 1) {
        if (!ot_image_orient(out, orient)) { if (!cap) ot_image_free(out); st = ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", name); }
        else if (cap) *cap = (size_t)out->w * out->h * 3; /* a new buffer of that size */
    }
done:
    tjDestroy(tj);
    return st;
}

/* Rows [row0, row1) of a JPEG through libjpeg: those above are skipped (their
 * coefficients are read, not transformed), the decoder stops after row1 (a
 * mosaic tile often needs only a band of its image).
 * The same pixels as tjDecompress2 (same library, out_color_space BGR, ISLOW
 * DCT, fancy upsampling). Only without DCT scaling and EXIF rotation; any
 * libjpeg warning aborts. false: not done (the caller decodes all). */
typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} jerr_mgr;
static void jerr_exit(j_common_ptr c) { longjmp(((jerr_mgr *)(void *)c->err)->jb, 1); }
static void jerr_emit(j_common_ptr c, int level) {
    if (level < 0) longjmp(((jerr_mgr *)(void *)c->err)->jb, 1); /* a warning: corrupt data */
}

static bool decode_jpeg_rows(const uint8_t *buf, size_t len, int need_long, int row0, int row1, ot_image *out,
                             size_t *cap, int *w0, int *h0) {
    if (ot_jpeg_exif_orientation(buf, len) != 1) return false;
    struct jpeg_decompress_struct ci;
    jerr_mgr je;
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jerr_exit;
    je.pub.emit_message = jerr_emit;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    int w = (int)ci.image_width, h = (int)ci.image_height, long0 = w > h ? w : h;
    if (w < 1 || h < 1 || (int64_t)w * h > ((int64_t)1 << 28) || (need_long > 0 && long0 >= 2 * need_long) ||
        !image_alloc_reuse(out, w, h, cap)) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    ci.out_color_space = JCS_EXT_BGR;
    jpeg_start_decompress(&ci);
    if ((int)ci.output_width != w || (int)ci.output_height != h || ci.output_components != 3) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    int stop = row1 < h ? row1 : h;
    if (row0 > 0 && row0 < stop) jpeg_skip_scanlines(&ci, (JDIMENSION)row0); /* entropy-decoded, not output */
    while ((int)ci.output_scanline < stop) {
        JSAMPROW r = out->px + (size_t)ci.output_scanline * (size_t)w * 3;
        jpeg_read_scanlines(&ci, &r, 1);
    }
    jpeg_destroy_decompress(&ci); /* aborts the rest */
    if (w0) *w0 = w;
    if (h0) *h0 = h;
    return true;
}

/* ---- PNG ---- */

static ot_status decode_png(const uint8_t *buf, size_t len, const char *name, ot_image *out, int *w0, int *h0,
                            ot_error *err) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, buf, len))
        return ot_fail(err, OT_ERR_PARSE, "%s: corrupt PNG: %s", name, pi.message);
    if (pi.width < 1 || pi.height < 1 || (uint64_t)pi.width * pi.height > ((uint64_t)1 << 28)) {
        png_image_free(&pi);
        return ot_fail(err, OT_ERR_PARSE, "%s: PNG of absurd size %ux%u", name, pi.width, pi.height);
    }
    /* 16-bit samples are sRGB-encoded like 8-bit ones (cv2 drops the low byte) */
    pi.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
    pi.format = PNG_FORMAT_BGRA; /* alpha dropped below, as cv2.imread(IMREAD_COLOR) does */
    int w = (int)pi.width, h = (int)pi.height;
    uint8_t *bgra = malloc((size_t)w * h * 4);
    if (!bgra) { png_image_free(&pi); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", name); }
    if (!png_image_finish_read(&pi, NULL, bgra, 0, NULL)) {
        ot_status st = ot_fail(err, OT_ERR_PARSE, "%s: corrupt or truncated PNG: %s", name, pi.message);
        png_image_free(&pi);
        free(bgra);
        return st;
    }
    if (!ot_image_alloc(out, w, h)) { free(bgra); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", name); }
    for (size_t i = 0, n = (size_t)w * h; i < n; i++) memcpy(out->px + 3 * i, bgra + 4 * i, 3);
    free(bgra);
    if (w0) *w0 = w;
    if (h0) *h0 = h;
    return OT_OK;
}

/* ---- entry points ---- */

static ot_status image_decode(const uint8_t *buf, size_t len, const char *name, int need_long, ot_image *out,
                              size_t *cap, int *w0, int *h0, ot_error *err) {
    if (len == 0) return ot_fail(err, OT_ERR_PARSE, "%s: empty file", name);
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return decode_jpeg(buf, len, name, need_long, false, out, cap, w0, h0, err);
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0) {
        if (cap) { ot_image_free(out); *cap = 0; }
        ot_status st = decode_png(buf, len, name, out, w0, h0, err);
        if (cap && st == OT_OK) *cap = (size_t)out->w * out->h * 3;
        return st;
    }
    return ot_fail(err, OT_ERR_UNSUPPORTED, "%s: not a JPEG or PNG image", name);
}

ot_status ot_image_decode(const uint8_t *buf, size_t len, const char *name, int need_long, ot_image *out, int *w0,
                          int *h0, ot_error *err) {
    out->px = NULL;
    out->w = out->h = 0;
    return image_decode(buf, len, name, need_long, out, NULL, w0, h0, err);
}

ot_status ot_image_load_reuse(const char *path, int need_long, int row0, int row1, ot_image_scratch *s, int *w0,
                              int *h0, ot_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ot_fail(err, OT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    off_t n = -1;
    if (fseeko(f, 0, SEEK_END) == 0) n = ftello(f);
    if (n < 0 || n > ((off_t)1 << 30)) { fclose(f); return ot_fail(err, OT_ERR_IO, "%s: unreadable or larger than 1 GiB", path); }
    rewind(f);
    if (s->file_cap < (size_t)n || !s->file) {
        free(s->file);
        s->file = malloc(n > 0 ? (size_t)n : 1);
        s->file_cap = s->file ? (size_t)n : 0;
        if (!s->file) { fclose(f); return ot_fail(err, OT_ERR_NOMEM, "%s: out of memory", path); }
    }
    size_t got = fread(s->file, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) return ot_fail(err, OT_ERR_IO, "%s: short read", path);
    const uint8_t *b = s->file;
    if (row1 > 0 && n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF &&
        decode_jpeg_rows(b, (size_t)n, need_long, row0, row1, &s->im, &s->cap, w0, h0))
        return OT_OK;
    return image_decode(s->file, (size_t)n, path, need_long, &s->im, &s->cap, w0, h0, err);
}

void ot_image_scratch_free(ot_image_scratch *s) {
    free(s->file);
    ot_image_free(&s->im);
    memset(s, 0, sizeof *s);
}

ot_status ot_image_load(const char *path, int need_long, ot_image *out, int *w0, int *h0, ot_error *err) {
    uint8_t *buf;
    size_t len;
    out->px = NULL;
    out->w = out->h = 0;
    OT_TRY(ot_file_read(path, &buf, &len, err));
    ot_status st = ot_image_decode(buf, len, path, need_long, out, w0, h0, err);
    free(buf);
    return st;
}

ot_status ot_image_verify(const char *path, int *w0, int *h0, ot_error *err) {
    uint8_t *buf;
    size_t len;
    OT_TRY(ot_file_read(path, &buf, &len, err));
    ot_image im = {0, 0, NULL};
    ot_status st;
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        st = decode_jpeg(buf, len, path, 1, true, &im, NULL, w0, h0, err);
    else
        st = ot_image_decode(buf, len, path, 0, &im, w0, h0, err);
    ot_image_free(&im);
    free(buf);
    return st;
}

ot_status ot_image_write_jpeg(const char *path, const ot_image *im, int quality, ot_error *err) {
    tjhandle tj = tjInitCompress();
    if (!tj) return ot_fail(err, OT_ERR_NOMEM, "%s: cannot create a JPEG encoder", path);
    unsigned char *jb = NULL;
    unsigned long jn = 0;
    ot_status st = OT_OK;
    if (tjCompress2(tj, im->px, im->w, im->w * 3, im->h, TJPF_BGR, &jb, &jn, TJSAMP_420, quality, 0) != 0) {
        st = ot_fail(err, OT_ERR_INTERNAL, "%s: JPEG encoding failed: %s", path, tjGetErrorStr2(tj));
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) st = ot_fail(err, OT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        else {
            if (fwrite(jb, 1, jn, f) != jn) st = ot_fail(err, OT_ERR_IO, "%s: short write", path);
            if (fclose(f) != 0 && st == OT_OK) st = ot_fail(err, OT_ERR_IO, "%s: cannot write", path);
        }
    }
    tjFree(jb);
    tjDestroy(tj);
    return st;
}
