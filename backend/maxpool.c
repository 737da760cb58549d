#include "maxpool.h"

#include <float.h>
#include <stddef.h>

#include "clones.h" /* FG_CLONES: the row loops also for AVX (8-wide max) */

/* Output rows computed per channel block. */
static inline int out_rows(const be_maxpool_t *p)
{
    return p->rows > 0 ? p->rows : p->out_h;
}

int be_maxpool_fits(const be_maxpool_t *p)
{
    int last = p->blk == p->c && p->c % 8 == 0; /* channels last: one block of all c */
    if ((p->blk != 1 && p->blk != 8 && p->blk != 16 && !last) || p->c <= 0 || p->c % p->blk != 0 ||
        p->h <= 0 || p->w <= 0 || p->out_h <= 0 || p->out_w <= 0 || p->size <= 0 ||
        p->stride <= 0 || p->pad < 0 || p->rows < 0 || p->rows > p->out_h || p->shift < 0 ||
        p->shift > 1 << 24)
        return 0;
    /* The last window must start inside the input (the first starts at -pad/2 > -size). */
    int off = -(p->pad / 2), oh = out_rows(p);
    if (off + p->size <= 0 || off + p->shift + p->size <= 0 ||
        off + p->shift + (oh - 1) * p->stride >= p->h || off + (p->out_w - 1) * p->stride >= p->w)
        return 0;
    /* and the offsets must stay inside int: h, w, stride come from a parsed cfg */
    if ((long long)p->out_h * p->stride > 1 << 24 || (long long)p->out_w * p->stride > 1 << 24)
        return 0;
    return 1;
}

/* The window's cells along one axis, [*a, *b): from `start` (may be negative), `size` long,
 * inside 0 .. len. */
static inline void span(int start, int size, int len, int *a, int *b)
{
    *a = start < 0 ? 0 : start;
    *b = start + size > len ? len : start + size;
}

/* One output row of B channels: `src` is their first input cell, `o` their output row's, and a
 * cell is S floats from the next (S = B in a block; S = c channels last, B of them at a time).
 * B is a constant at each call (inlined), so the loops over the channels become whole vectors
 * (B = 1: over the row's cells). */
static inline void pool_row(const be_maxpool_t *p, const float *src, float *o, int oy, const int B,
                            const size_t S)
{
    const int h = p->h, w = p->w, ow = p->out_w, size = p->size, s = p->stride;
    const int off = -(p->pad / 2);
    int y0, y1;
    span(off + p->shift + oy * s, size, h, &y0, &y1);
    int ox = 0;
    if (size == 2 && s == 2 && off == 0 && y1 - y0 == 2) {
        /* The common case, without per-cell bounds: every window whose two columns are in. */
        const float *r0 = src + (size_t)y0 * w * S, *r1 = r0 + (size_t)w * S;
        int lim = w / 2 < ow ? w / 2 : ow;
        for (; ox < lim; ox++) {
            const float *a = r0 + (size_t)ox * 2 * S, *b = r1 + (size_t)ox * 2 * S;
            float *d = o + (size_t)ox * S;
            for (int k = 0; k < B; k++) { /* darknet's order: ties keep the earlier cell */
                float m = a[k + S] > a[k] ? a[k + S] : a[k];
                m = b[k] > m ? b[k] : m;
                d[k] = b[k + S] > m ? b[k + S] : m;
            }
        }
    }
    for (; ox < ow; ox++) {
        int x0, x1;
        span(off + ox * s, size, w, &x0, &x1);
        float m[16];
        for (int k = 0; k < B; k++)
            m[k] = -FLT_MAX;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                const float *v = src + ((size_t)y * w + x) * S;
                for (int k = 0; k < B; k++)
                    m[k] = v[k] > m[k] ? v[k] : m[k];
            }
        float *d = o + (size_t)ox * S;
        for (int k = 0; k < B; k++)
            d[k] = m[k];
    }
}

/* Work item r of a blocked layout: channel block r / rows, output row r % rows. */
static inline void block_row(const be_maxpool_t *p, const float *in, float *out, int r, const int B)
{
    int cb = r / out_rows(p), oy = r % out_rows(p);
    pool_row(p, in + (size_t)cb * p->h * p->w * B,
             out + ((size_t)cb * p->out_h + oy) * p->out_w * B, oy, B, B);
}

/* Work item r channels last: output row r, cell by cell, each cell's channels B at a time (a
 * cell's channels are contiguous, so the reads stay in order). */
static inline void last_row(const be_maxpool_t *p, const float *in, float *out, int oy, const int B)
{
    const int h = p->h, w = p->w, c = p->c, size = p->size, s = p->stride;
    const int off = -(p->pad / 2);
    int y0, y1;
    span(off + p->shift + oy * s, size, h, &y0, &y1);
    float *o = out + (size_t)oy * p->out_w * c;
    for (int ox = 0; ox < p->out_w; ox++) {
        int x0, x1;
        span(off + ox * s, size, w, &x0, &x1);
        for (int k0 = 0; k0 < c; k0 += B) {
            float m[16];
            for (int k = 0; k < B; k++)
                m[k] = -FLT_MAX;
            for (int y = y0; y < y1; y++) /* darknet's order: ties keep the earlier cell */
                for (int x = x0; x < x1; x++) {
                    const float *v = in + ((size_t)y * w + x) * c + k0;
                    for (int k = 0; k < B; k++)
                        m[k] = v[k] > m[k] ? v[k] : m[k];
                }
            float *d = o + (size_t)ox * c + k0;
            for (int k = 0; k < B; k++)
                d[k] = m[k];
        }
    }
}

FG_CLONES static void pool_rows1(const be_maxpool_t *p, const float *in, float *out, int r)
{
    block_row(p, in, out, r, 1);
}

FG_CLONES static void pool_rows8(const be_maxpool_t *p, const float *in, float *out, int r)
{
    block_row(p, in, out, r, 8);
}

FG_CLONES static void pool_rows16(const be_maxpool_t *p, const float *in, float *out, int r)
{
    block_row(p, in, out, r, 16);
}

FG_CLONES static void last_rows8(const be_maxpool_t *p, const float *in, float *out, int r)
{
    last_row(p, in, out, r, 8);
}

FG_CLONES static void last_rows16(const be_maxpool_t *p, const float *in, float *out, int r)
{
    last_row(p, in, out, r, 16);
}

void be_maxpool_blocked(const be_maxpool_t *p, const float *in, float *out, int threads)
{
    void (*row)(const be_maxpool_t *, const float *, float *, int) = p->blk == 1   ? pool_rows1
                                                                     : p->blk == 8 ? pool_rows8
                                                                                   : pool_rows16;
    int rows = p->c / p->blk * out_rows(p);
    if (p->blk > 16) { /* channels last (a block of 8 or 16 is that too): 16 or 8 at a time */
        row = p->c % 16 == 0 ? last_rows16 : last_rows8;
        rows = out_rows(p);
    }
    /* the team oneDNN's own steps run on (libgomp): no thread of our own */
    if (threads < 1)
        threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int r = 0; r < rows; r++)
        row(p, in, out, r);
}
