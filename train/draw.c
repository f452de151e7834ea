/* draw.c: box and text drawing, batch grids (see draw.h). */
#include "train/draw.h"
#include <fontconfig/fontconfig.h>
#include <ft2build.h>
#include FT_FREETYPE_H
#include <math.h>
#include <string.h>

const uint8_t *ot_class_color(int cls) {
    static const char *hex[20] = {"FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17",
                                  "3DDB86", "1A9334", "00D4BB", "2C99A8", "00C2FF", "344593", "6473FF",
                                  "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7"};
    static uint8_t bgr[20][3];
    static bool init;
    if (!init) {
        for (int i = 0; i < 20; i++) {
            unsigned v = (unsigned)strtoul(hex[i], NULL, 16);
            bgr[i][0] = v & 255; bgr[i][1] = (v >> 8) & 255; bgr[i][2] = (v >> 16) & 255;
        }
        init = true;
    }
    return bgr[(cls < 0 ? -cls : cls) % 20];
}

void ot_draw_fill(ot_image *im, int x1, int y1, int x2, int y2, const uint8_t c[3]) {
    if (x1 < 0) x1 = 0;
    if (y1 < 0) y1 = 0;
    if (x2 >= im->w) x2 = im->w - 1;
    if (y2 >= im->h) y2 = im->h - 1;
    for (int y = y1; y <= y2; y++)
        for (int x = x1; x <= x2; x++) memcpy(im->px + ((size_t)y * im->w + x) * 3, c, 3);
}

void ot_draw_rect(ot_image *im, int x1, int y1, int x2, int y2, const uint8_t c[3], int t) {
    if (t < 1) t = 1;
    ot_draw_fill(im, x1, y1, x2, y1 + t - 1, c);
    ot_draw_fill(im, x1, y2 - t + 1, x2, y2, c);
    ot_draw_fill(im, x1, y1, x1 + t - 1, y2, c);
    ot_draw_fill(im, x2 - t + 1, y1, x2, y2, c);
}

/* ---- text ---- */

struct ot_font { FT_Library lib; FT_Face face; int px; };

ot_font *ot_font_open(int px) {
    char *file = NULL;
    if (FcInit()) {
        FcPattern *pat = FcNameParse((const FcChar8 *)"DejaVu Sans:style=Book");
        if (pat) {
            FcConfigSubstitute(NULL, pat, FcMatchPattern);
            FcDefaultSubstitute(pat);
            FcResult res;
            FcPattern *m = FcFontMatch(NULL, pat, &res);
            FcChar8 *f = NULL;
            if (m && FcPatternGetString(m, FC_FILE, 0, &f) == FcResultMatch) file = ot_strdup((const char *)f);
            if (m) FcPatternDestroy(m);
            FcPatternDestroy(pat);
        }
    }
    if (!file) return NULL;
    ot_font *f = calloc(1, sizeof *f);
    if (!f || FT_Init_FreeType(&f->lib)) { free(f); free(file); return NULL; }
    if (FT_New_Face(f->lib, file, 0, &f->face) || FT_Set_Pixel_Sizes(f->face, 0, (FT_UInt)px)) {
        FT_Done_FreeType(f->lib);
        free(f);
        free(file);
        return NULL;
    }
    free(file);
    f->px = px;
    return f;
}

void ot_font_close(ot_font *f) {
    if (!f) return;
    FT_Done_Face(f->face);
    FT_Done_FreeType(f->lib);
    free(f);
}

static uint32_t utf8_next(const char **s) {
    const unsigned char *p = (const unsigned char *)*s;
    uint32_t c = *p++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more) c &= 0x3F >> more;
    while (more-- && (*p & 0xC0) == 0x80) c = c << 6 | (*p++ & 0x3F);
    *s = (const char *)p;
    return c;
}

static int text_run(ot_image *im, ot_font *f, int x, int y, const char *s, const uint8_t c[3]) {
    if (!f) return 0;
    int pen = x, base = y + (int)(f->face->size->metrics.ascender >> 6);
    while (*s) {
        uint32_t ch = utf8_next(&s);
        if (FT_Load_Char(f->face, ch, im ? FT_LOAD_RENDER : FT_LOAD_DEFAULT)) continue;
        FT_GlyphSlot g = f->face->glyph;
        if (im) {
            FT_Bitmap *b = &g->bitmap;
            for (unsigned r = 0; r < b->rows; r++)
                for (unsigned q = 0; q < b->width; q++) {
                    int px = pen + g->bitmap_left + (int)q, py = base - g->bitmap_top + (int)r;
                    if (px < 0 || py < 0 || px >= im->w || py >= im->h) continue;
                    unsigned a = b->buffer[r * (unsigned)b->pitch + q];
                    uint8_t *d = im->px + ((size_t)py * im->w + px) * 3;
                    for (int k = 0; k < 3; k++) d[k] = (uint8_t)((d[k] * (255 - a) + c[k] * a + 127) / 255);
                }
        }
        pen += (int)(g->advance.x >> 6);
    }
    return pen - x;
}

int ot_text_width(ot_font *f, const char *s) { return text_run(NULL, f, 0, 0, s, NULL); }
int ot_draw_text(ot_image *im, ot_font *f, int x, int y, const char *s, const uint8_t c[3]) { return text_run(im, f, x, y, s, c); }

/* ---- batch grid ---- */

ot_status ot_draw_batch(const float *images, int n, int h, int w, const float *targets, int64_t nt,
                        char *const *names, int nc, int max_side, const char *path, ot_error *err) {
    if (n < 1) return ot_fail(err, OT_ERR_INVALID, "draw: empty batch");
    int ns = (int)ceil(sqrt((double)n));
    double scale = fmin(1.0, (double)max_side / (ns * (double)(w > h ? w : h)));
    int tw = (int)ceil(w * scale), th = (int)ceil(h * scale);
    int rows = (n + ns - 1) / ns;
    ot_image g;
    if (!ot_image_alloc(&g, ns * tw, rows * th)) return ot_fail(err, OT_ERR_NOMEM, "draw: out of memory");
    memset(g.px, 255, (size_t)g.w * g.h * 3);
    size_t plane = (size_t)w * h;
    for (int i = 0; i < n; i++) {
        int ox = (i % ns) * tw, oy = (i / ns) * th;
        const float *im = images + (size_t)i * 3 * plane;
        for (int y = 0; y < th; y++) {
            int sy = (int)(y / scale);
            if (sy >= h) sy = h - 1;
            for (int x = 0; x < tw; x++) {
                int sx = (int)(x / scale);
                if (sx >= w) sx = w - 1;
                uint8_t *d = g.px + ((size_t)(oy + y) * g.w + ox + x) * 3;
                for (int c = 0; c < 3; c++) { /* RGB planes -> BGR */
                    float v = im[(size_t)(2 - c) * plane + (size_t)sy * w + sx] * 255.f + 0.5f;
                    d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    int fpx = (int)fmax(10, round(fmin(tw, th) / 40.0));
    ot_font *font = ot_font_open(fpx);
    static const uint8_t white[3] = {255, 255, 255};
    for (int64_t k = 0; k < nt; k++) {
        const float *t = targets + 6 * k;
        int i = (int)t[0], cls = (int)t[1];
        if (i < 0 || i >= n) continue;
        int ox = (i % ns) * tw, oy = (i / ns) * th;
        int x1 = ox + (int)lrint((t[2] - t[4] / 2) * tw), x2 = ox + (int)lrint((t[2] + t[4] / 2) * tw);
        int y1 = oy + (int)lrint((t[3] - t[5] / 2) * th), y2 = oy + (int)lrint((t[3] + t[5] / 2) * th);
        const uint8_t *c = ot_class_color(cls);
        ot_draw_rect(&g, x1, y1, x2, y2, c, 2);
        if (font) {
            char label[128];
            if (cls >= 0 && cls < nc && names) snprintf(label, sizeof label, "%s", names[cls]);
            else snprintf(label, sizeof label, "%d", cls);
            int lw = ot_text_width(font, label), lh = fpx + 4;
            int ly = y1 - lh >= oy ? y1 - lh : y1;
            ot_draw_fill(&g, x1, ly, x1 + lw + 3, ly + lh - 1, c);
            ot_draw_text(&g, font, x1 + 2, ly + 1, label, white);
        }
    }
    for (int i = 0; i < n; i++) ot_draw_rect(&g, (i % ns) * tw, (i / ns) * th, (i % ns) * tw + tw - 1, (i / ns) * th + th - 1, white, 2);
    ot_font_close(font);
    ot_status st = ot_image_write_jpeg(path, &g, 90, err);
    ot_image_free(&g);
    return st;
}
