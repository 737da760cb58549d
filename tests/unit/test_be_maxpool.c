/* be_maxpool_blocked against darknet's max-pool written out plainly on NCHW (window origin at
 * -pad/2, cells outside never win): every geometry darknet's [maxpool] makes from size, stride
 * and its default padding (size - 1), on even and odd sizes, on NCHW and on 8- and 16-channel
 * blocks, on 1 and 2 threads, must give the same floats bit for bit (a max is exact). Values
 * include negatives, ties and -0.0; with `rows` and `shift`, only a band of rows is written,
 * from only the input rows it reads. be_maxpool_fits refuses what the loop cannot take. The same
 * loop inside the oneDNN engine is held to stock darknet's layers by test_be_dnnl. */
#include <float.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "maxpool.h"

/* darknet's forward_maxpool_layer for batch 1, NCHW. */
static void reference(const be_maxpool_t *p, const float *in, float *out)
{
    int off = -(p->pad / 2);
    for (int c = 0; c < p->c; c++)
        for (int y = 0; y < p->out_h; y++)
            for (int x = 0; x < p->out_w; x++) {
                float m = -FLT_MAX;
                for (int n = 0; n < p->size; n++)
                    for (int k = 0; k < p->size; k++) {
                        int iy = off + y * p->stride + n, ix = off + x * p->stride + k;
                        if (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w) {
                            float v = in[((size_t)c * p->h + iy) * p->w + ix];
                            m = v > m ? v : m;
                        }
                    }
                out[((size_t)c * p->out_h + y) * p->out_w + x] = m;
            }
}

/* NCHW <-> blocks of blk channels, each h x w x blk. */
static void to_blocked(const float *nchw, float *b, int c, int h, int w, int blk)
{
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < h * w; i++)
            b[((size_t)(ch / blk) * h * w + i) * blk + ch % blk] = nchw[(size_t)ch * h * w + i];
}

/* darknet's parse_maxpool: padding defaults to size - 1, out = (in + pad - size) / s + 1 */
static be_maxpool_t darknet_pool(int c, int h, int w, int size, int stride, int blk)
{
    int pad = size - 1;
    return (be_maxpool_t){.c = c,
                          .h = h,
                          .w = w,
                          .out_h = (h + pad - size) / stride + 1,
                          .out_w = (w + pad - size) / stride + 1,
                          .size = size,
                          .stride = stride,
                          .pad = pad,
                          .blk = blk};
}

static void check(int c, int h, int w, int size, int stride, int blk, int threads)
{
    be_maxpool_t p = darknet_pool(c, h, w, size, stride, blk);
    assert_true(be_maxpool_fits(&p));
    size_t ni = (size_t)c * h * w, no = (size_t)c * p.out_h * p.out_w;
    float *in = malloc(ni * sizeof *in), *inb = malloc(ni * sizeof *inb);
    float *ref = malloc(no * sizeof *ref), *refb = malloc(no * sizeof *refb);
    float *out = malloc((no + 16) * sizeof *out);
    assert_true(in != NULL && inb != NULL && ref != NULL && refb != NULL && out != NULL);
    for (size_t i = 0; i < ni; i++) /* few distinct values: ties; negatives; -0.0 next to 0 */
        in[i] = (float)((int)((i * 2654435761u) >> 7) % 23 - 15) * 0.25f;
    for (size_t i = 0; i < ni; i += 7)
        in[i] = -0.0f;
    reference(&p, in, ref);
    to_blocked(in, inb, c, h, w, blk);
    to_blocked(ref, refb, c, p.out_h, p.out_w, blk);
    for (int i = 0; i < 16; i++)
        out[no + (size_t)i] = 12345.0f; /* nothing is written past the output */
    be_maxpool_blocked(&p, inb, out, threads);
    if (memcmp(out, refb, no * sizeof *out) != 0)
        fail_msg("c%d %dx%d size %d stride %d blk %d threads %d: differs from darknet's", c, h, w,
                 size, stride, blk, threads);
    for (int i = 0; i < 16; i++)
        assert_true(out[no + (size_t)i] == 12345.0f);
    free(in);
    free(inb);
    free(ref);
    free(refb);
    free(out);
}

/* {channels, blk}: NCHW, two blocks of 8 and of 16, and channels last (blk = c: 24 runs 8
 * channels at a time, 48 16) */
static const int layouts[][2] = {{5, 1}, {16, 8}, {32, 16}, {24, 24}, {48, 48}};

static void test_darknet_geometries(void **state)
{
    (void)state;
    static const int sizes[][2] = {{2, 2}, {2, 1}, {3, 2}, {3, 1}, {1, 1}, {3, 3}, {5, 1}};
    static const int dims[][2] = {{13, 13}, {14, 14}, {7, 9}, {1, 1}, {2, 5}, {31, 8}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
            for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++)
                for (int t = 1; t <= 2; t++)
                    check(layouts[k][0], dims[d][0], dims[d][1], sizes[s][0], sizes[s][1],
                          layouts[k][1], t);
}

static void test_face_model_first_pool(void **state)
{
    (void)state;
    check(16, 414, 414, 2, 2, 8, 1); /* the face model's first pool (odd output: 207) */
    check(32, 207, 207, 2, 2, 8, 2); /* and its second (odd input: the last column alone) */
    check(16, 416, 416, 2, 2, 16, 2);
    check(128, 52, 52, 2, 2, 1, 1); /* NCHW: yolov3-tiny's after a fast.c Winograd layer */
}

/* rows = k and shift (the oneDNN engine's padding shortcut): output rows [lo, lo + k) from
 * a band holding only the input rows they read, dense, written at row lo of a whole output:
 * those rows of every block are darknet's, the others untouched. */
static void test_band_rows(void **state)
{
    (void)state;
    static const int geo[][2] = {{2, 2}, {3, 1}, {3, 2}}; /* size, stride */
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++)
        for (int lo = 0; lo <= 3; lo += 3)
            for (int k = 1; k <= 9; k += 4)
                for (size_t lay = 0; lay < sizeof layouts / sizeof layouts[0]; lay++) {
                    int c = layouts[lay][0], blk = layouts[lay][1], h = 40, w = 21,
                        size = geo[g][0];
                    int s = geo[g][1];
                    be_maxpool_t p = darknet_pool(c, h, w, size, s, blk);
                    int off = -(p.pad / 2);
                    /* the input rows [ilo, ihi) that rows [lo, lo + k) read */
                    int ilo = lo * s + off > 0 ? lo * s + off : 0;
                    int ihi = (lo + k - 1) * s + off + size, hk = ihi - ilo;
                    size_t ni = (size_t)c * h * w, nk = (size_t)c * hk * w;
                    size_t no = (size_t)c * p.out_h * p.out_w, row = (size_t)p.out_w * blk;
                    float *in = malloc(ni * sizeof *in), *band = malloc(nk * sizeof *band);
                    float *bandb = malloc(nk * sizeof *bandb), *ref = malloc(no * sizeof *ref);
                    float *refb = malloc(no * sizeof *refb), *out = malloc(no * sizeof *out);
                    assert_true(in && band && bandb && ref && refb && out);
                    for (size_t i = 0; i < ni; i++)
                        in[i] = (float)((int)((i * 2654435761u) >> 9) % 31 - 12) * 0.5f;
                    reference(&p, in, ref);
                    to_blocked(ref, refb, c, p.out_h, p.out_w, blk);
                    for (int ch = 0; ch < c; ch++)
                        memcpy(band + (size_t)ch * hk * w, in + ((size_t)ch * h + ilo) * w,
                               (size_t)hk * w * sizeof(float));
                    to_blocked(band, bandb, c, hk, w, blk);
                    be_maxpool_t q = p;
                    q.h = hk;
                    q.rows = k;
                    q.shift = lo * s - ilo;
                    assert_true(be_maxpool_fits(&q));
                    for (size_t i = 0; i < no; i++)
                        out[i] = 12345.0f;
                    be_maxpool_blocked(&q, bandb, out + (size_t)lo * row, 2);
                    for (int cb = 0; cb < c / blk; cb++)
                        for (int y = 0; y < p.out_h; y++) {
                            const float *o = out + ((size_t)cb * p.out_h + y) * row;
                            const float *r = refb + ((size_t)cb * p.out_h + y) * row;
                            int in_band = y >= lo && y < lo + k;
                            for (size_t i = 0; i < row; i++)
                                if (in_band ? memcmp(&o[i], &r[i], sizeof(float)) != 0
                                            : o[i] != 12345.0f)
                                    fail_msg("size %d stride %d blk %d rows [%d, %d): block %d "
                                             "row %d differs",
                                             size, s, blk, lo, lo + k, cb, y);
                        }
                    free(in);
                    free(band);
                    free(bandb);
                    free(ref);
                    free(refb);
                    free(out);
                }
}

static void test_fits(void **state)
{
    (void)state;
    be_maxpool_t ok = {.c = 16,
                       .h = 4,
                       .w = 4,
                       .out_h = 2,
                       .out_w = 2,
                       .size = 2,
                       .stride = 2,
                       .pad = 1,
                       .blk = 8};
    assert_true(be_maxpool_fits(&ok));
    be_maxpool_t p = ok;
    p.blk = 1; /* NCHW */
    assert_true(be_maxpool_fits(&p));
    p.blk = 4;
    assert_false(be_maxpool_fits(&p));
    p.c = p.blk = 24; /* channels last */
    assert_true(be_maxpool_fits(&p));
    p.c = p.blk = 20; /* channels last, not whole 8s */
    assert_false(be_maxpool_fits(&p));
    p.c = 48; /* blk 20 of 48: neither */
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.c = 12; /* not whole blocks */
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.c = 0;
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.stride = 0;
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.out_h = 3; /* the last window would start past the input */
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.pad = 6; /* the first window would end before it */
    p.size = 2;
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.w = -4;
    assert_false(be_maxpool_fits(&p));
    p = ok;
    p.rows = 3; /* more rows than out_h */
    assert_false(be_maxpool_fits(&p));
    p.rows = -1;
    assert_false(be_maxpool_fits(&p));
    p.rows = 1;
    p.h = 2;
    assert_true(be_maxpool_fits(&p));
    p.shift = 2; /* row 0's window would begin past the band */
    assert_false(be_maxpool_fits(&p));
    p.shift = -1;
    assert_false(be_maxpool_fits(&p));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_darknet_geometries),
        cmocka_unit_test(test_face_model_first_pool),
        cmocka_unit_test(test_band_rows),
        cmocka_unit_test(test_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
