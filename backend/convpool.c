/* A convolution (a network's first 3x3, or a 1x1 on channel blocks) and its 2x2 max-pool
 * in one pass (convpool.h).
 *
 * Work unit: one pooled row of one 16-filter block. For each of its two convolution rows a
 * kernel computes 6 columns x 16 filters at a time (twelve 8-wide accumulators; per tap, the
 * 16 weights as two vector loads and the 6 input pixels broadcast) and writes the larger of
 * each column pair straight to the output cell: the first row stores, the second takes the
 * max and adds bias and activation, while the row (13 KB on a 416-wide face input) is still in
 * L1. A kernel of 8 filters x 12 pixels ran at half the speed on Zen 3 (one broadcast per FMA,
 * and its broadcasts share a pipe with the FMAs): ~45 GFLOP/s, as oneDNN's own kernel for this
 * layer; this one ~75 (scratch cp.c).
 *
 * A 3x3 on the input image runs its interior 2x2 windows as Winograd F(2x2,3x3) tiles, one
 * tile per pool window (convpool_wino.c); the windows at the padding, and an odd last row or
 * column, stay on the direct kernel. */
#include "convpool.h"

#include <stdlib.h>

#include "clones.h" /* fg_have_avx2, fg_have_avx512 */
#include "convpool_internal.h"
#include "err.h"
#include "fast.h"

#define TILE 6 /* convolution columns per kernel call: 3 pooled */
/* an edge tile's cells: c x 3 x 8 (3x3) or c x TILE (1x1) */
#define PATCH_MAX                                                                                  \
    (BE_CONVPOOL_C_MAX * 24 > BE_CONVPOOL_1X1_C_MAX * TILE ? BE_CONVPOOL_C_MAX * 24                \
                                                           : BE_CONVPOOL_1X1_C_MAX * TILE)

struct be_convpool {
    int size;         /* 3: on NCHW (a network's input); 1: on channel blocks */
    int ib;           /* the input's channels per block: 1 (NCHW), 8 or 16 */
    int c, h, w, pad; /* the convolution's input and padding */
    int oh, ow;       /* its output */
    int n;            /* filters */
    int ph, pw;       /* the pool's output */
    int act;          /* darknet's ACTIVATION: LEAKY, RELU or LINEAR */
    int blk;          /* output channels per block */
    float *wt;        /* [n / NB][c][size][size][NB] */
    float *bias;      /* [n] */
    float *wino;      /* a 3x3's weights for Winograd F(2x2,3x3): [n / NB][16][c][NB], or NULL */
    /* a depthwise 3x3 before a 1x1 (be_convpool_create_dw), else dwt NULL */
    float *dwt;    /* [c / 8][9][8]: each 8 channels' taps, row by row */
    float *dwb;    /* [c] */
    float dwslope; /* its activation, as `act` */
};

int be_convpool_fits(const layer *cv, const layer *pl)
{
    if (cv->type != CONVOLUTIONAL || pl->type != MAXPOOL || cv->batch != 1 || pl->batch != 1 ||
        cv->stride != 1 || (cv->groups > 1) || cv->xnor || cv->binary || cv->c < 1 || cv->n < NB ||
        cv->n % NB != 0 || cv->h < 1 || cv->w < 1)
        return 0;
    if (cv->size == 3
            ? cv->c > BE_CONVPOOL_C_MAX || cv->pad < 0 || cv->pad > 2
            : cv->size != 1 || cv->pad != 0 || cv->c % 8 != 0 || cv->c > BE_CONVPOOL_1X1_C_MAX)
        return 0;
    if (cv->activation != LEAKY && cv->activation != RELU && cv->activation != LINEAR)
        return 0;
    if (cv->out_h != cv->h + 2 * cv->pad - cv->size + 1 ||
        cv->out_w != cv->w + 2 * cv->pad - cv->size + 1 || cv->out_h < 1 || cv->out_w < 1 ||
        cv->out_c != cv->n)
        return 0;
    /* the pool reads the convolution's output; its windows start at (0, 0) and every one
     * holds at least its first cell */
    if (pl->size != 2 || pl->stride != 2 || pl->pad / 2 != 0 || pl->c != cv->n ||
        pl->h != cv->out_h || pl->w != cv->out_w || pl->out_c != pl->c || pl->out_h < 1 ||
        pl->out_w < 1 || 2 * (pl->out_h - 1) >= pl->h || 2 * (pl->out_w - 1) >= pl->w)
        return 0;
    return 1;
}

/* A depthwise row's cells in run_dw's buffer: its width in whole tiles. */
static int mid_stride(int w)
{
    return (w + TILE - 1) / TILE * TILE;
}

int be_convpool_fits_dw(const layer *dw, const layer *cv, const layer *pl)
{
    return dw->type == CONVOLUTIONAL && dw->batch == 1 && dw->size == 3 && dw->stride == 1 &&
           dw->pad == 1 && dw->c >= 8 && dw->c % 8 == 0 && dw->groups == dw->c && dw->n == dw->c &&
           !dw->xnor && !dw->binary && dw->out_c == dw->c && dw->out_h == dw->h &&
           dw->out_w == dw->w && dw->nweights == 9 * dw->c &&
           (dw->activation == LEAKY || dw->activation == RELU || dw->activation == LINEAR) &&
           be_convpool_fits(cv, pl) && cv->size == 1 && cv->c == dw->c && cv->h == dw->h &&
           cv->w == dw->w && dw->w <= BE_CONVPOOL_DW_MAX &&
           (size_t)2 * mid_stride(dw->w) * dw->c <= BE_CONVPOOL_DW_MAX;
}

/* darknet's leaky x > 0 ? x : .1f * x; relu x * (x > 0), -0 for x < 0 as x * 0 is */
static float act_slope(int a)
{
    return a == LEAKY ? .1f : a == RELU ? 0.0f : 1.0f;
}

static int wino_mode = 1; /* be_convpool_winograd */

void be_convpool_winograd(int on)
{
    __atomic_store_n(&wino_mode, on, __ATOMIC_RELAXED);
}

int be_convpool_create_dw(be_convpool_t **out, const layer *dw, const layer *cv, const layer *pl,
                          int blk, int in_blk)
{
    *out = NULL;
    if (!be_convpool_fits_dw(dw, cv, pl) || (in_blk != 8 && in_blk != 16) || dw->c % in_blk != 0)
        return PROTO_EINVAL;
    be_convpool_t *cp = NULL;
    float *w = NULL, *b = NULL, *t = NULL;
    int rv = be_convpool_create(&cp, cv, pl, blk, in_blk);
    if (rv != 0)
        return rv;
    if (be_fast_fold(dw, &w, &b) != 0 || (t = malloc((size_t)dw->c * 9 * sizeof(float))) == NULL) {
        free(w);
        free(b);
        be_convpool_destroy(cp);
        return PROTO_ENOMEM;
    }
    for (int ch = 0; ch < dw->c; ch++) /* darknet's [channel][row][column] */
        for (int k = 0; k < 9; k++)
            t[((size_t)(ch / 8) * 9 + k) * 8 + ch % 8] = w[(size_t)ch * 9 + k];
    free(w);
    cp->dwt = t;
    cp->dwb = b;
    cp->dwslope = act_slope(dw->activation);
    *out = cp;
    return 0;
}

int be_convpool_layers(const be_convpool_t *cp)
{
    return cp->dwt != NULL ? 3 : 2;
}

int be_convpool_create(be_convpool_t **out, const layer *cv, const layer *pl, int blk, int in_blk)
{
    *out = NULL;
    if (!be_convpool_fits(cv, pl) || (blk != 8 && blk != 16) ||
        (cv->size == 3 ? in_blk != 1 : (in_blk != 8 && in_blk != 16) || cv->c % in_blk != 0))
        return PROTO_EINVAL;
    be_convpool_t *cp = calloc(1, sizeof *cp);
    float *w = NULL, *b = NULL;
    if (cp == NULL || be_fast_fold(cv, &w, &b) != 0 ||
        (cp->wt = malloc((size_t)cv->n * cv->c * cv->size * cv->size * sizeof(float))) == NULL) {
        free(w);
        free(b);
        be_convpool_destroy(cp);
        return PROTO_ENOMEM;
    }
    *cp = (be_convpool_t){.size = cv->size,
                          .ib = in_blk,
                          .c = cv->c,
                          .h = cv->h,
                          .w = cv->w,
                          .pad = cv->pad,
                          .oh = cv->out_h,
                          .ow = cv->out_w,
                          .n = cv->n,
                          .ph = pl->out_h,
                          .pw = pl->out_w,
                          .act = cv->activation,
                          .blk = blk,
                          .wt = cp->wt,
                          .bias = b};
    int k = cv->c * cv->size * cv->size; /* darknet's: [filter][channel][row][column] */
    for (int f = 0; f < cv->n; f++)
        for (int j = 0; j < k; j++)
            cp->wt[((size_t)(f / NB) * k + j) * NB + f % NB] = w[(size_t)f * k + j];
    if (cv->size == 3 && __atomic_load_n(&wino_mode, __ATOMIC_RELAXED)) {
        if ((cp->wino = malloc((size_t)cv->n * cv->c * 16 * sizeof(float))) == NULL) {
            free(w);
            be_convpool_destroy(cp);
            return PROTO_ENOMEM;
        }
        for (int f = 0; f < cv->n; f++)
            for (int ch = 0; ch < cv->c; ch++) {
                float u[16];
                be_convpool_wino_weights(w + ((size_t)f * cv->c + ch) * 9, u);
                for (int pos = 0; pos < 16; pos++)
                    cp->wino[(((size_t)(f / NB) * 16 + pos) * cv->c + ch) * NB + f % NB] = u[pos];
            }
    }
    free(w);
    *out = cp;
    return 0;
}

int be_convpool_blk(const be_convpool_t *cp)
{
    return cp->blk;
}

int be_convpool_in_blk(const be_convpool_t *cp)
{
    return cp->ib;
}

void be_convpool_destroy(be_convpool_t *cp)
{
    if (cp == NULL)
        return;
    free(cp->wt);
    free(cp->wino);
    free(cp->bias);
    free(cp->dwt);
    free(cp->dwb);
    free(cp);
}

/* The kernels. The taps of a tile: `groups` groups (gs floats apart) of `taps` cells each
 * (toff[] within the group), in the weights' order: for a 3x3 on NCHW the channels, each its 9
 * cells of the window (row by row); for a 1x1 on channel blocks the blocks, each its 8 or
 * 16 channels. `in` points at the tile's first pixel's first tap; its 6 pixels are PS floats
 * apart (1 on NCHW, else the block). vc of the 6 columns are real (the rest do not win the max).
 * np pooled columns go to `o` (see out_t): stored (first) or maxed with what is there, and
 * when `fin`, finished with bias and activation. */
typedef struct {
    int groups, taps;
    size_t gs;
    int toff[16];
} taps_t;

typedef void kernel_fn(const float *in, const taps_t *tp, const float *wt, float *o,
                       const out_t *ot, int np, int vc, int first, int fin);

static inline void kernel_c_ps(const float *in, const taps_t *tp, const float *wt, float *o,
                               const out_t *ot, int np, int vc, int first, int fin, const int PS)
{
    float acc[TILE][NB] = {{0}};
    for (int g = 0; g < tp->groups; g++)
        for (int t = 0; t < tp->taps; t++, wt += NB) {
            const float *q = in + g * tp->gs + tp->toff[t];
            for (int j = 0; j < TILE; j++)
                for (int f = 0; f < NB; f++)
                    acc[j][f] += wt[f] * q[j * PS];
        }
    for (int p = 0; p < np; p++)
        for (int f = 0; f < NB; f++) {
            float m = acc[2 * p][f];
            if (2 * p + 1 < vc && acc[2 * p + 1][f] > m)
                m = acc[2 * p + 1][f];
            float *d = o + p * ot->step + (f / 8) * ot->half + f % 8;
            if (!first && *d > m)
                m = *d;
            if (fin) {
                m += ot->b[f];
                m = m > 0 ? m : m * ot->slope;
            }
            *d = m;
        }
}

static void kernel_c1(const float *in, const taps_t *tp, const float *wt, float *o, const out_t *ot,
                      int np, int vc, int first, int fin)
{
    kernel_c_ps(in, tp, wt, o, ot, np, vc, first, fin, 1);
}

static void kernel_c8(const float *in, const taps_t *tp, const float *wt, float *o, const out_t *ot,
                      int np, int vc, int first, int fin)
{
    kernel_c_ps(in, tp, wt, o, ot, np, vc, first, fin, 8);
}

static void kernel_c16(const float *in, const taps_t *tp, const float *wt, float *o,
                       const out_t *ot, int np, int vc, int first, int fin)
{
    kernel_c_ps(in, tp, wt, o, ot, np, vc, first, fin, 16);
}

#ifdef CP_X86

__attribute__((target("avx2,fma"))) static inline void
kernel_avx2_ps(const float *in, const taps_t *tp, const float *wt, float *o, const out_t *ot,
               int np, int vc, int first, int fin, const int PS)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
    for (int g = 0; g < tp->groups; g++)
        for (int t = 0; t < tp->taps; t++, wt += NB) {
            const float *q = in + g * tp->gs + tp->toff[t];
            __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8), x;
            x = _mm256_broadcast_ss(q);
            a0 = _mm256_fmadd_ps(w0, x, a0);
            b0 = _mm256_fmadd_ps(w1, x, b0);
            x = _mm256_broadcast_ss(q + PS);
            a1 = _mm256_fmadd_ps(w0, x, a1);
            b1 = _mm256_fmadd_ps(w1, x, b1);
            x = _mm256_broadcast_ss(q + 2 * PS);
            a2 = _mm256_fmadd_ps(w0, x, a2);
            b2 = _mm256_fmadd_ps(w1, x, b2);
            x = _mm256_broadcast_ss(q + 3 * PS);
            a3 = _mm256_fmadd_ps(w0, x, a3);
            b3 = _mm256_fmadd_ps(w1, x, b3);
            x = _mm256_broadcast_ss(q + 4 * PS);
            a4 = _mm256_fmadd_ps(w0, x, a4);
            b4 = _mm256_fmadd_ps(w1, x, b4);
            x = _mm256_broadcast_ss(q + 5 * PS);
            a5 = _mm256_fmadd_ps(w0, x, a5);
            b5 = _mm256_fmadd_ps(w1, x, b5);
        }
    /* a column past the convolution's edge: its partner alone */
    if (vc < 6)
        a5 = a4, b5 = b4;
    if (vc < 4)
        a3 = a2, b3 = b2;
    if (vc < 2)
        a1 = a0, b1 = b0;
    __m256 m[6] = {_mm256_max_ps(a0, a1), _mm256_max_ps(b0, b1), _mm256_max_ps(a2, a3),
                   _mm256_max_ps(b2, b3), _mm256_max_ps(a4, a5), _mm256_max_ps(b4, b5)};
    __m256 bl = _mm256_loadu_ps(ot->b), bh = _mm256_loadu_ps(ot->b + 8);
    __m256 sl = _mm256_set1_ps(ot->slope);
    for (int p = 0; p < np; p++) {
        float *dl = o + p * ot->step, *dh = dl + ot->half;
        __m256 lo = m[2 * p], hi = m[2 * p + 1];
        if (!first) {
            lo = _mm256_max_ps(lo, _mm256_loadu_ps(dl));
            hi = _mm256_max_ps(hi, _mm256_loadu_ps(dh));
        }
        if (fin) {
            lo = act_avx2(lo, bl, sl);
            hi = act_avx2(hi, bh, sl);
        }
        _mm256_storeu_ps(dl, lo);
        _mm256_storeu_ps(dh, hi);
    }
}

__attribute__((target("avx2,fma"))) static void kernel_avx2_1(const float *in, const taps_t *tp,
                                                              const float *wt, float *o,
                                                              const out_t *ot, int np, int vc,
                                                              int first, int fin)
{
    kernel_avx2_ps(in, tp, wt, o, ot, np, vc, first, fin, 1);
}

__attribute__((target("avx2,fma"))) static void kernel_avx2_8(const float *in, const taps_t *tp,
                                                              const float *wt, float *o,
                                                              const out_t *ot, int np, int vc,
                                                              int first, int fin)
{
    kernel_avx2_ps(in, tp, wt, o, ot, np, vc, first, fin, 8);
}

__attribute__((target("avx2,fma"))) static void kernel_avx2_16(const float *in, const taps_t *tp,
                                                               const float *wt, float *o,
                                                               const out_t *ot, int np, int vc,
                                                               int first, int fin)
{
    kernel_avx2_ps(in, tp, wt, o, ot, np, vc, first, fin, 16);
}

#endif

static int isa_max = BE_CONVPOOL_ISA_AVX512; /* be_convpool_isa: set by tests, bench */

void be_convpool_isa(int max)
{
    __atomic_store_n(&isa_max, max, __ATOMIC_RELAXED);
}

/* The most of be_convpool_isa's cap this CPU has. */
static int run_isa(void)
{
    int max = __atomic_load_n(&isa_max, __ATOMIC_RELAXED);
#ifdef CP_X86
    if (max >= BE_CONVPOOL_ISA_AVX512 && fg_have_avx512())
        return BE_CONVPOOL_ISA_AVX512;
    if (max >= BE_CONVPOOL_ISA_AVX2 && fg_have_avx2())
        return BE_CONVPOOL_ISA_AVX2;
#endif
    (void)max;
    return BE_CONVPOOL_ISA_C;
}

/* The input as the kernels read it: rows [y0, y0 + rows) of the convolution's input, each
 * `stride` cells (>= w; the cells past w of a 1x1's input are zeros). */
typedef struct {
    const float *p;
    int rows, y0, stride;
} in_t;

/* Convolution row y into the output cells of pooled columns [jlo, jhi) (`o`: column 0's; see
 * kernel_fn). patch: scratch for a tile at an edge, c * 24 floats (3x3) or c * 6 (1x1). */
static void conv_row(const be_convpool_t *cp, kernel_fn *kern, const in_t *in, const float *wt,
                     int y, float *o, const out_t *ot, int first, int fin, float *patch, int jlo,
                     int jhi)
{
    const int w = cp->w;
    int iy = y - cp->pad; /* the window's first input row */
    taps_t tp, pt;        /* on the input, and on a patch */
    if (cp->size == 3) {
        tp = (taps_t){.groups = cp->c, .taps = 9, .gs = (size_t)in->rows * w};
        pt = (taps_t){.groups = cp->c, .taps = 9, .gs = 24};
        for (int t = 0; t < 9; t++) {
            tp.toff[t] = t / 3 * w + t % 3;
            pt.toff[t] = t / 3 * 8 + t % 3;
        }
    } else {
        const int ib = cp->ib;
        tp = (taps_t){.groups = cp->c / ib, .taps = ib, .gs = (size_t)in->rows * in->stride * ib};
        pt = (taps_t){.groups = cp->c / ib, .taps = ib, .gs = (size_t)TILE * ib};
        for (int t = 0; t < ib; t++)
            tp.toff[t] = pt.toff[t] = t;
    }
    for (int j = jlo; j < jhi; j += TILE / 2) {
        int x = 2 * j, ix = x - cp->pad;
        int vc = cp->ow - x < TILE ? cp->ow - x : TILE, np = jhi - j < 3 ? jhi - j : 3;
        float *d = o + j * ot->step;
        if (cp->size == 1 && x + TILE <= in->stride) {
            kern(in->p + ((size_t)(y - in->y0) * in->stride + x) * cp->ib, &tp, wt, d, ot, np, vc,
                 first, fin);
            continue;
        }
        if (cp->size == 3 && iy >= 0 && iy + 3 <= cp->h && ix >= 0 && ix + TILE + 2 <= w) {
            kern(in->p + (size_t)(iy - in->y0) * w + ix, &tp, wt, d, ot, np, vc, first, fin);
            continue;
        }
        /* at an edge: the cells the tile reads, zeros for the padding (and past the right
         * edge, where only columns that do not count read them) */
        if (cp->size == 1) {
            const int ib = cp->ib;
            for (int g = 0; g < cp->c / ib; g++)
                for (int q = 0; q < TILE; q++)
                    for (int t = 0; t < ib; t++)
                        patch[(g * TILE + q) * ib + t] =
                            x + q < w ? in->p[g * tp.gs +
                                              ((size_t)(y - in->y0) * in->stride + x + q) * ib + t]
                                      : 0.0f;
        } else {
            for (int ch = 0; ch < cp->c; ch++)
                for (int r = 0; r < 3; r++)
                    for (int q = 0; q < 8; q++) {
                        int yy = iy + r, xx = ix + q;
                        patch[(ch * 3 + r) * 8 + q] =
                            yy >= 0 && yy < cp->h && xx >= 0 && xx < w
                                ? in->p[ch * tp.gs + (size_t)(yy - in->y0) * w + xx]
                                : 0.0f;
                    }
        }
        kern(patch, &pt, wt, d, ot, np, vc, first, fin);
    }
}

/* The depthwise 3x3 (stride 1, padding 1) before a 1x1: its output row y, every channel, into
 * `dst` laid out as the 1x1 reads its input (blocks of ib channels, `gs` floats apart, row of
 * w cells). Each sum runs over the window's taps inside the input, row by row, as darknet's
 * (its padding's zeros add nothing); then bias and activation. Eight channels at a time. */
static void dw_row_c(const be_convpool_t *cp, const in_t *in, int y, float *dst, size_t gs)
{
    const int w = cp->w, ib = cp->ib;
    const size_t igs = (size_t)in->rows * in->stride * ib;
    for (int ch = 0; ch < cp->c; ch += 8) {
        const float *wt = cp->dwt + (size_t)ch * 9, *b = cp->dwb + ch;
        const float *src = in->p + (size_t)(ch / ib) * igs + ch % ib;
        float *d = dst + (size_t)(ch / ib) * gs + ch % ib;
        for (int x = 0; x < w; x++) {
            float acc[8] = {0};
            for (int ky = 0; ky < 3; ky++) {
                int iy = y - 1 + ky;
                if (iy < 0 || iy >= cp->h)
                    continue;
                for (int kx = 0; kx < 3; kx++) {
                    int ix = x - 1 + kx;
                    if (ix < 0 || ix >= w)
                        continue;
                    const float *q = src + ((size_t)(iy - in->y0) * in->stride + ix) * ib;
                    for (int l = 0; l < 8; l++)
                        acc[l] += wt[(ky * 3 + kx) * 8 + l] * q[l];
                }
            }
            for (int l = 0; l < 8; l++) {
                float v = acc[l] + b[l];
                d[(size_t)x * ib + l] = v > 0 ? v : v * cp->dwslope;
            }
        }
    }
}

#ifdef CP_X86
/* Column x of a depthwise row alone (at an edge, or one of the last few): one chain of up to
 * 9 FMAs over rows r (NULL: outside the input), each row's taps inside it. */
__attribute__((target("avx2,fma"))) static inline void dw_one(const float *const r[3],
                                                              const float *wt, __m256 b, __m256 sl,
                                                              float *d, int x, int w, int ib)
{
    __m256 acc = _mm256_setzero_ps();
    for (int ky = 0; ky < 3; ky++) {
        if (r[ky] == NULL)
            continue;
        const float *q = r[ky] + (size_t)x * ib, *k = wt + ky * 24;
        if (x > 0)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(k), _mm256_loadu_ps(q - ib), acc);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(k + 8), _mm256_loadu_ps(q), acc);
        if (x + 1 < w)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(k + 16), _mm256_loadu_ps(q + ib), acc);
    }
    _mm256_storeu_ps(d + (size_t)x * ib, act_avx2(acc, b, sl));
}

/* dw_row_c with AVX2 + FMA: four columns at a time inside the edges. */
__attribute__((target("avx2,fma"))) static void dw_row_avx2(const be_convpool_t *cp, const in_t *in,
                                                            int y, float *dst, size_t gs)
{
    const int w = cp->w, ib = cp->ib;
    const size_t igs = (size_t)in->rows * in->stride * ib;
    const __m256 sl = _mm256_set1_ps(cp->dwslope);
    for (int ch = 0; ch < cp->c; ch += 8) {
        const float *wt = cp->dwt + (size_t)ch * 9;
        const __m256 b = _mm256_loadu_ps(cp->dwb + ch);
        const float *src = in->p + (size_t)(ch / ib) * igs + ch % ib;
        float *d = dst + (size_t)(ch / ib) * gs + ch % ib;
        const float *r[3]; /* the window's rows, NULL outside the input */
        for (int ky = 0; ky < 3; ky++) {
            int iy = y - 1 + ky;
            r[ky] = iy >= 0 && iy < cp->h ? src + (size_t)(iy - in->y0) * in->stride * ib : NULL;
        }
        int x = 0;
        dw_one(r, wt, b, sl, d, 0, w, ib);
        /* four columns at once inside the edges: four chains, so the FMAs' latency is hidden,
         * each summed in the same order as dw_one's */
        for (x = 1; x + 4 < w; x += 4) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int ky = 0; ky < 3; ky++) {
                if (r[ky] == NULL)
                    continue;
                const float *q = r[ky] + (size_t)(x - 1) * ib, *k = wt + ky * 24;
                for (int kx = 0; kx < 3; kx++, q += ib) {
                    __m256 kv = _mm256_loadu_ps(k + kx * 8);
                    a0 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q), a0);
                    a1 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + ib), a1);
                    a2 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + 2 * ib), a2);
                    a3 = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + 3 * ib), a3);
                }
            }
            float *o = d + (size_t)x * ib;
            _mm256_storeu_ps(o, act_avx2(a0, b, sl));
            _mm256_storeu_ps(o + ib, act_avx2(a1, b, sl));
            _mm256_storeu_ps(o + 2 * ib, act_avx2(a2, b, sl));
            _mm256_storeu_ps(o + 3 * ib, act_avx2(a3, b, sl));
        }
        for (; x < w; x++)
            if (x > 0)
                dw_one(r, wt, b, sl, d, x, w, ib);
    }
}
#endif

/* be_convpool_run with a depthwise 3x3 first: a work unit is one pooled row, whose two
 * depthwise rows are computed once into a buffer on the thread's stack (still in L1 when the
 * 1x1 reads them for each filter block), so the depthwise output is never written either. */
static void run_dw(const be_convpool_t *cp, kernel_fn *kern, int avx, const in_t *src, float *out,
                   int rows, int y0, int lo, int hi, int threads)
{
    (void)threads; /* only in the pragma: unused in a build without OpenMP */
    void (*dw)(const be_convpool_t *, const in_t *, int, float *, size_t) = dw_row_c;
#ifdef CP_X86
    if (avx)
        dw = dw_row_avx2;
#else
    (void)avx;
#endif
    const int k = cp->c, nblk = cp->n / NB;
    const int ws = mid_stride(cp->w);
    const size_t plane = (size_t)rows * cp->pw * cp->blk, gs = (size_t)2 * ws * cp->ib;
    const float slope = act_slope(cp->act);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float patch[PATCH_MAX];
        /* two rows of the depthwise output, each padded with zeros to whole tiles (so no tile
         * of the 1x1 takes the edge patch): at most 32 KB */
        float mid[BE_CONVPOOL_DW_MAX];
        for (int cb = 0; cb < cp->c / cp->ib; cb++)
            for (int r = 0; r < 2; r++)
                for (size_t i = (size_t)cp->w * cp->ib; i < (size_t)ws * cp->ib; i++)
                    mid[cb * gs + (size_t)r * ws * cp->ib + i] = 0.0f;
#pragma omp for schedule(static)
        for (int py = lo; py < hi; py++) {
            int y = 2 * py, two = y + 1 < cp->oh;
            const in_t m = {mid, 2, y, ws};
            dw(cp, src, y, mid, gs);
            if (two)
                dw(cp, src, y + 1, mid + (size_t)ws * cp->ib, gs);
            for (int fb = 0; fb < nblk; fb++) {
                out_t ot = {.b = cp->bias + fb * NB,
                            .slope = slope,
                            .half = cp->blk == NB ? 8 : plane,
                            .step = (size_t)cp->blk};
                const float *wt = cp->wt + (size_t)fb * k * NB;
                float *o = out + (size_t)(fb * NB / cp->blk) * plane +
                           (size_t)(py - y0) * cp->pw * cp->blk;
                conv_row(cp, kern, &m, wt, y, o, &ot, 1, !two, patch, 0, cp->pw);
                if (two)
                    conv_row(cp, kern, &m, wt, y + 1, o, &ot, 0, 1, patch, 0, cp->pw);
            }
        }
    }
}

/* The pooled columns [*a, *b) of pooled row y / 2 whose 2x2 window is one Winograd tile with
 * its 4x4 patch inside the input (both convolution rows and columns there); the others (the
 * padding's, an odd last row or column) run on the direct kernel. */
static void wino_span(const be_convpool_t *cp, int y, int *a, int *b)
{
    int iy = y - cp->pad, bx = (cp->w + cp->pad - 4) / 2, bo = (cp->ow - 2) / 2;
    *a = (cp->pad + 1) / 2;
    *b = (bx < bo ? bx : bo) + 1;
    if (*b > cp->pw)
        *b = cp->pw;
    if (cp->wino == NULL || y + 1 >= cp->oh || iy < 0 || iy + 4 > cp->h || cp->w + cp->pad < 4 ||
        cp->ow < 2 || *b <= *a)
        *a = *b = 0;
}

/* Pooled columns [a, b) of pooled row y / 2 by Winograd; v: scratch of 16 x c x 8 floats. */
static void wino_row(const be_convpool_t *cp, const in_t *in, const float *wt, int y, int a, int b,
                     float *o, const out_t *ot, int isa, float *v)
{
    const float *row = in->p + (size_t)(y - cp->pad - in->y0) * cp->w - cp->pad;
    be_convpool_wino_tiles(row + 2 * a, (size_t)in->rows * cp->w, cp->w, cp->c, b - a, wt,
                           o + (size_t)a * ot->step, ot, isa, v);
}

void be_convpool_run(const be_convpool_t *cp, const float *in, int in_rows, int in_y0, float *out,
                     int rows, int y0, int lo, int hi, int threads)
{
    kernel_fn *kern = cp->ib == 1 ? kernel_c1 : cp->ib == 8 ? kernel_c8 : kernel_c16;
    const int isa = run_isa(), avx = isa >= BE_CONVPOOL_ISA_AVX2;
#ifdef CP_X86
    if (avx)
        kern = cp->ib == 1 ? kernel_avx2_1 : cp->ib == 8 ? kernel_avx2_8 : kernel_avx2_16;
#endif
    const int k = cp->c * cp->size * cp->size, nblk = cp->n / NB, items = nblk * (hi - lo);
    const size_t plane = (size_t)rows * cp->pw * cp->blk; /* one block of the output */
    const float slope = act_slope(cp->act);
    const in_t src = {in, in_rows, in_y0, cp->w};
    if (threads < 1)
        threads = 1;
    if (cp->dwt != NULL) {
        run_dw(cp, kern, avx, &src, out, rows, y0, lo, hi, threads);
        return;
    }
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float patch[PATCH_MAX];              /* 24 KB */
        float v[16 * BE_CONVPOOL_C_MAX * 8]; /* 4 KB: Winograd's transformed patches */
#pragma omp for schedule(static)
        for (int it = 0; it < items; it++) {
            int fb = it / (hi - lo), py = lo + it % (hi - lo), y = 2 * py;
            out_t ot = {.b = cp->bias + fb * NB,
                        .slope = slope,
                        .half = cp->blk == NB ? 8 : plane,
                        .step = (size_t)cp->blk};
            const float *wt = cp->wt + (size_t)fb * k * NB;
            float *o =
                out + (size_t)(fb * NB / cp->blk) * plane + (size_t)(py - y0) * cp->pw * cp->blk;
            int two = y + 1 < cp->oh, a, b;
            wino_span(cp, y, &a, &b);
            if (a < b)
                wino_row(cp, &src, cp->wino + (size_t)fb * 16 * cp->c * NB, y, a, b, o, &ot, isa,
                         v);
            /* the rest, or all, direct: [0, a) and [b, pw) */
            for (int part = 0; part < 2; part++) {
                int jlo = part == 0 ? 0 : b, jhi = part == 0 ? a : cp->pw;
                if (a == b) /* no Winograd: one part, the whole row */
                    jlo = 0, jhi = part == 0 ? cp->pw : 0;
                if (jlo >= jhi)
                    continue;
                conv_row(cp, kern, &src, wt, y, o, &ot, 1, !two, patch, jlo, jhi);
                if (two)
                    conv_row(cp, kern, &src, wt, y + 1, o, &ot, 0, 1, patch, jlo, jhi);
            }
        }
    }
}

void be_convpool_run_all(const be_convpool_t *cp, const float *in, float *out, int threads)
{
    be_convpool_run(cp, in, cp->h, 0, out, cp->ph, 0, 0, cp->ph, threads);
}
