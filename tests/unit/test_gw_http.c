/* http.c, the connection core, over real loopback sockets (gw_http_harness.h): keep-alive,
 * pipelining, chunked bodies, limits, timeouts, connection limits, hang-ups and draining. */
#include "gw_http_harness.h"

static void test_keepalive_and_get_routes(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    resp_t r;
    char code[64];
    for (int i = 0; i < 3; i++) {
        send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"status\":\"ok\"}");
        assert_true(has_header(&r, "Connection: keep-alive"));
        assert_true(has_header(&r, "Content-Type: application/json"));
        resp_free(&r);
    }
    send_str(c, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "fake_metric 1\n");
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    resp_free(&r);
    /* ops->get says -1 -> 404; unknown paths -> 404; wrong methods -> 405 + Allow. */
    send_str(c, "GET /v1/backends HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    send_str(c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(json_error_code(&r, code, sizeof code), "not_found");
    resp_free(&r);
    send_str(c, "GET /v1/detect HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: POST"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "method_not_allowed");
    resp_free(&r);
    send_str(c, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: GET"));
    resp_free(&r);
    /* Connection: close is honoured. */
    send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* HTTP/1.0 closes by default, keeps alive when asked. */
    client_open(c);
    send_str(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: keep-alive"));
    resp_free(&r);
    send_str(c, "GET /healthz HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
    wait_until(&S.responses, 11, 2);
    assert_int_equal(atomic_load(&S.healthz_responses), 7); /* DELETE included */
}

static void test_pipelining_in_order(void **state)
{
    (void)state;
    start_default(); /* max_pipelined = 4 */
    client_t *c = malloc(sizeof *c);
    client_open(c);
    /* Six requests in one write; the jobs finish in the reverse order of arrival. */
    char all[4096];
    size_t n = 0;
    static const int delays[] = {120, 90, 60, 30, 1};
    for (int i = 0; i < 5; i++) {
        char body[32];
        int blen = snprintf(body, sizeof body, "delay=%d", delays[i]);
        n += (size_t)snprintf(all + n, sizeof all - n,
                              "POST /v1/detect?camera=c%d HTTP/1.1\r\nHost: t\r\n"
                              "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s",
                              i, blen, body);
    }
    n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    send_all(c, all, n);
    resp_t r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        char want[32];
        snprintf(want, sizeof want, "\"camera\":\"c%d\"", i);
        assert_non_null(strstr(r.body, want));
        resp_free(&r);
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);
    /* Many tiny pipelined requests in one write (the parser pauses and resumes often). */
    n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\n\r\n");
    send_all(c, all, n);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    client_close(c);
    free(c);
}

static void test_chunked(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n4\r\ndela\r\n");
    usleep(20000);
    send_str(c, "4\r\ny=10\r\n0\r\n\r\n");
    resp_t r;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(atomic_load(&S.last_image_len), 8);
    resp_free(&r);
    /* A chunked body that grows past max_body_bytes (1 MiB) -> 413 and close. */
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n");
    static char chunk[256 << 10];
    memset(chunk, 'a', sizeof chunk);
    char size_line[32];
    snprintf(size_line, sizeof size_line, "%zx\r\n", sizeof chunk);
    for (int i = 0; i < 5; i++) {
        if (send(c->fd, size_line, strlen(size_line), MSG_NOSIGNAL) <= 0 ||
            send(c->fd, chunk, sizeof chunk, MSG_NOSIGNAL) <= 0 ||
            send(c->fd, "\r\n", 2, MSG_NOSIGNAL) <= 0)
            break; /* the server may stop reading once it has answered */
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_length_required_and_too_large(void **state)
{
    (void)state;
    start_default();
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 411);
    assert_string_equal(json_error_code(&r, code, sizeof code), "length_required");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    assert_int_equal(atomic_load(&S.detect_responses), 1);

    /* 413 straight from the headers: the 64 MiB body is never sent, the answer comes
     * at once, and the connection closes within about a second. */
    client_open(c);
    double t0 = now_s();
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 67108864\r\n\r\nsome of the body");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_true(has_header(&r, "Connection: close"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "too_large");
    assert_true(now_s() - t0 < 0.5);
    resp_free(&r);
    assert_true(closed_by_server(c));
    assert_true(now_s() - t0 < 2.5);
    client_close(c);

    /* Expect: 100-continue: 100 if acceptable, then the real answer; 413 if not. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 100);
    send_str(c, "delay=1");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Behind a request still waiting for its job, the 100 comes after that answer; the job
     * takes longer than body_timeout_ms (400), and the body clock only starts at the 100. */
    post(c, "/v1/detect?camera=first", "image/jpeg", "delay=600", 9);
    send_str(c, "POST /v1/detect?camera=second HTTP/1.1\r\nHost: t\r\n"
                "Content-Type: image/jpeg\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "first"));
    resp_free(&r);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 100);
    send_str(c, "delay=1");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "second"));
    resp_free(&r);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_header_limit_and_bad_http(void **state)
{
    (void)state;
    start_default(); /* max_header_bytes = 4096 */
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    client_open(c);
    send_str(c, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    char big[5000];
    memset(big, 'b', sizeof big);
    send_all(c, big, sizeof big);
    send_str(c, "\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 431);
    assert_string_equal(json_error_code(&r, code, sizeof code), "headers_too_large");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);

    client_open(c);
    send_str(c, "GARBAGE\x01 / HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(json_error_code(&r, code, sizeof code), "bad_request");
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
    /* Answers given before routing still count under the route of their path. */
    assert_int_equal(atomic_load(&S.healthz_responses), 1);
    assert_int_equal(atomic_load(&S.other_responses), 1);
}

static void test_timeouts(void **state)
{
    (void)state;
    start_default(); /* header 400 ms, body 400 ms, idle 600 ms */
    resp_t r;
    char code[64];
    client_t *c = malloc(sizeof *c);
    /* Slowloris: a header line every 100 ms never finishes the headers in time. */
    client_open(c);
    double t0 = now_s();
    send_str(c, "GET /healthz HTTP/1.1\r\n");
    int got = -1;
    for (int i = 0; i < 30 && got != 0; i++) {
        usleep(100000);
        if (send(c->fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) <= 0)
            break;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) == 1)
            got = 0;
    }
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 408);
    assert_string_equal(json_error_code(&r, code, sizeof code), "timeout");
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_true(closed_by_server(c));
    double took = now_s() - t0;
    assert_true(took > 0.35 && took < 2.0);
    client_close(c);

    /* A body that stops arriving. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                "Content-Length: 100\r\n\r\nabc");
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 408);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);

    /* An idle keep-alive connection is closed; one waiting for a slow job is not. */
    client_open(c);
    t0 = now_s();
    assert_true(closed_by_server(c));
    took = now_s() - t0;
    assert_true(took > 0.5 && took < 2.0);
    client_close(c);
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=900", 9);
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    client_close(c);
    free(c);
}

static void test_max_connections(void **state)
{
    (void)state;
    gw_config_t cfg;
    cfg_defaults(&cfg);
    cfg.max_connections = 3;
    server_start(&cfg);
    client_t *cs = malloc(4 * sizeof *cs);
    resp_t r;
    char code[64];
    for (int i = 0; i < 3; i++) {
        client_open(&cs[i]);
        send_str(&cs[i], "GET /healthz HTTP/1.1\r\n\r\n");
        assert_int_equal(read_resp(&cs[i], &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    client_open(&cs[3]);
    assert_int_equal(read_resp(&cs[3], &r), 0);
    assert_int_equal(r.status, 503);
    assert_true(has_header(&r, "Retry-After: 7"));
    assert_string_equal(json_error_code(&r, code, sizeof code), "overloaded");
    resp_free(&r);
    assert_true(closed_by_server(&cs[3]));
    client_close(&cs[3]);
    wait_until(&S.conns, 3, 2);
    /* Once one closes, a new connection is served again. */
    client_close(&cs[0]);
    wait_until(&S.conns, 2, 2);
    client_open(&cs[0]);
    send_str(&cs[0], "GET /healthz HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(&cs[0], &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 3; i++)
        client_close(&cs[i]);
    free(cs);
}

static void test_hangup_with_job_out(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(sizeof *c);
    /* The client leaves while its jobs (one plain, two pipelined) are out. */
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=150", 9);
    post(c, "/v1/detect", "image/jpeg", "delay=100", 9);
    wait_until(&S.submitted, 2, 2);
    client_close(c);
    wait_until(&S.done, 2, 2);
    wait_until(&S.conns, 0, 2);
    /* The client half-closes after its request: it still gets its answer. */
    client_open(c);
    post(c, "/v1/detect", "image/jpeg", "delay=50", 8);
    shutdown(c->fd, SHUT_WR);
    resp_t r;
    assert_int_equal(read_resp(c, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(closed_by_server(c));
    client_close(c);
    /* More pipelined requests than max_pipelined (4), then a half-close: all answered. */
    client_open(c);
    char all[1024];
    size_t n = 0;
    for (int i = 0; i < 9; i++)
        n += (size_t)snprintf(all + n, sizeof all - n, "GET /healthz HTTP/1.1\r\n\r\n");
    send_all(c, all, n);
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 9; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    assert_true(closed_by_server(c));
    client_close(c);
    /* Slow jobs keep the parser paused with input left over, which ends in a partial
     * request: the answers, then EOF without waiting for a 408. */
    client_open(c);
    n = 0;
    for (int i = 0; i < 6; i++)
        n += (size_t)snprintf(all + n, sizeof all - n,
                              "POST /v1/detect HTTP/1.1\r\nContent-Type: image/jpeg\r\n"
                              "Content-Length: 8\r\n\r\ndelay=30");
    send_all(c, all, n);
    send_str(c, "GET /healthz HTTP/1.1\r\nHost:");
    double t0 = now_s();
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(read_resp(c, &r), 0);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    assert_int_equal(c->len, 0);
    assert_int_equal(fill(c), 0);    /* EOF, and no 408 for the partial request */
    assert_true(now_s() - t0 < 0.3); /* header_timeout_ms is 400 */
    client_close(c);
    /* A half-close in the middle of a request: nothing to answer, the server closes. */
    client_open(c);
    send_str(c, "POST /v1/detect HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    shutdown(c->fd, SHUT_WR);
    assert_true(closed_by_server(c));
    client_close(c);
    free(c);
}

static void test_stop_drains(void **state)
{
    (void)state;
    start_default();
    client_t *c = malloc(2 * sizeof *c);
    client_open(&c[0]);
    client_open(&c[1]); /* idle: closed at stop */
    post(&c[0], "/v1/detect", "image/jpeg", "delay=200", 9);
    wait_until(&S.submitted, 1, 2);
    S.stop_sent = 1;
    uv_async_send(&S.stop_async);
    assert_true(closed_by_server(&c[1]));
    /* Requests pipelined after the stop: the first is answered as the last one, the
     * rest are not read. */
    send_str(&c[0], "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n");
    resp_t r;
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\""));
    assert_true(has_header(&r, "Connection: keep-alive"));
    resp_free(&r);
    assert_int_equal(read_resp(&c[0], &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_true(has_header(&r, "Connection: close"));
    resp_free(&r);
    assert_int_equal(c[0].len, 0);
    assert_int_equal(fill(&c[0]), 0); /* EOF with nothing more: the third is not answered */
    client_close(&c[0]);
    client_close(&c[1]);
    free(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the gateway does: a write to a gone client is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_keepalive_and_get_routes, teardown),
        cmocka_unit_test_teardown(test_pipelining_in_order, teardown),
        cmocka_unit_test_teardown(test_chunked, teardown),
        cmocka_unit_test_teardown(test_length_required_and_too_large, teardown),
        cmocka_unit_test_teardown(test_header_limit_and_bad_http, teardown),
        cmocka_unit_test_teardown(test_timeouts, teardown),
        cmocka_unit_test_teardown(test_max_connections, teardown),
        cmocka_unit_test_teardown(test_hangup_with_job_out, teardown),
        cmocka_unit_test_teardown(test_stop_drains, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
