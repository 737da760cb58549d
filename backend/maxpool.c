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
    if ((p->blk != 1 && p->blk != 8 && p->blk != 16) || p->c <= 0 || p->c % p->blk != 0 ||
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

/* One output row of one channel block. B is a constant at each call (inlined three times), so
 * the loops over the block's channels become whole vectors (B = 1: over the row's cells). */
static inline void pool_row(const be_maxpool_t *p, const float *in, float *out, int cb, int oy,
                            const int B)
{
    const int h = p->h, w = p->w, ow = p->out_w, size = p->size, s = p->stride;
    const int off = -(p->pad / 2);
    const float *src = in + (size_t)cb * h * w * B;
    float *o = out + ((size_t)cb * p->out_h + oy) * ow * B;
    int y0 = off + p->shift + oy * s, y1 = y0 + size;
    if (y0 < 0)
        y0 = 0;
    if (y1 > h)
        y1 = h;
    int ox = 0;
    if (size == 2 && s == 2 && off == 0 && y1 - y0 == 2) {
        /* The common case, without per-cell bounds: every window whose two columns are in. */
        const float *r0 = src + (size_t)y0 * w * B, *r1 = r0 + (size_t)w * B;
        int lim = w / 2 < ow ? w / 2 : ow;
        for (; ox < lim; ox++) {
            const float *a = r0 + (size_t)ox * 2 * B, *b = r1 + (size_t)ox * 2 * B;
            float *d = o + (size_t)ox * B;
            for (int k = 0; k < B; k++) { /* darknet's order: ties keep the earlier cell */
                float m = a[k + B] > a[k] ? a[k + B] : a[k];
                m = b[k] > m ? b[k] : m;
                d[k] = b[k + B] > m ? b[k + B] : m;
            }
        }
    }
    for (; ox < ow; ox++) {
        int x0 = off + ox * s, x1 = x0 + size;
        if (x0 < 0)
            x0 = 0;
        if (x1 > w)
            x1 = w;
        float m[16];
        for (int k = 0; k < B; k++)
            m[k] = -FLT_MAX;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                const float *v = src + ((size_t)y * w + x) * B;
                for (int k = 0; k < B; k++)
                    m[k] = v[k] > m[k] ? v[k] : m[k];
            }
        float *d = o + (size_t)ox * B;
        for (int k = 0; k < B; k++)
            d[k] = m[k];
    }
}

FG_CLONES static void pool_rows1(const be_maxpool_t *p, const float *in, float *out, int r)
{
    pool_row(p, in, out, r / out_rows(p), r % out_rows(p), 1);
}

FG_CLONES static void pool_rows8(const be_maxpool_t *p, const float *in, float *out, int r)
{
    pool_row(p, in, out, r / out_rows(p), r % out_rows(p), 8);
}

FG_CLONES static void pool_rows16(const be_maxpool_t *p, const float *in, float *out, int r)
{
    pool_row(p, in, out, r / out_rows(p), r % out_rows(p), 16);
}

void be_maxpool_blocked(const be_maxpool_t *p, const float *in, float *out, int threads)
{
    int rows = p->c / p->blk * out_rows(p);
    void (*row)(const be_maxpool_t *, const float *, float *, int) = p->blk == 1   ? pool_rows1
                                                                     : p->blk == 8 ? pool_rows8
                                                                                   : pool_rows16;
    /* the team oneDNN's own steps run on (libgomp): no thread of our own */
    if (threads < 1)
        threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int r = 0; r < rows; r++)
        row(p, in, out, r);
}
