/* limit.c: rate syntax, token buckets tick by tick, connection caps, and a table that stays
 * bounded under more keys than it holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "limit.h"

static void key_of(uint8_t k[GW_LIMIT_KEY], unsigned n)
{
    memset(k, 0, GW_LIMIT_KEY);
    memcpy(k + 12, &n, sizeof n);
}

static void test_parse(void **state)
{
    (void)state;
    gw_rate_t r;
    assert_int_equal(gw_rate_parse("50/s burst 100", &r), 0);
    assert_true(r.rate == 50 && r.burst == 100);
    assert_int_equal(gw_rate_parse("5/s", &r), 0);
    assert_true(r.rate == 5 && r.burst == 5);
    assert_int_equal(gw_rate_parse("30/m", &r), 0);
    assert_true(r.rate == 0.5 && r.burst == 1);
    assert_int_equal(gw_rate_parse("", &r), 0);
    assert_true(r.rate == 0);
    assert_int_equal(gw_rate_parse("off", &r), 0);
    assert_true(r.rate == 0);
    static const char *bad[] = {
        "50",  "50/h",   "-1/s", "50/s burst", "50/s burst 0", "50/s bust 10", "50/s burst 10 x",
        "x/s", "50/s 10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_rate_parse(bad[i], &r) != PROTO_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

static void test_bucket(void **state)
{
    (void)state;
    gw_limit_t *l;
    assert_int_equal(gw_limit_create(&l, 16, 42), 0);
    gw_rate_t r = {.rate = 10, .burst = 3};
    uint8_t a[GW_LIMIT_KEY], b[GW_LIMIT_KEY];
    key_of(a, 1);
    key_of(b, 2);
    uint64_t t = 1000;
    /* the burst at once, then one every 100 ms */
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_limit_take(l, a, &r, t), 0);
    assert_int_equal(gw_limit_take(l, a, &r, t), 100);
    assert_int_equal(gw_limit_take(l, a, &r, t + 40), 60);
    assert_int_equal(gw_limit_take(l, b, &r, t + 40), 0); /* another key is not affected */
    assert_int_equal(gw_limit_take(l, a, &r, t + 100), 0);
    assert_int_equal(gw_limit_take(l, a, &r, t + 100), 100);
    /* a long pause refills up to the burst, no more */
    t += 10000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_limit_take(l, a, &r, t), 0);
    assert_true(gw_limit_take(l, a, &r, t) > 0);
    /* no limit */
    gw_rate_t off = {0, 0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(gw_limit_take(l, a, &off, t), 0);
    gw_limit_destroy(l);
}

static void test_conns(void **state)
{
    (void)state;
    gw_limit_t *l;
    assert_int_equal(gw_limit_create(&l, 16, 7), 0);
    uint8_t a[GW_LIMIT_KEY];
    key_of(a, 9);
    assert_int_equal(gw_limit_conn_add(l, a, 2, 0), 0);
    assert_int_equal(gw_limit_conn_add(l, a, 2, 0), 0);
    assert_int_equal(gw_limit_conn_add(l, a, 2, 0), PROTO_ERATELIMIT);
    assert_int_equal(gw_limit_conns(l, a), 2);
    gw_limit_conn_del(l, a);
    assert_int_equal(gw_limit_conn_add(l, a, 2, 0), 0);
    /* a bucket on the same key keeps the count */
    gw_rate_t r = {.rate = 1, .burst = 1};
    assert_int_equal(gw_limit_take(l, a, &r, 5), 0);
    assert_int_equal(gw_limit_conns(l, a), 2);
    /* 0 = no cap, nothing counted */
    uint8_t b[GW_LIMIT_KEY];
    key_of(b, 10);
    assert_int_equal(gw_limit_conn_add(l, b, 0, 0), 0);
    assert_int_equal(gw_limit_conns(l, b), 0);
    gw_limit_destroy(l);
}

/* Far more keys than entries: the table does not grow, keys with connections are kept over
 * keys whose buckets are full (stale), and a recycled key starts with a full bucket. */
static void test_bounded(void **state)
{
    (void)state;
    gw_limit_t *l;
    assert_int_equal(gw_limit_create(&l, 4, 3), 0); /* 16 entries */
    uint8_t held[GW_LIMIT_KEY], k[GW_LIMIT_KEY];
    key_of(held, 123456);
    assert_int_equal(gw_limit_conn_add(l, held, 5, 0), 0);
    gw_rate_t r = {.rate = 1, .burst = 2};
    for (unsigned i = 0; i < 10000; i++) {
        key_of(k, i);
        assert_int_equal(gw_limit_take(l, k, &r, 1000 + i), 0);
    }
    assert_int_equal(gw_limit_conns(l, held), 1);
    gw_limit_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_conns),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
