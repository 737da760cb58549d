#include "fast.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "clones.h"
#include "err.h"
#include "pgemm.h"

/* Weak, so that a binary linking be_core without OpenBLAS still links: be_fast_check then
 * refuses and the caller keeps network_predict. be_core is meant to link OpenBLAS. */
#pragma weak cblas_sgemm
#pragma weak openblas_set_num_threads
#pragma weak openblas_get_num_threads

/* Exported by libdarknet but not declared in darknet.h. */
void activate_array(float *x, const int n, const ACTIVATION a);

/* What predict does for one layer. */
typedef enum {
    OP_DARKNET = 0, /* darknet's own l.forward */
    OP_CONV,        /* im2col (or none for 1x1 s1) + sgemm + bias/activation */
    OP_DEPTHWISE,   /* direct kernel, groups == c == n */
    OP_MAXPOOL,
    OP_WINOGRAD, /* 3x3 stride 1: Winograd F(2x2, 3x3), 16 sgemms */
    OP_YOLO,     /* darknet's [yolo] forward for inference, vectorised logistic */
} op_kind_t;

typedef struct {
    op_kind_t kind;
    float *w;          /* folded weights (our copy), NULL for non-conv ops */
    float *b;          /* folded biases, one per output channel */
    int rows;          /* OP_CONV with im2col: output rows per im2col + sgemm round */
    be_maxpool_t pool; /* OP_MAXPOOL: maxpool.c's geometry (NCHW), the oneDNN engine's loop */
} op_t;

/* Winograd pays off once the 16 small sgemms have enough depth (input channels) to run near
 * full speed: measured on yolov3-tiny, layers with c = 16 or 32 (208x208, 104x104) got slower,
 * layers with c >= 64 about 1.6-2x faster. */
#ifndef WINO_MIN_C
#define WINO_MIN_C 64
#endif

#ifndef CHUNK_BYTES
#define CHUNK_BYTES (256 * 1024)
#endif

struct be_fast {
    network *net;
    op_t *ops;  /* one per layer */
    float *col; /* im2col buffer, big enough for the largest layer */
    float *wv;  /* Winograd transformed input, 16 x c x tiles, largest layer */
    float *wm;  /* Winograd products, 16 x n x tiles, largest layer */
    int threads;
};

/* ---- vectorised bias + activation ----
 * GCC/clang vector extensions rather than intrinsics: one source for every x86-64 (and ARM)
 * target. 4 lanes: baseline x86-64 is SSE2, and wider vectors would change the ABI. The loops
 * are compiled for AVX + FMA as well (FG_CLONES, clones.h). */

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v)
{
    memcpy(p, &v, sizeof v);
}

static inline v4f select4(v4i mask, v4f a, v4f b)
{
    return (v4f)((mask & (v4i)a) | (~mask & (v4i)b));
}

static inline v4f splat4(float x)
{
    return (v4f){x, x, x, x};
}

/* expf to about 2 ulp (Cephes' range reduction and polynomial), branch-free so it vectorises.
 * The argument is clamped so that 2^n stays a normal float. */
static inline v4f exp4(v4f x)
{
    x = select4(x > splat4(88.0f), splat4(88.0f), x);
    x = select4(x < splat4(-87.0f), splat4(-87.0f), x);
    /* Round-to-nearest by the 1.5 * 2^23 trick: no floorf call, which would not vectorise. */
    v4f n = (x * splat4(1.44269504088896341f) + splat4(12582912.0f)) - splat4(12582912.0f);
    v4f r = x - n * splat4(0.693359375f) - n * splat4(-2.12194440e-4f);
    v4f p = splat4(1.9875691500e-4f);
    p = p * r + splat4(1.3981999507e-3f);
    p = p * r + splat4(8.3334519073e-3f);
    p = p * r + splat4(4.1665795894e-2f);
    p = p * r + splat4(1.6666665459e-1f);
    p = p * r + splat4(5.0000001201e-1f);
    p = p * r * r + r + splat4(1.0f);
    v4i e = (__builtin_convertvector(n, v4i) + 127) << 23;
    return p * (v4f)e;
}

static inline v4f act4(v4f v, ACTIVATION a)
{
    switch (a) {
    case LEAKY:
        return select4(v > splat4(0.0f), v, v * splat4(0.1f));
    case RELU:
        return select4(v > splat4(0.0f), v, splat4(0.0f));
    case LOGISTIC:
        return splat4(1.0f) / (splat4(1.0f) + exp4(-v));
    default: /* LINEAR */
        return v;
    }
}

static int act_vectorised(ACTIVATION a)
{
    return a == LEAKY || a == RELU || a == LOGISTIC || a == LINEAR;
}

/* x[0..n) = act(x + b). The tail goes through a padded copy so that every element takes the
 * same code path (and the same rounding). */
FG_CLONES static void bias_act(float *x, int n, float b, ACTIVATION a)
{
    if (!act_vectorised(a)) {
        for (int i = 0; i < n; i++)
            x[i] += b;
        activate_array(x, n, a);
        return;
    }
    v4f vb = splat4(b);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        store4(x + i, act4(load4(x + i) + vb, a));
    if (i < n) {
        float tmp[4] = {0};
        memcpy(tmp, x + i, (size_t)(n - i) * sizeof(float));
        store4(tmp, act4(load4(tmp) + vb, a));
        memcpy(x + i, tmp, (size_t)(n - i) * sizeof(float));
    }
}

/* ---- convolution ---- */

/* Same layout as darknet's im2col_cpu (row (ch, ky, kx), column (oy, ox)), for output rows
 * [oy0, oy1) only, and with one memcpy per valid span of a row when stride is 1 instead of a
 * bounds check per element. */
FG_CLONES static void im2col_rows(const float *im, const layer *l, int oy0, int oy1, float *col)
{
    int c = l->c, h = l->h, w = l->w, size = l->size, stride = l->stride, pad = l->pad;
    int ow = l->out_w;
    size_t plane = (size_t)(oy1 - oy0) * ow;
    for (int ch = 0; ch < c; ch++) {
        const float *src_c = im + (size_t)ch * h * w;
        for (int ky = 0; ky < size; ky++) {
            for (int kx = 0; kx < size; kx++) {
                float *dst = col + ((size_t)(ch * size + ky) * size + kx) * plane;
                int lo = pad - kx > 0 ? pad - kx : 0;
                int hi = w + pad - kx < ow ? w + pad - kx : ow;
                if (hi < lo)
                    hi = lo;
                for (int oy = oy0; oy < oy1; oy++) {
                    float *d = dst + (size_t)(oy - oy0) * ow;
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) {
                        memset(d, 0, (size_t)ow * sizeof(float));
                        continue;
                    }
                    const float *src = src_c + (size_t)iy * w;
                    if (stride == 1) {
                        memset(d, 0, (size_t)lo * sizeof(float));
                        memcpy(d + lo, src + lo - pad + kx, (size_t)(hi - lo) * sizeof(float));
                        memset(d + hi, 0, (size_t)(ow - hi) * sizeof(float));
                    } else {
                        for (int ox = 0; ox < ow; ox++) {
                            int ix = ox * stride - pad + kx;
                            d[ox] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

static int is_pointwise(const layer *l)
{
    return l->size == 1 && l->stride == 1 && l->pad == 0;
}

/* Output rows per im2col + sgemm round for layer l: the column block (K x rows*ow floats) is
 * kept within a quarter of a 1 MiB L2 so that sgemm reads it from cache rather than DRAM, and
 * the output block it writes is still in cache for the bias + activation pass. Measured on
 * yolov3-tiny: the first layers (K = 27..288, out_w = 416..104) went from ~2x their sgemm time
 * to ~1.2x. Never fewer rows than make 512 columns (sgemm gets slow on narrow blocks). */
static int chunk_rows(const layer *l)
{
    size_t per_row = (size_t)l->size * l->size * l->c * l->out_w * sizeof(float);
    int rows = (int)((size_t)CHUNK_BYTES / per_row);
    int min_rows = (512 + l->out_w - 1) / l->out_w;
    if (rows < min_rows)
        rows = min_rows;
    return rows < l->out_h ? rows : l->out_h;
}

static void forward_conv(be_fast_t *f, const op_t *op, const layer *l, const float *in)
{
    int m = l->n, n = l->out_h * l->out_w, k = l->size * l->size * l->c;
    if (is_pointwise(l)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, op->w, k, in, n, 0.0f,
                    l->output, n);
        for (int i = 0; i < m; i++)
            bias_act(l->output + (size_t)i * n, n, op->b[i], l->activation);
        return;
    }
    int rows = op->rows;
    for (int oy0 = 0; oy0 < l->out_h; oy0 += rows) {
        int oy1 = oy0 + rows < l->out_h ? oy0 + rows : l->out_h;
        int nc = (oy1 - oy0) * l->out_w;
        float *out = l->output + (size_t)oy0 * l->out_w;
        im2col_rows(in, l, oy0, oy1, f->col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, nc, k, 1.0f, op->w, k, f->col, nc,
                    0.0f, out, n);
        for (int i = 0; i < m; i++)
            bias_act(out + (size_t)i * n, nc, op->b[i], l->activation);
    }
}

/* One output row at a time, so the row being accumulated stays in L1 while the kernel taps
 * sweep over it. */
/* 3x3, stride 1, padding 1 (every separable convolution of the face model): each output row
 * in one pass over its three input rows, nine taps per pixel, one store. */
static inline void depthwise3_row(const float *restrict up, const float *restrict mid,
                                  const float *restrict down, const float *restrict k, int w,
                                  float *restrict o)
{
    /* Missing rows (the top and bottom padding) come in as NULL. */
    float k0 = up ? k[0] : 0, k1 = up ? k[1] : 0, k2 = up ? k[2] : 0;
    float k6 = down ? k[6] : 0, k7 = down ? k[7] : 0, k8 = down ? k[8] : 0;
    up = up ? up : mid;
    down = down ? down : mid;
    if (w == 1) {
        o[0] = k1 * up[0] + k[4] * mid[0] + k7 * down[0];
        return;
    }
    o[0] = k1 * up[0] + k2 * up[1] + k[4] * mid[0] + k[5] * mid[1] + k7 * down[0] + k8 * down[1];
    for (int x = 1; x < w - 1; x++)
        o[x] = k0 * up[x - 1] + k1 * up[x] + k2 * up[x + 1] + k[3] * mid[x - 1] + k[4] * mid[x] +
               k[5] * mid[x + 1] + k6 * down[x - 1] + k7 * down[x] + k8 * down[x + 1];
    o[w - 1] = k0 * up[w - 2] + k1 * up[w - 1] + k[3] * mid[w - 2] + k[4] * mid[w - 1] +
               k6 * down[w - 2] + k7 * down[w - 1];
}

FG_CLONES static void forward_depthwise(const op_t *op, const layer *l, const float *in)
{
    int h = l->h, w = l->w, oh = l->out_h, ow = l->out_w;
    int size = l->size, s = l->stride, pad = l->pad;
    if (size == 3 && s == 1 && pad == 1 && oh == h && ow == w) {
        for (int ch = 0; ch < l->c; ch++) {
            const float *src = in + (size_t)ch * h * w;
            float *out = l->output + (size_t)ch * oh * ow;
            for (int y = 0; y < h; y++)
                depthwise3_row(y > 0 ? src + (size_t)(y - 1) * w : NULL, src + (size_t)y * w,
                               y + 1 < h ? src + (size_t)(y + 1) * w : NULL, op->w + (size_t)ch * 9,
                               w, out + (size_t)y * w);
            bias_act(out, oh * ow, op->b[ch], l->activation);
        }
        return;
    }
    for (int ch = 0; ch < l->c; ch++) {
        const float *src = in + (size_t)ch * h * w;
        const float *wk = op->w + (size_t)ch * size * size;
        float *out = l->output + (size_t)ch * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            float *o = out + (size_t)oy * ow;
            memset(o, 0, (size_t)ow * sizeof(float));
            for (int ky = 0; ky < size; ky++) {
                int iy = oy * s - pad + ky;
                if (iy < 0 || iy >= h)
                    continue;
                const float *row = src + (size_t)iy * w;
                for (int kx = 0; kx < size; kx++) {
                    float wv = wk[ky * size + kx];
                    /* ox such that 0 <= ox * s - pad + kx < w */
                    int lo = pad - kx > 0 ? (pad - kx + s - 1) / s : 0;
                    int hi = w - 1 + pad - kx >= 0 ? (w - 1 + pad - kx) / s + 1 : 0;
                    if (hi > ow)
                        hi = ow;
                    if (s == 1) {
                        const float *r = row + kx - pad;
                        for (int ox = lo; ox < hi; ox++)
                            o[ox] += wv * r[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++)
                            o[ox] += wv * row[ox * s - pad + kx];
                    }
                }
            }
        }
        bias_act(out, oh * ow, op->b[ch], l->activation);
    }
}

/* ---- Winograd F(2x2, 3x3) ----
 * Y = A^T [ (G g G^T) .* (B^T d B) ] A for each 4x4 input tile d and 2x2 output tile: 16
 * multiplies instead of 36 per tile and channel pair, done as 16 products of
 * (n x c) * (c x tiles) by pgemm: the transformed weights packed once at load, the input
 * transform written straight into pgemm's packed layout. The transforms only add, subtract
 * and halve, so the result stays within a few ulp of the direct sum (the unit test holds it
 * to darknet's within 1e-4). */

static int fold(op_t *op, const layer *l);

static int wino_tiles(const layer *l, int *tw)
{
    *tw = (l->out_w + 1) / 2;
    return *tw * ((l->out_h + 1) / 2);
}

/* One product's input, packed (pgemm): c x tiles. */
static size_t wino_vsize(const layer *l)
{
    int tw;
    return be_pgemm_b_floats(l->c, wino_tiles(l, &tw));
}

/* U[xi][m][c] = (G g G^T)[xi] for the folded 3x3 kernel g of (m, c), at create time; each
 * U[xi] then packed for pgemm (be_pgemm_a_floats(n, c) apart). */
static int wino_fold(op_t *op, const layer *l)
{
    int rv;
    if ((rv = fold(op, l)) != 0)
        return rv;
    size_t mc = (size_t)l->n * l->c, pa = be_pgemm_a_floats(l->n, l->c);
    float *u = malloc(16 * mc * sizeof(float)), *up = malloc(16 * pa * sizeof(float));
    if (u == NULL || up == NULL) {
        free(u);
        free(up);
        return PROTO_ENOMEM;
    }
    for (size_t i = 0; i < mc; i++) {
        const float *g = op->w + i * 9;
        float t[4][3]; /* G g */
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int r = 0; r < 4; r++) { /* (G g) G^T */
            float v[4] = {t[r][0], 0.5f * (t[r][0] + t[r][1] + t[r][2]),
                          0.5f * (t[r][0] - t[r][1] + t[r][2]), t[r][2]};
            for (int c = 0; c < 4; c++)
                u[(size_t)(r * 4 + c) * mc + i] = v[c];
        }
    }
    for (int xi = 0; xi < 16; xi++)
        be_pgemm_pack_a(up + xi * pa, u + xi * mc, l->n, l->c);
    free(u);
    free(op->w);
    op->w = up;
    return 0;
}

/* One 4x4 tile of one channel's plane (h x w), its top-left at (y0, x0) (outside the plane
 * is zero padding): the 16 values of B^T d B, written ct floats apart from o. */
static void wino_tile(float *o, size_t ct, const float *src, int h, int w, int y0, int x0)
{
    float d[4][4];
    if (y0 >= 0 && x0 >= 0 && y0 + 4 <= h && x0 + 4 <= w) {
        for (int r = 0; r < 4; r++)
            memcpy(d[r], src + (size_t)(y0 + r) * w + x0, sizeof d[r]);
    } else {
        for (int r = 0; r < 4; r++)
            for (int q = 0; q < 4; q++) {
                int y = y0 + r, x = x0 + q;
                d[r][q] = (y >= 0 && y < h && x >= 0 && x < w) ? src[(size_t)y * w + x] : 0.0f;
            }
    }
    float b[4][4];
    for (int q = 0; q < 4; q++) { /* B^T d */
        b[0][q] = d[0][q] - d[2][q];
        b[1][q] = d[1][q] + d[2][q];
        b[2][q] = d[2][q] - d[1][q];
        b[3][q] = d[1][q] - d[3][q];
    }
    for (int r = 0; r < 4; r++) { /* (B^T d) B */
        o[(size_t)(r * 4 + 0) * ct] = b[r][0] - b[r][2];
        o[(size_t)(r * 4 + 1) * ct] = b[r][1] + b[r][2];
        o[(size_t)(r * 4 + 2) * ct] = b[r][2] - b[r][1];
        o[(size_t)(r * 4 + 3) * ct] = b[r][1] - b[r][3];
    }
}

#define WINO_CB 32

/* The input transform of channels [c0, c1): V[xi][ch][t] = (B^T d B)[xi] into v (16 packed
 * c x tiles matrices, wino_vsize apart; the panel's columns past the last tile zeroed). */
static void wino_input(float *v, const layer *l, const float *in, int c0, int c1)
{
    int tw, tiles = wino_tiles(l, &tw), c = l->c;
    size_t ct = wino_vsize(l);
    /* Blocks of channels (their planes stay in L1), and in a block panel by panel, so that
     * each of the 16 outputs is written in runs of WINO_CB x 6 floats: channel by channel,
     * the writes went to 16 x 9 places at once on a 13 x 13 layer, and panel by panel over
     * all channels the input was read 9 times from L2. */
    for (int cb = c0; cb < c1; cb += WINO_CB)
        for (int t0 = 0; t0 < tiles; t0 += BE_PGEMM_NR)
            for (int ch = cb; ch < c1 && ch < cb + WINO_CB; ch++)
                for (int t = t0; t < t0 + BE_PGEMM_NR; t++) {
                    float *o = v + be_pgemm_b_at(c, ch, t);
                    if (t < tiles)
                        wino_tile(o, ct, in + (size_t)ch * l->h * l->w, l->h, l->w,
                                  (t / tw) * 2 - l->pad, (t % tw) * 2 - l->pad);
                    else /* the last panel's padding */
                        for (int xi = 0; xi < 16; xi++)
                            o[xi * ct] = 0.0f;
                }
}

/* Rows [m0, m1) (m0 a multiple of BE_PGEMM_MR) of the 16 products M[xi] = U[xi] V[xi],
 * transposed, into mo (16 x tiles x n floats: M[xi][k][t] at mo[(xi * tiles + t) * n + k]). */
static void wino_gemm(float *mo, const float *v, const op_t *op, const layer *l, int m0, int m1)
{
    int tw, tiles = wino_tiles(l, &tw), c = l->c;
    size_t ct = wino_vsize(l), mt = (size_t)l->n * tiles, pa = be_pgemm_a_floats(l->n, c);
    for (int xi = 0; xi < 16; xi++)
        be_pgemm(op->w + xi * pa, v + xi * ct, mo + xi * mt, l->n, m0, m1, tiles, c);
}

/* Output channels [k0, k1): Y = A^T M A, then bias + activation over each output plane. */
static void wino_output(const float *mo, const op_t *op, const layer *l, int k0, int k1)
{
    int oh = l->out_h, ow = l->out_w, tw;
    int tiles = wino_tiles(l, &tw);
    size_t mt = (size_t)l->n * tiles, plane = (size_t)oh * ow;
    /* Tile by tile, reading each product's row of channels in order. */
    for (int t = 0; t < tiles; t++)
        for (int k = k0; k < k1; k++) {
            float *out = l->output + (size_t)k * plane;
            const float *p = mo + (size_t)t * l->n + k;
            float s[2][4];
            for (int q = 0; q < 4; q++) {
                float m0 = p[(size_t)q * mt], m1 = p[(size_t)(4 + q) * mt];
                float m2 = p[(size_t)(8 + q) * mt], m3 = p[(size_t)(12 + q) * mt];
                s[0][q] = m0 + m1 + m2;
                s[1][q] = m1 - m2 - m3;
            }
            int y = (t / tw) * 2, x = (t % tw) * 2;
            for (int r = 0; r < 2 && y + r < oh; r++) {
                float *row = out + (size_t)(y + r) * ow + x;
                row[0] = s[r][0] + s[r][1] + s[r][2];
                if (x + 1 < ow)
                    row[1] = s[r][1] - s[r][2] - s[r][3];
            }
        }
    for (int k = k0; k < k1; k++)
        bias_act(l->output + (size_t)k * plane, oh * ow, op->b[k], l->activation);
}

/* v: 16 x wino_vsize floats of scratch, mo: 16 x n x tiles. With threads > 1 on an OpenMP
 * team: each thread transforms a share of the input channels, then computes its own rows of
 * all 16 products and transforms those same rows out: one barrier in all. Each output value
 * is computed the same way whichever thread runs it. */
static void forward_winograd(float *v, float *mo, const op_t *op, const layer *l, const float *in,
                             int threads)
{
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
            wino_input(v, l, in, l->c * id / nt, l->c * (id + 1) / nt);
#pragma omp barrier
            int panels = (l->n + BE_PGEMM_MR - 1) / BE_PGEMM_MR; /* rows in whole panels */
            int m0 = BE_PGEMM_MR * (panels * id / nt), m1 = BE_PGEMM_MR * (panels * (id + 1) / nt);
            if (m1 > l->n)
                m1 = l->n;
            wino_gemm(mo, v, op, l, m0, m1);
            wino_output(mo, op, l, m0, m1);
        }
        return;
    }
#else
    (void)threads;
#endif
    wino_input(v, l, in, 0, l->c);
    wino_gemm(mo, v, op, l, 0, l->n);
    wino_output(mo, op, l, 0, l->n);
}

/* darknet's forward_yolo_layer when not training: a copy of the input with the logistic applied
 * to x, y, objectness and the class scores of each anchor (not to w, h). */
static void forward_yolo(const layer *l, const float *in)
{
    int wh = l->w * l->h;
    memcpy(l->output, in, (size_t)l->outputs * sizeof(float));
    for (int n = 0; n < l->n; n++) {
        float *base = l->output + (size_t)n * wh * (4 + l->classes + 1);
        bias_act(base, 2 * wh, 0.0f, LOGISTIC);
        bias_act(base + 4 * wh, (1 + l->classes) * wh, 0.0f, LOGISTIC);
    }
}

/* ---- set-up ---- */

static op_kind_t classify(const layer *l)
{
    if (l->type == MAXPOOL)
        return OP_MAXPOOL;
    if (l->type == YOLO)
        return OP_YOLO;
    if (l->type != CONVOLUTIONAL || l->xnor || l->binary)
        return OP_DARKNET;
    if (l->groups <= 1) {
        if (l->size == 3 && l->stride == 1 && l->c >= WINO_MIN_C)
            return OP_WINOGRAD;
        /* darknet treats every 1x1 as "no im2col" even with a stride or padding, which reads
         * the input with the wrong geometry; keep that behaviour by running darknet's code. */
        return l->size != 1 || is_pointwise(l) ? OP_CONV : OP_DARKNET;
    }
    if (l->groups == l->c && l->n == l->c)
        return OP_DEPTHWISE;
    return OP_DARKNET;
}

int be_fast_fold(const layer *l, float **w, float **b)
{
    size_t nw = (size_t)l->nweights, per = nw / (size_t)l->n;
    *w = malloc(nw * sizeof(float));
    *b = malloc((size_t)l->n * sizeof(float));
    if (*w == NULL || *b == NULL)
        return PROTO_ENOMEM;
    for (int i = 0; i < l->n; i++) {
        float s = 1.0f, bias = l->biases[i];
        if (l->batch_normalize) {
            s = l->scales[i] / (sqrtf(l->rolling_variance[i]) + .000001f);
            bias = l->biases[i] - l->rolling_mean[i] * s;
        }
        for (size_t j = 0; j < per; j++)
            (*w)[i * per + j] = l->weights[i * per + j] * s;
        (*b)[i] = bias;
    }
    return 0;
}

be_maxpool_t be_fast_pool(const layer *l, int blk)
{
    return (be_maxpool_t){.c = l->c,
                          .h = l->h,
                          .w = l->w,
                          .out_h = l->out_h,
                          .out_w = l->out_w,
                          .size = l->size,
                          .stride = l->stride,
                          .pad = l->pad,
                          .blk = blk};
}

/* op->w, op->b: freed with the op, whatever this returns */
static int fold(op_t *op, const layer *l)
{
    return be_fast_fold(l, &op->w, &op->b);
}

int be_fast_check(const network *net, char *why, size_t whycap)
{
    const char *reason = NULL;
    if (net == NULL || net->n <= 0 || net->layers == NULL)
        reason = "no network or no layers";
    else if (cblas_sgemm == NULL || openblas_set_num_threads == NULL)
        reason = "OpenBLAS is not linked into this binary";
    else if (net->batch != 1)
        reason = "batch != 1 (call set_batch_network(net, 1))";
    for (int i = 0; reason == NULL && net != NULL && i < net->n; i++)
        if (net->layers[i].batch != 1)
            reason = "a layer has batch != 1";
    if (reason == NULL)
        return 0;
    if (why != NULL && whycap > 0)
        snprintf(why, whycap, "%s", reason);
    return PROTO_EINVAL;
}

int be_fast_create(be_fast_t **out, network *net, int threads)
{
    int rv;
    if ((rv = be_fast_check(net, NULL, 0)) != 0)
        return rv;
    be_fast_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return PROTO_ENOMEM;
    f->net = net;
    f->threads = threads > 0 ? threads : 1;
    if ((f->ops = calloc((size_t)net->n, sizeof(op_t))) == NULL) {
        free(f);
        return PROTO_ENOMEM;
    }
    size_t col = 0, wv = 0, wm = 0;
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        op_t *op = &f->ops[i];
        op->kind = classify(l);
        if (op->kind == OP_WINOGRAD) {
            int tw, tiles = wino_tiles(l, &tw);
            if (16 * wino_vsize(l) > wv)
                wv = 16 * wino_vsize(l);
            if ((size_t)16 * l->n * tiles > wm)
                wm = (size_t)16 * l->n * tiles;
            if ((rv = wino_fold(op, l)) != 0) {
                be_fast_destroy(f);
                return rv;
            }
        }
        if (op->kind == OP_CONV || op->kind == OP_DEPTHWISE) {
            if ((rv = fold(op, l)) != 0) {
                be_fast_destroy(f);
                return rv;
            }
        }
        if (op->kind == OP_MAXPOOL) {
            op->pool = be_fast_pool(l, 1);
            if (l->out_c != l->c || !be_maxpool_fits(&op->pool))
                op->kind = OP_DARKNET;
        }
        if (op->kind == OP_CONV && !is_pointwise(l)) {
            op->rows = chunk_rows(l);
            size_t need = (size_t)l->size * l->size * l->c * op->rows * l->out_w;
            if (need > col)
                col = need;
        }
    }
    if ((col > 0 && (f->col = malloc(col * sizeof(float))) == NULL) ||
        (wv > 0 && (f->wv = malloc(wv * sizeof(float))) == NULL) ||
        (wm > 0 && (f->wm = malloc(wm * sizeof(float))) == NULL)) {
        be_fast_destroy(f);
        return PROTO_ENOMEM;
    }
    openblas_set_num_threads(f->threads);
    *out = f;
    return 0;
}

float *be_fast_predict(be_fast_t *f, const float *input)
{
    return be_fast_predict_stop(f, input, NULL, NULL);
}

float *be_fast_predict_stop(be_fast_t *f, const float *input, be_fast_stop_cb stop, void *arg)
{
    /* The same by-value network that forward_network hands each layer: darknet layers read
     * net.input (the previous output) and net.train, and route/shortcut read other layers'
     * outputs through net.layers. */
    network net = *f->net;
    /* process-wide, and another engine in this process may have changed it */
    if (openblas_get_num_threads != NULL && openblas_get_num_threads() != f->threads)
        openblas_set_num_threads(f->threads);
    net.input = (float *)input; /* darknet's type; no layer writes its input */
    net.truth = 0;
    net.train = 0;
    net.delta = 0;
    for (int i = 0; i < net.n; i++) {
        /* One check per layer: a clock read costs ~20 ns against a layer's 0.1-10 ms, and it
         * bounds what a frame nobody waits for still costs to one layer. */
        if (stop != NULL && stop(arg))
            return NULL;
        net.index = i;
        layer l = net.layers[i];
        const op_t *op = &f->ops[i];
        switch (op->kind) {
        case OP_CONV:
            forward_conv(f, op, &l, net.input);
            break;
        case OP_DEPTHWISE:
            forward_depthwise(op, &l, net.input);
            break;
        case OP_MAXPOOL:
            be_maxpool_blocked(&op->pool, net.input, l.output, f->threads);
            break;
        case OP_WINOGRAD:
            forward_winograd(f->wv, f->wm, op, &l, net.input, f->threads);
            break;
        case OP_YOLO:
            forward_yolo(&l, net.input);
            break;
        default:
            l.forward(l, net);
            break;
        }
        net.input = l.output;
        if (l.truth)
            net.truth = l.output;
    }
    return f->net->output;
}

void be_fast_destroy(be_fast_t *f)
{
    if (f == NULL)
        return;
    if (f->ops != NULL) {
        for (int i = 0; i < f->net->n; i++) {
            free(f->ops[i].w);
            free(f->ops[i].b);
        }
        free(f->ops);
    }
    free(f->col);
    free(f->wv);
    free(f->wm);
    free(f);
}

double be_fast_flops(const network *net)
{
    double flops = 0;
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        if (l->type != CONVOLUTIONAL)
            continue;
        int groups = l->groups > 0 ? l->groups : 1;
        flops += 2.0 * l->n * l->size * l->size * (double)(l->c / groups) * l->out_h * l->out_w;
    }
    return flops;
}

/* ---- one Winograd layer for another engine (backend/dnnl.c) ---- */

struct be_fast_wino {
    op_t op;
};

int be_fast_wino_fits(const layer *l, int threads)
{
#ifndef _OPENMP
    if (threads > 1) /* no team to share it: oneDNN's own threads would be faster */
        return 0;
#else
    (void)threads;
#endif
    return l->type == CONVOLUTIONAL && l->batch == 1 && classify(l) == OP_WINOGRAD;
}

int be_fast_wino_create(be_fast_wino_t **out, const layer *l)
{
    if (!be_fast_wino_fits(l, 1))
        return PROTO_EINVAL;
    be_fast_wino_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return PROTO_ENOMEM;
    w->op.kind = OP_WINOGRAD;
    int rv = wino_fold(&w->op, l);
    if (rv != 0) {
        be_fast_wino_destroy(w);
        return rv;
    }
    *out = w;
    return 0;
}

size_t be_fast_wino_scratch(const layer *l)
{
    int tw, tiles = wino_tiles(l, &tw);
    return 16 * (wino_vsize(l) + (size_t)tiles * l->n);
}

void be_fast_wino_forward(const be_fast_wino_t *w, const layer *l, const float *in, float *scratch,
                          int threads)
{
    forward_winograd(scratch, scratch + 16 * wino_vsize(l), &w->op, l, in, threads);
}

void be_fast_wino_destroy(be_fast_wino_t *w)
{
    if (w == NULL)
        return;
    free(w->op.w);
    free(w->op.b);
    free(w);
}
