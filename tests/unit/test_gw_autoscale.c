/* The scaling policy, tick by tick, with no processes: bursts scale up at the next tick,
 * short lulls do not reap, sustained idleness returns to min, clamps hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "autoscale.h"

static gw_config_t base_cfg(void)
{
    gw_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.min_backends = 1;
    cfg.max_backends = 4;
    cfg.target_inflight_per_backend = 1;
    cfg.scale_interval_ms = 1000;
    cfg.stable_window_ms = 30000;
    cfg.panic_window_ms = 6000;
    return cfg;
}

static void test_burst_scales_up_next_tick(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    gw_autoscale_t *a;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    assert_int_equal(gw_autoscale_desired(a), 1);

    gw_scale_decision_t d = gw_autoscale_tick(a, 1000, 0, 0, 1);
    assert_int_equal(d.desired, 1);
    /* 40 clients arrive: load 40, queue 39 -> max at once, panicking on the queue. */
    d = gw_autoscale_tick(a, 2000, 40, 39, 1);
    assert_int_equal(d.desired, 4);
    assert_true(d.panicking);
    assert_string_equal(d.reason, "queue");
    gw_autoscale_destroy(a);
}

static void test_target_divides_load(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    cfg.max_backends = 100;
    cfg.target_inflight_per_backend = 4;
    gw_autoscale_t *a;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    /* ceil(10 / 4) = 3 */
    assert_int_equal(gw_autoscale_tick(a, 1000, 10, 0, 1).desired, 3);
    /* exactly 12 / 4 = 3, no float rounding up to 4 */
    assert_int_equal(gw_autoscale_tick(a, 2000, 12, 0, 3).desired, 3);
    gw_autoscale_destroy(a);
}

static void test_short_lull_does_not_reap(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    gw_autoscale_t *a;
    uint64_t t = 0;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    for (int i = 0; i < 10; i++)
        gw_autoscale_tick(a, t += 1000, 4, 0, 4);
    /* 10 s of nothing: inside the 30 s stable window, so still 4. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(gw_autoscale_tick(a, t += 1000, 0, 0, 4).desired, 4);
    /* After the whole window is quiet: back to min. */
    int desired = 4;
    uint64_t quiet_since = t - 10000;
    while (desired > 1 && t < quiet_since + 60000)
        desired = gw_autoscale_tick(a, t += 1000, 0, 0, desired).desired;
    assert_int_equal(desired, 1);
    assert_true(t - quiet_since <= 31000);
    assert_true(t - quiet_since >= 30000);
    gw_autoscale_destroy(a);
}

/* A gateway restarted next to an earlier one's backends adopts them, idle: the pool has no
 * history yet, so it holds them for one stable window, then returns to min as usual. */
static void test_fresh_pool_holds_for_a_stable_window(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    gw_autoscale_t *a;
    uint64_t t = 5000;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    gw_scale_decision_t d = gw_autoscale_tick(a, t, 0, 0, 3);
    assert_int_equal(d.desired, 3);
    assert_string_equal(d.reason, "steady");
    while (t < 5000 + 29000)
        assert_int_equal(gw_autoscale_tick(a, t += 1000, 0, 0, 3).desired, 3);
    t += 1000; /* the whole window seen, all of it idle */
    d = gw_autoscale_tick(a, t, 0, 0, 3);
    assert_int_equal(d.desired, 1);
    assert_string_equal(d.reason, "idle");
    /* Above max (bounds lowered since): clamped even while holding. */
    gw_autoscale_t *b;
    assert_int_equal(gw_autoscale_create(&b, &cfg, NULL), 0);
    assert_int_equal(gw_autoscale_tick(b, 1000, 0, 0, 6).desired, 4);
    gw_autoscale_destroy(b);
    gw_autoscale_destroy(a);
}

static void test_scale_to_zero(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    cfg.min_backends = 0;
    cfg.stable_window_ms = 5000;
    gw_autoscale_t *a;
    uint64_t t = 0;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    assert_int_equal(gw_autoscale_desired(a), 0);
    /* Any load at all wants one backend, even below the target. */
    cfg.target_inflight_per_backend = 10;
    assert_int_equal(gw_autoscale_tick(a, t += 1000, 1, 1, 0).desired, 1);
    int d = 1;
    for (int i = 0; i < 12; i++)
        d = gw_autoscale_tick(a, t += 1000, 0, 0, d).desired;
    assert_int_equal(d, 0);
    gw_autoscale_destroy(a);
}

static void test_clamps_and_panic_holds(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    cfg.min_backends = 2;
    cfg.max_backends = 3;
    cfg.stable_window_ms = 3000;
    cfg.panic_window_ms = 3000;
    gw_autoscale_t *a;
    uint64_t t = 0;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    assert_int_equal(gw_autoscale_tick(a, t += 1000, 0, 0, 2).desired, 2);
    assert_int_equal(gw_autoscale_tick(a, t += 1000, 1000, 900, 2).desired, 3);
    /* While the queue is non-empty the policy panics and never shrinks. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(gw_autoscale_tick(a, t += 1000, 0, 1, 3).desired, 3);
    gw_scale_decision_t d;
    for (int i = 0; i < 10; i++)
        d = gw_autoscale_tick(a, t += 1000, 0, 0, 3);
    assert_int_equal(d.desired, 2);
    assert_false(d.panicking);
    gw_autoscale_destroy(a);
}

static void test_ring_is_bounded(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    cfg.scale_interval_ms = 1000;
    gw_autoscale_t *a;
    uint64_t t = 0;
    assert_int_equal(gw_autoscale_create(&a, &cfg, NULL), 0);
    /* Ticks far faster than configured must not overflow anything. */
    for (int i = 0; i < 100000; i++)
        gw_autoscale_tick(a, t += 1, (double)(i % 7), 0, 1);
    assert_true(gw_autoscale_desired(a) >= 1 && gw_autoscale_desired(a) <= 4);
    gw_autoscale_destroy(a);
}

/* A model's pool uses the model's bounds and target, not the top-level ones. */
static void test_model_bounds(void **state)
{
    (void)state;
    gw_config_t cfg = base_cfg();
    gw_model_t model;
    memset(&model, 0, sizeof model);
    model.min_backends = 0;
    model.max_backends = 2;
    model.target_inflight_per_backend = 2;
    gw_autoscale_t *a;
    assert_int_equal(gw_autoscale_create(&a, &cfg, &model), 0);
    assert_int_equal(gw_autoscale_desired(a), 0);
    assert_int_equal(gw_autoscale_tick(a, 1000, 3, 0, 0).desired, 2); /* ceil(3 / 2) */
    assert_int_equal(gw_autoscale_tick(a, 2000, 40, 30, 2).desired, 2); /* clamped to 2 */
    gw_autoscale_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_scales_up_next_tick),
        cmocka_unit_test(test_target_divides_load),
        cmocka_unit_test(test_short_lull_does_not_reap),
        cmocka_unit_test(test_fresh_pool_holds_for_a_stable_window),
        cmocka_unit_test(test_scale_to_zero),
        cmocka_unit_test(test_clamps_and_panic_holds),
        cmocka_unit_test(test_ring_is_bounded),
        cmocka_unit_test(test_model_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
