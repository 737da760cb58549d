/* The Prometheus registry: exact rendering of counters, gauges and histograms, label
 * escaping, the series bound, and (when promtool is installed) promtool's own check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

static void test_render(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double b[] = {0.1, 1};
    int c = gw_metrics_declare(m, GW_COUNTER, "fg_req_total", "Requests.", "route,code", NULL, 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "fg_depth", "Depth.", NULL, NULL, 0);
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "fg_lat_seconds", "Latency.", NULL, b, 2);
    assert_true(c >= 0 && g >= 0 && h >= 0);
    gw_metrics_add(m, c, "detect", "200", 1);
    gw_metrics_add(m, c, "detect", "200", 2);
    gw_metrics_add(m, c, "detect", "503", 1);
    gw_metrics_set(m, g, NULL, NULL, 7);
    gw_metrics_observe(m, h, NULL, NULL, 0.05);
    gw_metrics_observe(m, h, NULL, NULL, 0.5);
    gw_metrics_observe(m, h, NULL, NULL, 5);
    size_t len;
    char *text = gw_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "# HELP fg_req_total Requests.\n# TYPE fg_req_total counter\n"));
    assert_non_null(strstr(text, "fg_req_total{route=\"detect\",code=\"200\"} 3\n"));
    assert_non_null(strstr(text, "fg_req_total{route=\"detect\",code=\"503\"} 1\n"));
    assert_non_null(strstr(text, "fg_depth 7\n"));
    assert_non_null(strstr(text, "fg_lat_seconds_bucket{le=\"0.10000000000000001\"} 1\n"));
    assert_non_null(strstr(text, "fg_lat_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "fg_lat_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "fg_lat_seconds_sum 5.5499999999999998\n"));
    assert_non_null(strstr(text, "fg_lat_seconds_count 3\n"));
    free(text);

    gw_metrics_clear(m, g);
    text = gw_metrics_render(m, &len);
    assert_null(strstr(text, "fg_depth 7"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_escaping_and_bounds(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "fg_x", "X.", "name", NULL, 0);
    gw_metrics_set(m, g, "a\"b\\c\nd", NULL, 1);
    for (int i = 0; i < GW_METRICS_MAX_SERIES + 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        gw_metrics_set(m, g, name, NULL, i);
    }
    size_t len;
    char *text = gw_metrics_render(m, &len);
    assert_non_null(strstr(text, "fg_x{name=\"a\\\"b\\\\c\\nd\"} 1\n"));
    assert_non_null(strstr(text, "framegate_metrics_dropped_series_total 11\n"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_promtool(void **state)
{
    (void)state;
    if (access("/usr/bin/promtool", X_OK) != 0) {
        print_message("promtool not installed: skipped\n");
        skip();
    }
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double b[] = {0.005, 0.01, 0.1, 1, 10};
    int c = gw_metrics_declare(m, GW_COUNTER, "framegate_requests_total", "Requests by code.",
                               "route,code", NULL, 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "framegate_backends", "Backends by state.", "state",
                               NULL, 0);
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "framegate_request_duration_seconds",
                               "Duration.", "route", b, 5);
    gw_metrics_add(m, c, "detect", "200", 10);
    gw_metrics_set(m, g, "ready", NULL, 2);
    gw_metrics_set(m, g, "starting", NULL, 0);
    for (int i = 0; i < 100; i++)
        gw_metrics_observe(m, h, "detect", NULL, i * 0.01);
    size_t len;
    char *text = gw_metrics_render(m, &len);
    char path[] = "/tmp/fgmetricsXXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rv = system(cmd);
    unlink(path);
    free(text);
    gw_metrics_destroy(m);
    assert_int_equal(rv, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_escaping_and_bounds),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
