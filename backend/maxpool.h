/* darknet's max-pool on oneDNN's channel-blocked layout (backend/dnnl.c): the tensor is
 * c / blk blocks, each h x w cells of blk consecutive channels (oneDNN's aBcd8b / aBcd16b;
 * blk 1 is darknet's NCHW; blk = c is channels last, NHWC, what oneDNN's brgemm convolutions
 * write on AVX-512).
 * Same window as darknet's forward_maxpool_layer: origin at -pad/2, cells outside the input
 * never win. Used where oneDNN 2.6 has no AVX-512: its AVX2 max-pool kernel took 2.6-4x as
 * long as this loop on AMD Zen 3 (face model's first pool: 2.8 vs 0.6 ms, bench/results/
 * inference/README.md). Exact: a max is a max, so the output is bit for bit darknet's. */
#ifndef BE_MAXPOOL_H
#define BE_MAXPOOL_H

typedef struct {
    int c, h, w;      /* input: channels, rows, columns */
    int out_h, out_w; /* output rows, columns (darknet's l.out_h, l.out_w) */
    int size, stride; /* square window and step */
    int pad;          /* darknet's l.pad: the window starts at -pad / 2 */
    int blk;          /* channels per block: 1, 8, 16, or c (channels last) */
    int rows;         /* output rows computed, from the top (0: all out_h); the others are left
                       * as they are. A block's rows are still out_h apart (dnnl_tail.c) */
    int shift;        /* added to every window's first row: `in` is a band of a taller input
                       * (dnnl_tail.c); 0 otherwise */
} be_maxpool_t;

/* 1 when be_maxpool_blocked takes this geometry: blk 1, 8 or 16 and c a positive multiple of
 * it, or blk = c a multiple of 8,
 * every size positive, rows in 0..out_h, shift >= 0, and every window computed holding at
 * least one input cell. Pure function. */
int be_maxpool_fits(const be_maxpool_t *p);

/* out = the max-pool of in (both blocked as above, c x h x w and c x out_h x out_w floats,
 * caller-owned, not overlapping) on `threads` OpenMP threads (<= 1: the caller's alone;
 * the output does not depend on it). `p` must fit (be_maxpool_fits). Calling thread. */
void be_maxpool_blocked(const be_maxpool_t *p, const float *in, float *out, int threads);

#endif
