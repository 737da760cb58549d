/* The Prometheus registry: exact rendering of counters, gauges and histograms, label and
 * HELP escaping, value formatting, the series bound, declaration checks, and (when promtool
 * is installed) promtool's own check of a realistic registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "metrics.h"

#define DROPPED_0                                                                                  \
    "# HELP framegate_metrics_dropped_series_total Label sets rejected at the per-family "         \
    "series limit.\n"                                                                              \
    "# TYPE framegate_metrics_dropped_series_total counter\n"                                      \
    "framegate_metrics_dropped_series_total 0\n"

static char *render(gw_metrics_t *m)
{
    size_t len;
    char *text = gw_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_render_exact(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double b[] = {0.1, 1, 2.5};
    int c = gw_metrics_declare(m, GW_COUNTER, "fg_req_total", "Requests.", "route,code", NULL, 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "fg_depth", "Depth.", NULL, NULL, 0);
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "fg_lat_seconds", "Latency.", "route", b, 3);
    int e = gw_metrics_declare(m, GW_GAUGE, "fg_empty", "Never set.", "x", NULL, 0);
    assert_int_equal(c, 0);
    assert_int_equal(g, 1);
    assert_int_equal(h, 2);
    assert_int_equal(e, 3);
    assert_int_equal(gw_metrics_add(m, c, "detect", "200", 1), 0);
    assert_int_equal(gw_metrics_add(m, c, "detect", "200", 2), 0);
    assert_int_equal(gw_metrics_add(m, c, "detect", "503", 1), 0);
    assert_int_equal(gw_metrics_set(m, g, NULL, NULL, 7), 0);
    assert_int_equal(gw_metrics_add(m, g, NULL, NULL, -2.5), 0); /* gauges go down */
    assert_int_equal(gw_metrics_observe(m, h, "detect", NULL, 0.05), 0);
    assert_int_equal(gw_metrics_observe(m, h, "detect", NULL, 0.1), 0); /* le is inclusive */
    assert_int_equal(gw_metrics_observe(m, h, "detect", NULL, 0.5), 0);
    assert_int_equal(gw_metrics_observe(m, h, "detect", NULL, 5), 0);
    assert_int_equal(gw_metrics_observe(m, h, "healthz", NULL, 0.001), 0);
    char *text = render(m);
    const char *want = "# HELP fg_req_total Requests.\n"
                       "# TYPE fg_req_total counter\n"
                       "fg_req_total{route=\"detect\",code=\"200\"} 3\n"
                       "fg_req_total{route=\"detect\",code=\"503\"} 1\n"
                       "# HELP fg_depth Depth.\n"
                       "# TYPE fg_depth gauge\n"
                       "fg_depth 4.5\n"
                       "# HELP fg_lat_seconds Latency.\n"
                       "# TYPE fg_lat_seconds histogram\n"
                       "fg_lat_seconds_bucket{route=\"detect\",le=\"0.1\"} 2\n"
                       "fg_lat_seconds_bucket{route=\"detect\",le=\"1\"} 3\n"
                       "fg_lat_seconds_bucket{route=\"detect\",le=\"2.5\"} 3\n"
                       "fg_lat_seconds_bucket{route=\"detect\",le=\"+Inf\"} 4\n"
                       "fg_lat_seconds_sum{route=\"detect\"} 5.65\n"
                       "fg_lat_seconds_count{route=\"detect\"} 4\n"
                       "fg_lat_seconds_bucket{route=\"healthz\",le=\"0.1\"} 1\n"
                       "fg_lat_seconds_bucket{route=\"healthz\",le=\"1\"} 1\n"
                       "fg_lat_seconds_bucket{route=\"healthz\",le=\"2.5\"} 1\n"
                       "fg_lat_seconds_bucket{route=\"healthz\",le=\"+Inf\"} 1\n"
                       "fg_lat_seconds_sum{route=\"healthz\"} 0.001\n"
                       "fg_lat_seconds_count{route=\"healthz\"} 1\n"
                       "# HELP fg_empty Never set.\n"
                       "# TYPE fg_empty gauge\n" DROPPED_0;
    assert_string_equal(text, want);
    free(text);

    /* clear drops a gauge family's series; set brings back only what is set again. */
    assert_int_equal(gw_metrics_clear(m, g), 0);
    text = render(m);
    assert_non_null(strstr(text, "# TYPE fg_depth gauge\n# HELP fg_lat_seconds"));
    free(text);
    assert_int_equal(gw_metrics_set(m, g, NULL, NULL, 1), 0);
    text = render(m);
    assert_non_null(strstr(text, "# TYPE fg_depth gauge\nfg_depth 1\n"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_unlabelled_histogram_and_values(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double b[] = {1e-3, 1e9};
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "h", "H.", NULL, b, 2);
    int g = gw_metrics_declare(m, GW_GAUGE, "g", "G.", "k", NULL, 0);
    int c = gw_metrics_declare(m, GW_COUNTER, "c_total", "C.", NULL, NULL, 0);
    assert_int_equal(gw_metrics_observe(m, h, NULL, NULL, 2), 0);
    assert_int_equal(gw_metrics_set(m, g, "nan", NULL, NAN), 0);
    assert_int_equal(gw_metrics_set(m, g, "pinf", NULL, INFINITY), 0);
    assert_int_equal(gw_metrics_set(m, g, "ninf", NULL, -INFINITY), 0);
    assert_int_equal(gw_metrics_set(m, g, "big", NULL, 12345678901234.0), 0);
    assert_int_equal(gw_metrics_set(m, g, "third", NULL, 1.0 / 3), 0);
    assert_int_equal(gw_metrics_add(m, c, NULL, NULL, 0), 0); /* a counter at 0 is shown */
    char *text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"0.001\"} 0\nh_bucket{le=\"1e+09\"} 1\n"
                                 "h_bucket{le=\"+Inf\"} 1\nh_sum 2\nh_count 1\n"));
    assert_non_null(strstr(text, "g{k=\"nan\"} NaN\n"));
    assert_non_null(strstr(text, "g{k=\"pinf\"} +Inf\n"));
    assert_non_null(strstr(text, "g{k=\"ninf\"} -Inf\n"));
    assert_non_null(strstr(text, "g{k=\"big\"} 12345678901234\n"));
    assert_non_null(strstr(text, "g{k=\"third\"} 0.3333333333333333\n"));
    assert_non_null(strstr(text, "c_total 0\n"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_escaping(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "fg_x", "Path C:\\tmp\nsecond \"line\".", "name,b",
                               NULL, 0);
    assert_int_equal(gw_metrics_set(m, g, "a\"b\\c\nd", "", 1), 0);
    /* The hash separates the two values: ("ab","") and ("a","b") are distinct series. */
    assert_int_equal(gw_metrics_set(m, g, "ab", "", 2), 0);
    assert_int_equal(gw_metrics_set(m, g, "a", "b", 3), 0);
    char *text = render(m);
    /* HELP escapes backslash and newline only; label values also escape the quote. */
    assert_non_null(strstr(text, "# HELP fg_x Path C:\\\\tmp\\nsecond \"line\".\n"));
    assert_non_null(strstr(text, "fg_x{name=\"a\\\"b\\\\c\\nd\",b=\"\"} 1\n"));
    assert_non_null(strstr(text, "fg_x{name=\"ab\",b=\"\"} 2\n"));
    assert_non_null(strstr(text, "fg_x{name=\"a\",b=\"b\"} 3\n"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_bounds(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "fg_x", "X.", "name", NULL, 0);
    for (int i = 0; i < GW_METRICS_MAX_SERIES + 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(gw_metrics_set(m, g, name, NULL, i),
                         i < GW_METRICS_MAX_SERIES ? 0 : PROTO_ETOOBIG);
    }
    /* Existing series still take values when the family is full. */
    assert_int_equal(gw_metrics_set(m, g, "n0", NULL, 42), 0);
    char long_value[GW_METRICS_LABEL_MAX + 2];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    int g2 = gw_metrics_declare(m, GW_GAUGE, "fg_y", "Y.", "name", NULL, 0);
    assert_int_equal(gw_metrics_set(m, g2, long_value, NULL, 1), PROTO_ETOOBIG);
    long_value[GW_METRICS_LABEL_MAX] = '\0'; /* exactly the limit is fine */
    assert_int_equal(gw_metrics_set(m, g2, long_value, NULL, 1), 0);
    char *text = render(m);
    assert_non_null(strstr(text, "fg_x{name=\"n0\"} 42\n"));
    assert_non_null(strstr(text, "fg_x{name=\"n127\"} 127\n"));
    assert_null(strstr(text, "n128"));
    assert_non_null(strstr(text, "framegate_metrics_dropped_series_total 10\n"));
    free(text);
    /* Clearing frees the room again. */
    assert_int_equal(gw_metrics_clear(m, g), 0);
    assert_int_equal(gw_metrics_set(m, g, "n200", NULL, 1), 0);
    gw_metrics_destroy(m);

    /* The family limit. */
    assert_int_equal(gw_metrics_create(&m), 0);
    for (int i = 0; i < GW_METRICS_MAX_FAMILIES + 1; i++) {
        static char names[GW_METRICS_MAX_FAMILIES + 1][16];
        snprintf(names[i], sizeof names[i], "f%d", i);
        assert_int_equal(gw_metrics_declare(m, GW_GAUGE, names[i], "F.", NULL, NULL, 0),
                         i < GW_METRICS_MAX_FAMILIES ? i : PROTO_ETOOBIG);
    }
    gw_metrics_destroy(m);
}

static void test_declare_and_type_checks(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double ok[] = {1, 2}, unsorted[] = {2, 1}, dup[] = {1, 1}, inf[] = {1, INFINITY};
    const double many[GW_METRICS_MAX_BUCKETS + 1] = {0};
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "9bad", "X.", NULL, NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "bad-name", "X.", NULL, NULL, 0),
                     PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "", "X.", NULL, NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "a-b", NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "__a", NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "a,a", NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "a,", NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_HISTOGRAM, "x", "X.", "le", ok, 2), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_HISTOGRAM, "x", "X.", NULL, unsorted, 2),
                     PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_HISTOGRAM, "x", "X.", NULL, dup, 2), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_HISTOGRAM, "x", "X.", NULL, inf, 2), PROTO_EINVAL);
    assert_int_equal(
        gw_metrics_declare(m, GW_HISTOGRAM, "x", "X.", NULL, many, GW_METRICS_MAX_BUCKETS + 1),
        PROTO_ETOOBIG);
    assert_int_equal(gw_metrics_declare(m, GW_COUNTER, "framegate_metrics_dropped_series_total",
                                        "X.", NULL, NULL, 0),
                     PROTO_EINVAL);
    int c = gw_metrics_declare(m, GW_COUNTER, "ns:c_total", "C.", "le", NULL, 0);
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "h", "H.", NULL, ok, 2);
    int g = gw_metrics_declare(m, GW_GAUGE, "g", "G.", NULL, NULL, 0);
    assert_int_equal(c, 0);
    assert_int_equal(h, 1);
    assert_int_equal(g, 2);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "g", "Again.", NULL, NULL, 0), PROTO_EINVAL);
    /* Wrong operations for the type, unknown ids, counters going down. */
    assert_int_equal(gw_metrics_add(m, c, "x", NULL, -1), PROTO_EINVAL);
    assert_int_equal(gw_metrics_add(m, c, "x", NULL, NAN), PROTO_EINVAL);
    assert_int_equal(gw_metrics_observe(m, c, "x", NULL, 1), PROTO_EINVAL);
    assert_int_equal(gw_metrics_set(m, h, NULL, NULL, 1), PROTO_EINVAL);
    assert_int_equal(gw_metrics_add(m, h, NULL, NULL, 1), PROTO_EINVAL);
    assert_int_equal(gw_metrics_clear(m, c), PROTO_EINVAL);
    assert_int_equal(gw_metrics_clear(m, h), PROTO_EINVAL);
    assert_int_equal(gw_metrics_set(m, 99, NULL, NULL, 1), PROTO_EINVAL);
    assert_int_equal(gw_metrics_set(m, -1, NULL, NULL, 1), PROTO_EINVAL);
    /* A counter may mirror a count kept elsewhere. */
    assert_int_equal(gw_metrics_set(m, c, "x", NULL, 5), 0);
    char *text = render(m);
    assert_non_null(strstr(text, "ns:c_total{le=\"x\"} 5\n"));
    assert_null(strstr(text, "Again."));
    free(text);
    gw_metrics_destroy(m);
}

/* Three labels (model, backend, state): rendered in declaration order; a fourth is refused. */
static void test_three_labels(void **state)
{
    (void)state;
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "a,b,c,d", NULL, 0), PROTO_EINVAL);
    assert_int_equal(gw_metrics_declare(m, GW_GAUGE, "x", "X.", "a,b,a", NULL, 0), PROTO_EINVAL);
    int g = gw_metrics_declare(m, GW_GAUGE, "g", "G.", "model,backend,state", NULL, 0);
    const double b[] = {1};
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "h", "H.", "model,x,y", b, 1);
    assert_true(g >= 0 && h >= 0);
    assert_int_equal(gw_metrics_set3(m, g, "face", "face-instance1", "ready", 2), 0);
    assert_int_equal(gw_metrics_set3(m, g, "face", "face-instance1", "draining", 1), 0);
    assert_int_equal(gw_metrics_set3(m, g, "face", "face-instance1", "ready", 3), 0);
    assert_int_equal(gw_metrics_observe3(m, h, "m", "1", "2", 0.5), 0);
    /* A series differs by its third label alone. */
    assert_int_equal(gw_metrics_add3(m, g, "a", "b", "c\"", 1), 0);
    char *text = render(m);
    assert_non_null(strstr(text, "g{model=\"face\",backend=\"face-instance1\",state=\"ready\"} 3\n"));
    assert_non_null(
        strstr(text, "g{model=\"face\",backend=\"face-instance1\",state=\"draining\"} 1\n"));
    assert_non_null(strstr(text, "g{model=\"a\",backend=\"b\",state=\"c\\\"\"} 1\n"));
    assert_non_null(strstr(text, "h_bucket{model=\"m\",x=\"1\",y=\"2\",le=\"1\"} 1\n"));
    assert_non_null(strstr(text, "h_count{model=\"m\",x=\"1\",y=\"2\"} 1\n"));
    free(text);
    gw_metrics_destroy(m);
}

static void test_promtool(void **state)
{
    (void)state;
    if (access("/usr/bin/promtool", X_OK) != 0) {
        print_message("promtool not installed (apt-get install prometheus): skipped\n");
        skip();
    }
    /* Families shaped like the gateway's own (gateway/app.c). */
    gw_metrics_t *m;
    assert_int_equal(gw_metrics_create(&m), 0);
    const double b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    int c = gw_metrics_declare(m, GW_COUNTER, "framegate_requests_total",
                               "HTTP requests answered, by route and status code.", "route,code",
                               NULL, 0);
    int g = gw_metrics_declare(m, GW_GAUGE, "framegate_backends", "Backends by state.", "state",
                               NULL, 0);
    int h = gw_metrics_declare(m, GW_HISTOGRAM, "framegate_request_duration_seconds",
                               "Time from the end of a request to its answer.", "route", b, 13);
    int q = gw_metrics_declare(m, GW_HISTOGRAM, "framegate_queue_wait_seconds",
                               "Time frames waited in the queue.", NULL, b, 13);
    int s = gw_metrics_declare(m, GW_COUNTER, "framegate_scale_events_total",
                               "Autoscaler actions, by direction and reason.", "direction,reason",
                               NULL, 0);
    int be = gw_metrics_declare(m, GW_GAUGE, "framegate_backend_inflight",
                                "Frames in flight per backend.", "backend,state", NULL, 0);
    int empty = gw_metrics_declare(m, GW_COUNTER, "framegate_retries_total",
                                   "Frames re-dispatched after a backend failure.", NULL, NULL, 0);
    assert_true(c >= 0 && g >= 0 && h >= 0 && q >= 0 && s >= 0 && be >= 0 && empty >= 0);
    gw_metrics_add(m, c, "detect", "200", 10);
    gw_metrics_add(m, c, "detect", "503", 2);
    gw_metrics_add(m, c, "weird \"route\"\n", "404", 1);
    gw_metrics_set(m, g, "ready", NULL, 2);
    gw_metrics_set(m, g, "starting", NULL, 0);
    gw_metrics_add(m, s, "up", "load", 3);
    gw_metrics_set(m, be, "be-1", "ready", 1);
    gw_metrics_set(m, be, "be-2", "draining", 0);
    for (int i = 0; i < 100; i++) {
        gw_metrics_observe(m, h, "detect", NULL, i * 0.7);
        gw_metrics_observe(m, q, NULL, NULL, i * 0.001);
    }
    size_t len;
    char *text = gw_metrics_render(m, &len);
    assert_non_null(text);
    char path[] = "/tmp/fgmetricsXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    /* promtool prints lint findings (and exits non-zero) on anything it does not like. */
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
    int rv = system(cmd);
    unlink(path);
    free(text);
    gw_metrics_destroy(m);
    assert_int_equal(rv, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_unlabelled_histogram_and_values),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_declare_and_type_checks),
        cmocka_unit_test(test_three_labels),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
