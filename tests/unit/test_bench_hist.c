/* The latency histogram against known distributions: every percentile within 1% of the
 * exact value from the sorted samples. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* xorshift64*: a fixed-seed generator, so the test is the same on every run. */
static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double uniform01(void)
{
    return (double)(rng() >> 11) / (double)(1ull << 53);
}

static void check_against_exact(uint64_t *v, size_t n)
{
    bench_hist_t *h = bench_hist_create();
    for (size_t i = 0; i < n; i++)
        bench_hist_record(h, v[i]);
    qsort(v, n, sizeof *v, cmp_u64);
    assert_int_equal(bench_hist_count(h), n);
    const double ps[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        size_t rank = (size_t)ceil(ps[i] / 100.0 * (double)n);
        if (rank < 1)
            rank = 1;
        double exact = (double)v[rank - 1], got = bench_hist_percentile(h, ps[i]);
        double err = exact > 0 ? fabs(got - exact) / exact : fabs(got);
        if (err > 0.01)
            fail_msg("p%.1f: exact %.0f got %.1f (%.3f%%)", ps[i], exact, got, err * 100);
    }
    assert_true(bench_hist_max(h) == v[n - 1]);
    bench_hist_destroy(h);
}

static void test_uniform(void **state)
{
    (void)state;
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = 1000 + (uint64_t)(uniform01() * 999000); /* 1 ms .. 1 s */
    check_against_exact(v, n);
    free(v);
}

static void test_exponential(void **state)
{
    (void)state;
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = 1 + (uint64_t)(-log(1 - uniform01()) * 50000); /* mean 50 ms */
    check_against_exact(v, n);
    free(v);
}

static void test_constant_and_extremes(void **state)
{
    (void)state;
    uint64_t v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = 123456;
    check_against_exact(v, 1000);
    bench_hist_t *h = bench_hist_create();
    assert_true(bench_hist_percentile(h, 50) == 0); /* empty */
    /* The ends of the range the bench needs: 1 us exactly, 1 h within 1%. */
    bench_hist_record(h, 1);
    assert_true(bench_hist_percentile(h, 50) == 1);
    bench_hist_reset(h);
    bench_hist_record(h, 3600000000ull);
    assert_true(fabs(bench_hist_percentile(h, 50) - 3.6e9) / 3.6e9 < 0.01);
    bench_hist_reset(h);
    bench_hist_record(h, 0);
    bench_hist_record(h, 1);
    bench_hist_record(h, UINT64_MAX); /* clamped, never out of range */
    assert_int_equal(bench_hist_count(h), 3);
    assert_true(bench_hist_percentile(h, 100) >= (double)(BENCH_HIST_MAX_US / 2));
    bench_hist_destroy(h);
}

static void test_merge(void **state)
{
    (void)state;
    bench_hist_t *a = bench_hist_create(), *b = bench_hist_create(), *all = bench_hist_create();
    for (uint64_t i = 1; i <= 10000; i++) {
        bench_hist_record(i % 2 ? a : b, i * 10);
        bench_hist_record(all, i * 10);
    }
    bench_hist_merge(a, b);
    assert_int_equal(bench_hist_count(a), 10000);
    for (double p = 1; p <= 100; p += 7)
        assert_true(bench_hist_percentile(a, p) == bench_hist_percentile(all, p));
    assert_true(fabs(bench_hist_mean(a) - 50005.0) < 1);
    bench_hist_destroy(a);
    bench_hist_destroy(b);
    bench_hist_destroy(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_constant_and_extremes),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
