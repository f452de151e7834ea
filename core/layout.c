/* layout.c: first-fit arena placement by lifetime (core/layout.h). Items are
 * placed in order of birth at the lowest offset that does not overlap a live
 * item; an item dies after its death time, so an op's outputs never share
 * bytes with its own inputs. */
#include "layout.h"
#include <stdlib.h>
#include <string.h>

typedef struct { size_t off, size; int death; } block;

static size_t align_up(size_t x) { return (x + OT_ARENA_ALIGN - 1) & ~(size_t)(OT_ARENA_ALIGN - 1); }

static const int *g_birth;
static int by_birth(const void *a, const void *b) {
    int ia = *(const int *)a, ib = *(const int *)b;
    if (g_birth[ia] != g_birth[ib]) return g_birth[ia] < g_birth[ib] ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

size_t ot_layout_first_fit(int n, const int *birth, const int *death, const size_t *size, size_t *offset) {
    int *order = malloc(sizeof(int) * (size_t)(n ? n : 1));
    block *live = malloc(sizeof(block) * (size_t)(n + 1));
    if (!order || !live) { free(order); free(live); return (size_t)-1; }
    int m = 0;
    for (int i = 0; i < n; i++) if (birth[i] >= 0) order[m++] = i;
    g_birth = birth;
    qsort(order, (size_t)m, sizeof(int), by_birth);
    int n_live = 0;
    size_t top = 0;
    for (int k = 0; k < m; k++) {
        int i = order[k], t = birth[i], w = 0;
        for (int b = 0; b < n_live; b++) if (live[b].death >= t) live[w++] = live[b];
        n_live = w;
        size_t need = align_up(size[i]), off = 0;
        int pos = 0;
        for (; pos < n_live; pos++) { /* live is sorted by offset: first gap that fits */
            if (live[pos].off >= off + need) break;
            size_t end = live[pos].off + live[pos].size;
            if (end > off) off = end;
        }
        memmove(&live[pos + 1], &live[pos], sizeof(block) * (size_t)(n_live - pos));
        live[pos] = (block){off, need, death[i]};
        n_live++;
        offset[i] = off;
        if (off + need > top) top = off + need;
    }
    free(order);
    free(live);
    return top;
}
