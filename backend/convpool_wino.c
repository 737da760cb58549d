/* be_convpool's Winograd F(2x2,3x3) tiles (convpool_internal.h): a first 3x3's interior 2x2
 * pool windows, each one tile, 16 products per channel and filter instead of 36.
 *
 * The input's 4x4 patches are transformed 8 tiles at a time (with AVX2, the 8 as one vector,
 * the even and odd columns deinterleaved from two loads), then per tile the products over the
 * channels for 16 filters, A' ... A, the pool's max, bias and activation: with AVX-512F four
 * tiles at a time, with AVX2 one. On the face model's first layer (416 x 416 x 3 -> 16, AMD
 * Zen 4) the pass took 0.81-0.82 of the direct kernel's time with the AVX2 tiles, 0.68-0.70
 * with the AVX-512 ones (0.79-0.82 of the AVX2 tiles' pass; in-process, in turns, 1 and 2
 * threads); its output is within 3.2e-7 (relative) of the direct one's, the two tile kernels'
 * the same bit for bit. Pure functions of their arguments: any thread. */
#include "convpool_internal.h"

/* Winograd F(2x2,3x3) (Lavin and Gray): a 2x2 block of the convolution's output, which is one
 * window of the 2x2 pool after it, from a 4x4 patch of each input channel: Y = A' [(G g G') . (B'
 * d B)] A, 16 products per channel instead of 36. The filter's transform G g G', row by row. */
void be_convpool_wino_weights(const float g[9], float u[16])
{
    float t[4][3];
    for (int c = 0; c < 3; c++) { /* G g: G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1] */
        t[0][c] = g[c];
        t[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
        t[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
        t[3][c] = g[6 + c];
    }
    for (int r = 0; r < 4; r++) { /* (G g) G' */
        u[r * 4 + 0] = t[r][0];
        u[r * 4 + 1] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
        u[r * 4 + 2] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
        u[r * 4 + 3] = t[r][2];
    }
}

/* B' d B of the 4x4 patches of `nt` (<= 8) tiles 2 columns apart, every channel: v[pos][ch][t]
 * (pos row by row). `in` is channel 0's patch of tile 0, `gs` floats between channels, `w`
 * between rows. B' = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
static void wino_input(const float *in, size_t gs, int w, int c, int nt, float *v)
{
    for (int ch = 0; ch < c; ch++)
        for (int t = 0; t < nt; t++) {
            const float *d = in + ch * gs + 2 * t;
            float x[4][4], y[4][4];
            for (int cc = 0; cc < 4; cc++) { /* B' d: over rows */
                float d0 = d[cc], d1 = d[w + cc], d2 = d[2 * w + cc], d3 = d[3 * w + cc];
                x[0][cc] = d0 - d2;
                x[1][cc] = d1 + d2;
                x[2][cc] = d2 - d1;
                x[3][cc] = d1 - d3;
            }
            for (int r = 0; r < 4; r++) { /* (B' d) B: over columns */
                y[r][0] = x[r][0] - x[r][2];
                y[r][1] = x[r][1] + x[r][2];
                y[r][2] = x[r][2] - x[r][1];
                y[r][3] = x[r][1] - x[r][3];
            }
            for (int pos = 0; pos < 16; pos++)
                v[((size_t)pos * c + ch) * 8 + t] = y[pos / 4][pos % 4];
        }
}

/* A' = [1 1 1 0; 0 1 -1 -1]: how product pos (r, c) enters output (i, j): a[i][r] * a[j][c] */
static const signed char wino_a[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};

/* The products, the output transform, the pool's max, bias and activation of nt tiles from
 * their transformed patches v (wino_input) and filter block wt ([16][c][NB]): pooled cells o,
 * o + step, ... (see kernel_fn's out_t). */
static void wino_tiles_c(const float *v, int c, int nt, const float *wt, float *o, const out_t *ot)
{
    for (int t = 0; t < nt; t++) {
        float y[4][NB] = {{0}};
        for (int pos = 0; pos < 16; pos++) {
            float m[NB] = {0};
            for (int ch = 0; ch < c; ch++) {
                float x = v[((size_t)pos * c + ch) * 8 + t];
                for (int f = 0; f < NB; f++)
                    m[f] += x * wt[((size_t)pos * c + ch) * NB + f];
            }
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    int a = wino_a[i][pos / 4] * wino_a[j][pos % 4];
                    for (int f = 0; f < NB && a != 0; f++)
                        y[i * 2 + j][f] += a > 0 ? m[f] : -m[f];
                }
        }
        for (int f = 0; f < NB; f++) {
            float mx = y[0][f]; /* the window's cells in darknet's order: ties keep the first */
            for (int q = 1; q < 4; q++)
                mx = y[q][f] > mx ? y[q][f] : mx;
            mx += ot->b[f];
            o[t * ot->step + (f / 8) * ot->half + f % 8] = mx > 0 ? mx : mx * ot->slope;
        }
    }
}

#ifdef CP_X86
/* y += a * m for a constant a in {-1, 0, 1} (folded once the macros are expanded). */
#define WINO_ACC(yl, yh, a)                                                                        \
    do {                                                                                           \
        if ((a) > 0) {                                                                             \
            yl = _mm256_add_ps(yl, ml);                                                            \
            yh = _mm256_add_ps(yh, mh);                                                            \
        } else if ((a) < 0) {                                                                      \
            yl = _mm256_sub_ps(yl, ml);                                                            \
            yh = _mm256_sub_ps(yh, mh);                                                            \
        }                                                                                          \
    } while (0)
#define WINO_A0(r) ((r) < 3)
#define WINO_A1(r) ((r) == 0 ? 0 : (r) == 1 ? 1 : -1)
/* Product (r, cc) of tile t: its 16 filters over the channels, into the four outputs. */
#define WINO_POS(r, cc)                                                                            \
    do {                                                                                           \
        const float *xv = v + (size_t)((r)*4 + (cc)) * c * 8 + t;                                  \
        const float *wp = wt + (size_t)((r)*4 + (cc)) * c * NB;                                    \
        __m256 ml = _mm256_setzero_ps(), mh = ml;                                                  \
        for (int ch = 0; ch < c; ch++) {                                                           \
            __m256 x = _mm256_broadcast_ss(xv + ch * 8);                                           \
            ml = _mm256_fmadd_ps(x, _mm256_loadu_ps(wp + ch * NB), ml);                            \
            mh = _mm256_fmadd_ps(x, _mm256_loadu_ps(wp + ch * NB + 8), mh);                        \
        }                                                                                          \
        WINO_ACC(y0l, y0h, WINO_A0(r) * WINO_A0(cc));                                              \
        WINO_ACC(y1l, y1h, WINO_A0(r) * WINO_A1(cc));                                              \
        WINO_ACC(y2l, y2h, WINO_A1(r) * WINO_A0(cc));                                              \
        WINO_ACC(y3l, y3h, WINO_A1(r) * WINO_A1(cc));                                              \
    } while (0)

/* Columns 2t + k, t = 0..7, of row p (p[0] .. p[2 * 7 + k]), k = 0 / 1 from one pair of loads. */
__attribute__((target("avx2,fma"))) static inline void wino_cols(const float *p, __m256 *even,
                                                                 __m256 *odd)
{
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 b0 b2 | a4 a6 b4 b6 */
    __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* wino_input for 8 tiles, the 8 as one vector: reads p[0 .. 17] of each row. */
__attribute__((target("avx2,fma"))) static void wino_input_avx2(const float *in, size_t gs, int w,
                                                                int c, float *v)
{
    for (int ch = 0; ch < c; ch++) {
        __m256 x[4][4];
        for (int r = 0; r < 4; r++) {
            const float *p = in + ch * gs + (size_t)r * w;
            __m256 d0, d1, d2, d3;
            wino_cols(p, &d0, &d1);
            wino_cols(p + 2, &d2, &d3);
            x[r][0] = _mm256_sub_ps(d0, d2); /* d B: over columns */
            x[r][1] = _mm256_add_ps(d1, d2);
            x[r][2] = _mm256_sub_ps(d2, d1);
            x[r][3] = _mm256_sub_ps(d1, d3);
        }
        for (int cc = 0; cc < 4; cc++) { /* B' (d B): over rows */
            float *o = v + (size_t)ch * 8 + (size_t)cc * c * 8;
            _mm256_storeu_ps(o, _mm256_sub_ps(x[0][cc], x[2][cc]));
            _mm256_storeu_ps(o + (size_t)4 * c * 8, _mm256_add_ps(x[1][cc], x[2][cc]));
            _mm256_storeu_ps(o + (size_t)8 * c * 8, _mm256_sub_ps(x[2][cc], x[1][cc]));
            _mm256_storeu_ps(o + (size_t)12 * c * 8, _mm256_sub_ps(x[1][cc], x[3][cc]));
        }
    }
}

/* wino_tiles_c with AVX2 + FMA, tiles t_first .. nt - 1: the 16 filters as two 8-wide halves. (The
 * channel loop forced unrolled for RGB spilled registers: the pass took 0.90x of the direct
 * kernel's time, not 0.82x.) */
__attribute__((target("avx2,fma"))) static void wino_tiles_avx2(const float *v, int c, int t_first,
                                                                int nt, const float *wt, float *o,
                                                                const out_t *ot)
{
    const __m256 bl = _mm256_loadu_ps(ot->b), bh = _mm256_loadu_ps(ot->b + 8);
    const __m256 sl = _mm256_set1_ps(ot->slope);
    for (int t = t_first; t < nt; t++) {
        __m256 y0l = _mm256_setzero_ps(), y0h = y0l, y1l = y0l, y1h = y0l, y2l = y0l, y2h = y0l;
        __m256 y3l = y0l, y3h = y0l;
        WINO_POS(0, 0);
        WINO_POS(0, 1);
        WINO_POS(0, 2);
        WINO_POS(0, 3);
        WINO_POS(1, 0);
        WINO_POS(1, 1);
        WINO_POS(1, 2);
        WINO_POS(1, 3);
        WINO_POS(2, 0);
        WINO_POS(2, 1);
        WINO_POS(2, 2);
        WINO_POS(2, 3);
        WINO_POS(3, 0);
        WINO_POS(3, 1);
        WINO_POS(3, 2);
        WINO_POS(3, 3);
        /* the window's cells in darknet's order: ties keep the first */
        __m256 lo = _mm256_max_ps(y1l, y0l), hi = _mm256_max_ps(y1h, y0h);
        lo = _mm256_max_ps(y2l, lo);
        hi = _mm256_max_ps(y2h, hi);
        lo = _mm256_max_ps(y3l, lo);
        hi = _mm256_max_ps(y3h, hi);
        float *dl = o + (size_t)t * ot->step, *dh = dl + ot->half;
        _mm256_storeu_ps(dl, act_avx2(lo, bl, sl));
        _mm256_storeu_ps(dh, act_avx2(hi, bh, sl));
    }
}

/* Product (r, cc) of tile t0 + T (T a constant 0..3): its 16 filters (one vector) over the
 * channels, into that tile's four outputs. */
#define W5_TILE(T, r, cc)                                                                          \
    do {                                                                                           \
        const float *xv = v + (size_t)((r)*4 + (cc)) * c * 8 + t0 + (T);                           \
        __m512 m = _mm512_mul_ps(_mm512_set1_ps(xv[0]), w0);                                       \
        if (c > 1)                                                                                 \
            m = _mm512_fmadd_ps(_mm512_set1_ps(xv[8]), w1, m);                                     \
        if (c > 2)                                                                                 \
            m = _mm512_fmadd_ps(_mm512_set1_ps(xv[16]), w2, m);                                    \
        for (int ch = 3; ch < c; ch++)                                                             \
            m = _mm512_fmadd_ps(_mm512_set1_ps(xv[ch * 8]), _mm512_loadu_ps(wp + ch * NB), m);     \
        W5_ACC(y##T##0, WINO_A0(r) * WINO_A0(cc));                                                 \
        W5_ACC(y##T##1, WINO_A0(r) * WINO_A1(cc));                                                 \
        W5_ACC(y##T##2, WINO_A1(r) * WINO_A0(cc));                                                 \
        W5_ACC(y##T##3, WINO_A1(r) * WINO_A1(cc));                                                 \
    } while (0)
#define W5_ACC(y, a)                                                                               \
    do {                                                                                           \
        if ((a) > 0)                                                                               \
            y = _mm512_add_ps(y, m);                                                               \
        else if ((a) < 0)                                                                          \
            y = _mm512_sub_ps(y, m);                                                               \
    } while (0)
/* Product (r, cc) of the four tiles, the filters' first three channels loaded once for them. */
#define W5_POS(r, cc)                                                                              \
    do {                                                                                           \
        const float *wp = wt + (size_t)((r)*4 + (cc)) * c * NB;                                    \
        __m512 w0 = _mm512_loadu_ps(wp);                                                           \
        __m512 w1 = c > 1 ? _mm512_loadu_ps(wp + NB) : w0;                                         \
        __m512 w2 = c > 2 ? _mm512_loadu_ps(wp + 2 * NB) : w0;                                     \
        W5_TILE(0, r, cc);                                                                         \
        W5_TILE(1, r, cc);                                                                         \
        W5_TILE(2, r, cc);                                                                         \
        W5_TILE(3, r, cc);                                                                         \
    } while (0)
/* Tile t0 + T's pool max (darknet's order: ties keep the first), bias and activation, stored. */
#define W5_OUT(T)                                                                                  \
    do {                                                                                           \
        __m512 x = _mm512_max_ps(y##T##1, y##T##0);                                                \
        x = _mm512_max_ps(y##T##2, x);                                                             \
        x = _mm512_add_ps(_mm512_max_ps(y##T##3, x), b);                                           \
        x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ),           \
                                 _mm512_mul_ps(x, s), x);                                          \
        float *dl = o + (size_t)(t0 + (T)) * ot->step;                                             \
        _mm256_storeu_ps(dl, _mm512_castps512_ps256(x));                                           \
        _mm256_storeu_ps(dl + ot->half,                                                            \
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));        \
    } while (0)

/* wino_tiles_avx2 with AVX-512F, four tiles at a time: the 16 filters are one vector, so the
 * four tiles' 16 accumulators, the filters' channels and the products fit the 32 registers, and
 * each position's filters are loaded once for the four (the AVX2 kernel loads them per tile,
 * and on AMD Zen 4 its loads, not its FMAs, set its pace). The tiles past the last multiple of
 * four go to the AVX2 kernel. */
__attribute__((target("avx512f,avx2,fma"))) static void
wino_tiles_avx512(const float *v, int c, int nt, const float *wt, float *o, const out_t *ot)
{
    const __m512 b = _mm512_loadu_ps(ot->b), s = _mm512_set1_ps(ot->slope);
    int t0 = 0;
    for (; t0 + 4 <= nt; t0 += 4) {
        __m512 y00 = _mm512_setzero_ps(), y01 = y00, y02 = y00, y03 = y00;
        __m512 y10 = y00, y11 = y00, y12 = y00, y13 = y00;
        __m512 y20 = y00, y21 = y00, y22 = y00, y23 = y00;
        __m512 y30 = y00, y31 = y00, y32 = y00, y33 = y00;
        W5_POS(0, 0);
        W5_POS(0, 1);
        W5_POS(0, 2);
        W5_POS(0, 3);
        W5_POS(1, 0);
        W5_POS(1, 1);
        W5_POS(1, 2);
        W5_POS(1, 3);
        W5_POS(2, 0);
        W5_POS(2, 1);
        W5_POS(2, 2);
        W5_POS(2, 3);
        W5_POS(3, 0);
        W5_POS(3, 1);
        W5_POS(3, 2);
        W5_POS(3, 3);
        W5_OUT(0);
        W5_OUT(1);
        W5_OUT(2);
        W5_OUT(3);
    }
    if (t0 < nt)
        wino_tiles_avx2(v, c, t0, nt, wt, o, ot);
}

#undef W5_OUT
#undef W5_POS
#undef W5_ACC
#undef W5_TILE
#undef WINO_POS
#undef WINO_A1
#undef WINO_A0
#undef WINO_ACC
#endif

void be_convpool_wino_tiles(const float *in, size_t gs, int w, int c, int n, const float *wt,
                            float *o, const out_t *ot, int isa, float *v)
{
    for (int k = 0; k < n; k += 8, in += 16, o += 8 * ot->step) {
        int nt = n - k < 8 ? n - k : 8;
#ifdef CP_X86
        if (isa >= BE_CONVPOOL_ISA_AVX2) {
            if (nt == 8) /* (the 8 tiles' patches end at their last column: in the input) */
                wino_input_avx2(in, gs, w, c, v);
            else
                wino_input(in, gs, w, c, nt, v);
            if (isa >= BE_CONVPOOL_ISA_AVX512)
                wino_tiles_avx512(v, c, nt, wt, o, ot);
            else
                wino_tiles_avx2(v, c, 0, nt, wt, o, ot);
            continue;
        }
#else
        (void)isa;
#endif
        wino_input(in, gs, w, c, nt, v);
        wino_tiles_c(v, c, nt, wt, o, ot);
    }
}
