/* router.c: pattern matching on its own, then dispatch through the real server
 * (gw_http_harness.h): 404, 405 with Allow, HEAD on GET routes, and the metrics label of
 * requests answered before routing. */
#include "gw_http_harness.h"

#include "router.h"

static void test_match(void **state)
{
    (void)state;
    const char *p;
    size_t n;
    assert_true(gw_router_match("/readyz", "/readyz", &p, &n));
    assert_null(p);
    assert_false(gw_router_match("/readyz", "/readyz/", &p, &n));
    assert_false(gw_router_match("/readyz", "/ready", &p, &n));
    assert_false(gw_router_match("/readyz", "", &p, &n));
    assert_true(gw_router_match("/v1/models/*/detect", "/v1/models/yolo/detect", &p, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(p, "yolo", 4);
    /* '*' is one non-empty segment */
    assert_false(gw_router_match("/v1/models/*/detect", "/v1/models//detect", &p, &n));
    assert_false(gw_router_match("/v1/models/*/detect", "/v1/models/a/b/detect", &p, &n));
    assert_false(gw_router_match("/v1/models/*/detect", "/v1/models/a", &p, &n));
    assert_false(gw_router_match("/v1/models/*", "/v1/models/a/", &p, &n));
    /* "**" is a prefix */
    assert_true(gw_router_match("/v1/jobs/**", "/v1/jobs/12/result", &p, &n));
    assert_string_equal(p, "12/result");
    assert_true(gw_router_match("/v1/jobs/**", "/v1/jobs/", &p, &n));
    assert_int_equal(n, 0);
    assert_false(gw_router_match("/v1/jobs/**", "/v1/job", &p, &n));
}

static void test_labels(void **state)
{
    (void)state;
    static const gw_route_t routes[] = {
        {"POST", "/v1/detect", "detect", NULL, NULL, 0},
        {"POST", "/v1/models/*/detect", "detect", NULL, NULL, 0},
        {"GET", "/metrics", "metrics", NULL, NULL, 0},
    };
    assert_string_equal(gw_router_label(routes, 3, "/v1/detect"), "detect");
    assert_string_equal(gw_router_label(routes, 3, "/v1/models/x/detect"), "detect");
    assert_string_equal(gw_router_label(routes, 3, "/metrics"), "metrics");
    assert_string_equal(gw_router_label(routes, 3, "/metrics/x"), "other");
    assert_string_equal(gw_router_label(routes, 3, ""), "other");
}

/* Client bytes echoed in an error message never break the JSON (they become '?'). */
static void test_error_json(void **state)
{
    (void)state;
    size_t len;
    char *s = gw_error_json("not_found",
                            "no such path: /a\xff\xfe"
                            "b",
                            &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_string_equal(s,
                        "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path: /a??b\"}}");
    free(s);
}

static void test_dispatch(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    send_str(c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "fake_metric 1\n");
    resp_free(&r);
    /* Unknown path: 404 "other". */
    send_str(c, "GET /v1/backends HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(json_error_code(&r, code, sizeof code), "not_found");
    resp_free(&r);
    /* Known path, wrong method: 405 and what is allowed; GET routes also allow HEAD. */
    send_str(c, "GET /v1/models/m/detect HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: POST\r\n"));
    resp_free(&r);
    send_str(c, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: GET, HEAD\r\n"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "method_not_allowed");
    resp_free(&r);
    /* HEAD: the GET answer's headers and length, no body; the next answer follows at once
     * (a stray body would be read as the next status line). */
    send_str(c, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\nHEAD /healthz HTTP/1.1\r\n\r\n"
                "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp_ex(c, &r, 1), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 14);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    assert_int_equal(read_resp_ex(c, &r, 1), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 15);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    /* HEAD on a POST-only route is 405, on no route 404: without their bodies either. */
    send_str(c, "HEAD /v1/detect HTTP/1.1\r\nHost: t\r\n\r\nHEAD /nope HTTP/1.1\r\n\r\n"
                "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp_ex(c, &r, 1), 0);
    assert_int_equal(r.status, 405);
    assert_true(r.body_len > 0);
    assert_int_equal(read_resp_ex(c, &r, 1), 0);
    assert_int_equal(r.status, 404);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    /* An answer given before routing counts under its path's label. */
    client_open(c);
    send_str(c, "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: ");
    char big[5000];
    memset(big, 'b', sizeof big);
    send_all(c, big, sizeof big);
    send_str(c, "\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
    wait_until(&S.responses, 11, 2);
    assert_int_equal(atomic_load(&S.metrics_responses), 4); /* GET, POST 405, HEAD, 431 */
    assert_int_equal(atomic_load(&S.other_responses), 2);
    assert_int_equal(atomic_load(&S.detect_responses), 2);
    assert_int_equal(atomic_load(&S.healthz_responses), 3);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test_teardown(test_dispatch, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
