/* layout.h: first-fit placement of buffers with known lifetimes in one arena
 * (used for forward activations and, in training, for activations and
 * gradients on the joint forward+backward timeline). */
#ifndef OT_LAYOUT_H
#define OT_LAYOUT_H

#include <stddef.h>

#define OT_ARENA_ALIGN 64

/* n items live over [birth[i], death[i]] (inclusive times); size[i] bytes
 * (rounded up to OT_ARENA_ALIGN). Items with birth < 0 are skipped. Items whose
 * lifetimes overlap never share bytes. Writes offset[i]; returns the arena size,
 * or (size_t)-1 when out of memory. */
size_t ot_layout_first_fit(int n, const int *birth, const int *death, const size_t *size, size_t *offset);

#endif
