/* Packed sgemm for constant left operands (pgemm.h). One micro-kernel: a 16 x 6 block of C in
 * twelve 8-wide accumulators, A's 16 rows loaded as two vectors per k and B's 6 columns
 * broadcast: 12 FMAs for 8 loads, all from the two panels, which stay in L1/L2 while the
 * panel of A is reused across B's panels. Measured against OpenBLAS 0.3.21 (its Zen kernel,
 * 1 thread) on yolov3-tiny's Winograd products, 16 per layer, in turns (scratch pg.c): 1024 x
 * 512 x 49 12.8-17.7 ms against 17.0-22.6, 256 x 384 x 169 7.9-10.0 against 8.9-16.7,
 * 128 x 64 x 676 4.1-4.8 against 3.8-8.1. */
#include "pgemm.h"

#include <string.h>

#include "clones.h" /* fg_have_avx2 */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PG_X86 1
#endif

size_t be_pgemm_a_floats(int m, int k)
{
    return (size_t)((m + BE_PGEMM_MR - 1) / BE_PGEMM_MR) * BE_PGEMM_MR * (size_t)k;
}

size_t be_pgemm_b_floats(int k, int n)
{
    return (size_t)k * (size_t)((n + BE_PGEMM_NR - 1) / BE_PGEMM_NR) * BE_PGEMM_NR;
}

void be_pgemm_pack_a(float *ap, const float *a, int m, int k)
{
    int panels = (m + BE_PGEMM_MR - 1) / BE_PGEMM_MR;
    for (int p = 0; p < panels; p++)
        for (int kk = 0; kk < k; kk++) {
            float *d = ap + ((size_t)p * k + kk) * BE_PGEMM_MR;
            for (int r = 0; r < BE_PGEMM_MR; r++) {
                int row = p * BE_PGEMM_MR + r;
                d[r] = row < m ? a[(size_t)row * k + kk] : 0.0f;
            }
        }
}

/* The block's rows x cols corner into C^T (the rest is padding). t[j][r] = C[r][j]. */
static void store_block(float t[BE_PGEMM_NR][BE_PGEMM_MR], float *ct, int ldc, int rows, int cols)
{
    for (int j = 0; j < cols; j++)
        memcpy(ct + (size_t)j * ldc, t[j], sizeof(float) * (size_t)rows);
}

static void kernel_c(const float *a, const float *b, int k, float *c, int ldc, int rows, int cols)
{
    float t[BE_PGEMM_NR][BE_PGEMM_MR] = {{0}};
    for (int kk = 0; kk < k; kk++)
        for (int j = 0; j < BE_PGEMM_NR; j++) {
            float x = b[kk * BE_PGEMM_NR + j];
            for (int r = 0; r < BE_PGEMM_MR; r++)
                t[j][r] += a[kk * BE_PGEMM_MR + r] * x;
        }
    store_block(t, c, ldc, rows, cols);
}

#ifdef PG_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(const float *a, const float *b, int k,
                                                            float *c, int ldc, int rows, int cols)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int kk = 0; kk < k; kk++, a += BE_PGEMM_MR, b += BE_PGEMM_NR) {
        __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8), x;
        x = _mm256_broadcast_ss(b);
        c00 = _mm256_fmadd_ps(a0, x, c00);
        c01 = _mm256_fmadd_ps(a1, x, c01);
        x = _mm256_broadcast_ss(b + 1);
        c10 = _mm256_fmadd_ps(a0, x, c10);
        c11 = _mm256_fmadd_ps(a1, x, c11);
        x = _mm256_broadcast_ss(b + 2);
        c20 = _mm256_fmadd_ps(a0, x, c20);
        c21 = _mm256_fmadd_ps(a1, x, c21);
        x = _mm256_broadcast_ss(b + 3);
        c30 = _mm256_fmadd_ps(a0, x, c30);
        c31 = _mm256_fmadd_ps(a1, x, c31);
        x = _mm256_broadcast_ss(b + 4);
        c40 = _mm256_fmadd_ps(a0, x, c40);
        c41 = _mm256_fmadd_ps(a1, x, c41);
        x = _mm256_broadcast_ss(b + 5);
        c50 = _mm256_fmadd_ps(a0, x, c50);
        c51 = _mm256_fmadd_ps(a1, x, c51);
    }
    /* A whole block goes straight to C^T: a column of 16 rows is two vectors. */
    float t[BE_PGEMM_NR][BE_PGEMM_MR], *o = c;
    size_t ld = BE_PGEMM_MR;
    if (rows == BE_PGEMM_MR && cols == BE_PGEMM_NR)
        ld = (size_t)ldc;
    else
        o = t[0];
    _mm256_storeu_ps(o, c00);
    _mm256_storeu_ps(o + 8, c01);
    _mm256_storeu_ps(o + ld, c10);
    _mm256_storeu_ps(o + ld + 8, c11);
    _mm256_storeu_ps(o + 2 * ld, c20);
    _mm256_storeu_ps(o + 2 * ld + 8, c21);
    _mm256_storeu_ps(o + 3 * ld, c30);
    _mm256_storeu_ps(o + 3 * ld + 8, c31);
    _mm256_storeu_ps(o + 4 * ld, c40);
    _mm256_storeu_ps(o + 4 * ld + 8, c41);
    _mm256_storeu_ps(o + 5 * ld, c50);
    _mm256_storeu_ps(o + 5 * ld + 8, c51);
    if (o == t[0])
        store_block(t, c, ldc, rows, cols);
}

#endif

static int portable; /* be_pgemm_portable: set by tests before the calls they make */

int be_pgemm_portable(int on)
{
    __atomic_store_n(&portable, on, __ATOMIC_RELAXED);
#ifdef PG_X86
    return fg_have_avx2();
#else
    return 0;
#endif
}

void be_pgemm(const float *ap, const float *bp, float *c, int ldc, int m0, int m1, int n, int k)
{
    void (*kern)(const float *, const float *, int, float *, int, int, int) = kernel_c;
#ifdef PG_X86
    if (!__atomic_load_n(&portable, __ATOMIC_RELAXED) && fg_have_avx2())
        kern = kernel_avx2;
#endif
    int bpanels = (n + BE_PGEMM_NR - 1) / BE_PGEMM_NR;
    /* A's panel (16 x k) is reused across all of B's panels while it is in cache. */
    for (int i = m0; i < m1; i += BE_PGEMM_MR) {
        const float *a = ap + (size_t)i * k;
        int rows = m1 - i < BE_PGEMM_MR ? m1 - i : BE_PGEMM_MR;
        for (int q = 0; q < bpanels; q++) {
            int j = q * BE_PGEMM_NR, cols = n - j < BE_PGEMM_NR ? n - j : BE_PGEMM_NR;
            kern(a, bp + (size_t)q * k * BE_PGEMM_NR, k, c + (size_t)j * ldc + i, ldc, rows, cols);
        }
    }
}
