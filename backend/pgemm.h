/* pgemm: C = A B where A is constant (a layer's weights), packed once at load, and B is
 * written by its producer straight into the packed layout (fast.c's Winograd input
 * transform), so a call packs nothing. OpenBLAS packs both operands on every call: for
 * yolov3-tiny's Winograd products (A up to 1024 x 512, B 512 x 49) that copy was 14% of the
 * backend's samples at 1 thread (perf, sgemm_oncopy), next to 27% in its kernel.
 *
 * Layout: A in panels of BE_PGEMM_MR rows, each [k][MR] (rows past m are zeros); B in panels
 * of BE_PGEMM_NR columns, each [k][NR] (be_pgemm_b_at; columns past n only reach C's columns
 * past n, which are not stored: zero them anyway, so nothing reads uninitialised memory). C is
 * written transposed (column after column, each with its own stride), so that a whole 16 x 6
 * block leaves the kernel as 12 vector stores instead of 96 scattered ones. Every element of C
 * is one FMA chain over k in order, so the result does not depend on how rows are shared
 * between threads. Pure functions on caller-owned buffers; any thread. */
#ifndef BE_PGEMM_H
#define BE_PGEMM_H

#include <stddef.h>

#define BE_PGEMM_MR 16
#define BE_PGEMM_NR 6

/* Floats of a packed m x k A. */
size_t be_pgemm_a_floats(int m, int k);

/* Packs the row-major m x k matrix a (row stride k) into ap (be_pgemm_a_floats(m, k)). */
void be_pgemm_pack_a(float *ap, const float *a, int m, int k);

/* Floats of a packed k x n B. */
size_t be_pgemm_b_floats(int k, int n);

/* Where B's (row, col) lives in a packed k x n B. */
static inline size_t be_pgemm_b_at(int k, int row, int col)
{
    return ((size_t)(col / BE_PGEMM_NR) * (size_t)k + (size_t)row) * BE_PGEMM_NR +
           (size_t)(col % BE_PGEMM_NR);
}

/* Rows [m0, m1) of C = A B (A m x k packed, B k x n packed), transposed into ct: C[i][j] at
 * ct[j * ldc + i] for m0 <= i < m1, 0 <= j < n. m0 must be a multiple of BE_PGEMM_MR. Uses AVX2 +
 * FMA where the CPU has them (checked once), else portable C with the same results up to
 * rounding. */
void be_pgemm(const float *ap, const float *bp, float *ct, int ldc, int m0, int m1, int n, int k);

/* 1: every later be_pgemm call in the process uses the portable kernel (tests: both kernels
 * must give C). 0: back to the CPU's best. Returns 1 when the AVX2 kernel exists here. */
int be_pgemm_portable(int on);

#endif
