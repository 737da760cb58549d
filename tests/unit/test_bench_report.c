/* The bench's outputs: the CSV header and a row, the JSON summary parsed back, and the
 * /v1/backends counting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "load.h"
#include "report.h"

static void test_csv(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bench_report_csv_header(f);
    bench_row_t row;
    memset(&row, 0, sizeof row);
    row.second = 3;
    row.users = 40;
    row.c.ok = 100;
    row.c.http_fail[503] = 4;
    row.c.http_fail[429] = 1;
    row.c.http_fail[404] = 1;
    row.c.timeouts = 1;
    row.p50_ms = 12.5;
    row.p95_ms = 20;
    row.p99_ms = 31.25;
    row.backends[0] = 1;
    row.backends[1] = 3;
    row.backends[2] = 0;
    row.backends[3] = -1;
    bench_report_csv_row(f, &row);
    fclose(f);
    const char *want =
        "second,users,ok,failed,http_errors,conn_errors,timeouts,rps,p50_ms,p95_ms,p99_ms,"
        "backends_starting,backends_ready,backends_draining,backends_stopping,status_503,"
        "status_504,status_502,status_429,status_500,status_other\n"
        "3,40,100,7,6,0,1,107,12.50,20.00,31.25,1,3,0,,4,0,0,1,0,1\n";
    assert_string_equal(buf, want);
    free(buf);
}

static void test_json(void **state)
{
    (void)state;
    bench_hist_t *h = bench_hist_create();
    for (int i = 1; i <= 100; i++)
        bench_hist_record(h, (uint64_t)i * 1000);
    bench_summary_t s = {.mode = "closed",
                         .body_mode = "raw",
                         .url = "http://127.0.0.1:1/x",
                         .users = 10,
                         .duration_s = 2,
                         .hist = h};
    s.total.ok = 90;
    s.total.http_fail[503] = 6;
    s.total.conn_errors = 3;
    s.total.timeouts = 1;
    char *j = bench_report_json(&s);
    cJSON *root = cJSON_Parse(j);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "requests")->valuedouble, 100);
    assert_int_equal(cJSON_GetObjectItem(root, "failures")->valuedouble, 10);
    assert_true(cJSON_GetObjectItem(root, "failure_pct")->valuedouble == 10.0);
    assert_true(cJSON_GetObjectItem(root, "rps")->valuedouble == 50.0);
    cJSON *fk = cJSON_GetObjectItem(root, "failures_by_kind");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(fk, "http"), "503")->valuedouble, 6);
    assert_int_equal(cJSON_GetObjectItem(fk, "connection")->valuedouble, 3);
    assert_int_equal(cJSON_GetObjectItem(fk, "timeout")->valuedouble, 1);
    cJSON *lat = cJSON_GetObjectItem(root, "latency_ms");
    double p50 = cJSON_GetObjectItem(lat, "p50")->valuedouble;
    assert_true(p50 > 49.5 && p50 < 50.5);
    assert_true(cJSON_GetObjectItem(lat, "max")->valuedouble == 100.0);
    cJSON_Delete(root);
    free(j);
    bench_hist_destroy(h);
}

static void test_count_backends(void **state)
{
    (void)state;
    const char *doc =
        "{\"desired\":3,\"backends\":[{\"name\":\"a\",\"state\":\"ready\"},"
        "{\"name\":\"b\",\"state\":\"starting\"},{\"name\":\"c\",\"state\":\"ready\"},"
        "{\"name\":\"d\",\"state\":\"draining\"}]}";
    int n[4];
    assert_int_equal(bench_count_backends(doc, strlen(doc), n), 0);
    assert_int_equal(n[0], 1);
    assert_int_equal(n[1], 2);
    assert_int_equal(n[2], 1);
    assert_int_equal(n[3], 0);
    assert_true(bench_count_backends("<html>", 6, n) < 0);
    assert_true(bench_count_backends("{\"backends\":3}", 14, n) < 0);
    assert_true(bench_count_backends(NULL, 0, n) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_count_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
