/* be_pgemm against a plain double-precision product: shapes whose rows are and are not a
 * multiple of the 16-row panel and whose columns are and are not a multiple of the 6-column
 * panel (1 x 1 up to yolov3-tiny's Winograd products), row ranges as threads take them, C
 * written transposed with a column stride wider than m (the rows outside the range, the
 * columns past n and the gaps between columns untouched), with the AVX2 kernel and the portable
 * one. A is packed by be_pgemm_pack_a, B written through be_pgemm_b_at as fast.c's Winograd does.
 * The networks that use it are held to stock darknet by test_be_fast and test_be_dnnl. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pgemm.h"

static unsigned seed = 1;

static float rnd(void)
{
    seed = seed * 1103515245u + 12345u;
    return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* C rows [m0, m1) of a random m x k by k x n product, checked against double sums within
 * float rounding of a k-term sum; C's cells outside those rows and columns must keep their
 * sentinel. */
static void check(int m, int k, int n, int m0, int m1)
{
    int ldc = m + 3; /* C is written transposed: ldc floats between its columns */
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
    float *ap = malloc(sizeof(float) * be_pgemm_a_floats(m, k));
    float *bp = malloc(sizeof(float) * be_pgemm_b_floats(k, n));
    float *c = malloc(sizeof(float) * (size_t)(n + 6) * ldc); /* + a panel's columns of guard */
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(ap);
    assert_non_null(bp);
    assert_non_null(c);
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = rnd();
    for (size_t i = 0; i < be_pgemm_b_floats(k, n); i++)
        bp[i] = 0.0f; /* the padding columns, as fast.c zeroes them */
    for (int r = 0; r < k; r++)
        for (int j = 0; j < n; j++)
            bp[be_pgemm_b_at(k, r, j)] = b[(size_t)r * n + j] = rnd();
    be_pgemm_pack_a(ap, a, m, k);
    for (size_t i = 0; i < (size_t)(n + 6) * ldc; i++)
        c[i] = 12345.0f;
    be_pgemm(ap, bp, c, ldc, m0, m1, n, k);
    for (int i = 0; i < ldc; i++)
        for (int j = 0; j < n + 6; j++) {
            float got = c[(size_t)j * ldc + i];
            if (i < m0 || i >= m1 || j >= n) {
                if (got != 12345.0f)
                    fail_msg("%dx%dx%d rows %d-%d: C[%d][%d] written (%g)", m, k, n, m0, m1, i, j,
                             (double)got);
                continue;
            }
            double want = 0, mag = 0;
            for (int r = 0; r < k; r++) {
                want += (double)a[(size_t)i * k + r] * b[(size_t)r * n + j];
                mag += fabs((double)a[(size_t)i * k + r] * b[(size_t)r * n + j]);
            }
            if (fabs(got - want) > 1e-6 * mag + 1e-30)
                fail_msg("%dx%dx%d rows %d-%d: C[%d][%d] = %.9g, want %.9g", m, k, n, m0, m1, i, j,
                         (double)got, want);
        }
    free(a);
    free(b);
    free(ap);
    free(bp);
    free(c);
}

static void shapes(void)
{
    static const int dims[][3] = {{1, 1, 1},    {16, 1, 6},    {17, 3, 7},    {5, 64, 5},
                                  {33, 70, 13}, {128, 64, 49}, {48, 128, 169}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int m = dims[i][0], k = dims[i][1], n = dims[i][2];
        check(m, k, n, 0, m);
        if (m > 16) { /* two threads' shares: whole panels, the last one short */
            check(m, k, n, 0, 16);
            check(m, k, n, 16, m);
            if (m > 20)
                check(m, k, n, 16, 20); /* a range that ends inside a panel */
        }
    }
}

static void test_avx2(void **state)
{
    (void)state;
    be_pgemm_portable(0);
    shapes();
}

static void test_portable(void **state)
{
    (void)state;
    be_pgemm_portable(1);
    shapes();
    be_pgemm_portable(0);
}

/* The packed layouts' sizes and addresses. */
static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(be_pgemm_a_floats(17, 3), 32 * 3);
    assert_int_equal(be_pgemm_a_floats(16, 3), 16 * 3);
    assert_int_equal(be_pgemm_b_floats(5, 7), 5 * 12);
    assert_int_equal(be_pgemm_b_floats(5, 6), 5 * 6);
    assert_int_equal(be_pgemm_b_at(5, 0, 0), 0);
    assert_int_equal(be_pgemm_b_at(5, 1, 0), 6);
    assert_int_equal(be_pgemm_b_at(5, 0, 5), 5);
    assert_int_equal(be_pgemm_b_at(5, 0, 6), 30);
    assert_int_equal(be_pgemm_b_at(5, 4, 7), 30 + 24 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avx2),
        cmocka_unit_test(test_portable),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
