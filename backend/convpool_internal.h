/* be_convpool's insides shared by convpool.c (the passes) and convpool_wino.c (their Winograd
 * tiles). Not an API: only those two files include it. */
#ifndef BE_CONVPOOL_INTERNAL_H
#define BE_CONVPOOL_INTERNAL_H

#include <stddef.h>

#include "convpool.h" /* BE_CONVPOOL_ISA_* */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CP_X86 1
#endif

#define NB 16 /* filters per kernel call */

/* Where a kernel's pooled cells go: `o` is an output cell (filters 0-7 there, 8-15 `half`
 * floats on; pooled columns `step` apart), finished with bias b and the activation
 * (x > 0 ? x : x * slope: darknet's leaky .1, relu 0 (its x * (x > 0) is -0 too), linear 1). */
typedef struct {
    const float *b;
    float slope;
    size_t half, step;
} out_t;

#ifdef CP_X86
/* x + b, then the activation (see out_t). */
__attribute__((target("avx2,fma"))) static inline __m256 act_avx2(__m256 x, __m256 b, __m256 s)
{
    x = _mm256_add_ps(x, b);
    return _mm256_blendv_ps(_mm256_mul_ps(x, s), x,
                            _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}
#endif

/* A 3x3 filter's Winograd transform G g G' (g row by row; u: 4 x 4, row by row). */
void be_convpool_wino_weights(const float g[9], float u[16]);

/* n Winograd tiles 2 columns apart, 8 at a time, `in` at channel 0's 4x4 patch of the first
 * (`gs` floats between channels, `w` between rows), with the transformed filters wt
 * ([16][c][NB]): each tile's pooled cell, from o on (see out_t). isa: the most the kernels may use
 * (BE_CONVPOOL_ISA_*; the caller checked the CPU has it). v: scratch of 16 x c x 8 floats. */
void be_convpool_wino_tiles(const float *in, size_t gs, int w, int c, int n, const float *wt,
                            float *o, const out_t *ot, int isa, float *v);

#endif
